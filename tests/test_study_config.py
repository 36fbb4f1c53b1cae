"""The published study is one config away: experiment=qwen3-4b-study (4x Turing, fp16) and its A100 bf16 variant."""

import subprocess
import sys

import pytest
import yaml
from omegaconf import OmegaConf

from sweep.cli import CONF_DIR
from tests.conftest import compose_config
from training.models.hardware import resolve_hardware


def assert_published_setup(cfg: dict) -> None:
    """The settings the study's card states (Qwen3-4B-Instruct-2507 CoT compression, level 4 adapter)."""
    assert cfg["model"]["path"] == "Qwen/Qwen3-4B-Instruct-2507" and cfg["model"]["stop_token"] == "<|im_end|>"
    assert cfg["data"]["name"] == "gsm8k" and cfg["data"]["train_split"] == "train" and cfg["data"]["eval_split"] == "test"
    assert cfg["data"]["n_train"] is None and cfg["data"]["n_eval"] is None  # all 7,473 / all 1,319
    assert cfg["train"]["quantization"] == "nf4" and cfg["train"]["double_quant"] is True
    assert cfg["train"]["completion_only_loss"] is False  # "Loss: full-sequence"
    assert cfg["sampling"]["do_sample"] is False and cfg["sampling"]["max_new_tokens"] == 256  # greedy, 256
    assert cfg["seed"] == 42 and cfg["train"]["seed"] == 42 and cfg["data"]["seed"] == 42
    assert cfg["eval"]["n_shots"] == 0 and cfg["level"]["instruction"] == "Solve this using Level 4 (Ultra-compact)."


def test_study_experiment_composes_to_the_published_setup():
    cfg = compose_config("+level=4", "experiment=qwen3-4b-study")
    assert_published_setup(OmegaConf.to_container(cfg, resolve=True))
    hardware = cfg.hardware
    assert (hardware.name, hardware.device, hardware.precision, hardware.num_processes) == ("turing-x4", "cuda", "fp16", 4)
    # 4 GPUs x 4 rows x 4 accumulation steps: 64 rows per optimizer step.
    assert hardware.num_processes * cfg.train.batch_size * cfg.train.grad_accum == 64
    # Resolving needs the four GPUs it names: on this machine that is a one-line config error.
    if not __import__("torch").cuda.is_available():
        with pytest.raises(Exception, match="needs a CUDA GPU"):
            resolve_hardware(hardware)


def test_a100_variant_differs_only_in_hardware_and_batching():
    study = OmegaConf.to_container(compose_config("+level=4", "experiment=qwen3-4b-study"), resolve=True)
    a100 = OmegaConf.to_container(compose_config("+level=4", "experiment=qwen3-4b-study-a100"), resolve=True)
    assert_published_setup(a100)
    assert (a100["hardware"]["name"], a100["hardware"]["precision"], a100["hardware"]["num_processes"]) == ("a100", "bf16", 1)
    assert a100["hardware"]["num_processes"] * a100["train"]["batch_size"] * a100["train"]["grad_accum"] == 64
    changed = {group for group in study if study[group] != a100[group]}
    assert changed == {"hardware", "train", "wandb"}, changed


@pytest.mark.parametrize("name, path", [("qwen3-0.6b", "Qwen/Qwen3-0.6B"), ("qwen3-1.7b", "Qwen/Qwen3-1.7B"),
                                        ("qwen3-4b-instruct-2507", "Qwen/Qwen3-4B-Instruct-2507"),
                                        ("qwen3-8b", "Qwen/Qwen3-8B")])
def test_qwen3_model_configs(name, path):
    model = compose_config("+level=4", f"model={name}").model
    assert (model.name, model.source, model.path, model.think.open) == (name, "hub", path, "<think>")
    header = [line for line in (CONF_DIR / "model" / f"{name}.yaml").read_text().splitlines() if line.startswith("#")]
    assert any(line.startswith("# Run: python -m sweep +level=4 model=") for line in header)


def test_cfg_job_prints_the_whole_setup():
    printed = subprocess.run([sys.executable, "-m", "sweep", "+level=4", "experiment=qwen3-4b-study", "--cfg", "job"],
                             capture_output=True, text=True, timeout=120, check=True).stdout
    # Printed as composed, interpolations and all (train.seed: ${seed}); resolve them as the run would.
    assert_published_setup(OmegaConf.to_container(OmegaConf.create(yaml.safe_load(printed)), resolve=True))
