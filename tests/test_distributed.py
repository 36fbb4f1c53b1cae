"""Data-parallel training: a 2-process CPU trial through the path multi-GPU uses (torchrun workers, DDP over gloo)."""

import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from sweep.pipeline import run_pipeline
from tests.conftest import compose_config
from training.common.errors import ConfigError, DataError, TrainingError
from training.common.jsonl import read_jsonl
from training.models.hardware import Hardware, resolve_hardware
from training.sft import distributed
from training.sft.distributed import JOB_DIR, LAUNCH_LOG, launch_command, train_distributed, worker_env
from training.sft.train_worker import rank_hardware
from training.sft.trainer import ddp_options

# 4 rows at 1 per device: one process would take 4 optimizer steps, two take 2 (global batch 2).
TWO_PROCESSES = ("+level=4", "model=tiny-qwen3", "hardware=cpu", "hardware.num_processes=2", "hardware.num_threads=2",
                 "data.n_train=4", "data.n_eval=4", "sampling.max_new_tokens=8", "wandb.mode=offline",
                 "train.batch_size=1", "train.logging_steps=1")
CPU_X2 = Hardware("cpu", "cpu", "fp32", "sdpa", num_threads=2, num_processes=2)


def test_two_process_trial_trains_one_adapter_and_evaluates_it(run_dir, monkeypatch):
    from wandb.sdk.wandb_run import Run

    # A spy, not the offline .wandb file: once, under load, that file still lacked the last keys when
    # run.finish() had returned (W&B's service writes it).
    logged, log = [], Run.log

    def spy(run, data, *args, **kwargs):
        logged.append(data)
        return log(run, data, *args, **kwargs)

    monkeypatch.setattr(Run, "log", spy)
    summary = run_pipeline(compose_config(*TWO_PROCESSES), run_dir, group="tests")
    assert summary["status"] == "completed" and summary["hardware"]["num_processes"] == 2
    train, rows = summary["train"], len(read_jsonl(run_dir / "filtered.jsonl"))
    assert rows == summary["n_train"] == 4 and train["cache"] == "miss"
    assert (train["world_size"], train["per_device_batch_size"], train["global_batch_size"]) == (2, 1, 2)
    one_process_steps = rows // train["per_device_batch_size"]  # 4, as test_train_eval's rows/batch counts show
    assert train["steps"] == rows // train["global_batch_size"] == one_process_steps // 2  # a row per rank per step
    assert [entry["step"] for entry in train["loss_history"]] == [1, 2]
    saved = load_file(run_dir / "adapter" / "adapter_model.safetensors")  # written by rank 0 alone
    assert saved and all(tensor.abs().sum() > 0 for key, tensor in saved.items() if "lora_B" in key)
    assert summary["eval"]["adapter"] == str(run_dir / "adapter") and summary["n_eval"] == 4
    assert "[rank 1]" in (run_dir / LAUNCH_LOG).read_text()
    # The workers' loss curve, logged into the trial's W&B run, before its eval metrics.
    assert [(row["train/global_step"], row["train/loss"]) for row in logged if "train/loss" in row] == \
        [(entry["step"], entry["loss"]) for entry in train["loss_history"]]
    assert any("eval/accuracy" in row for row in logged)


def test_a_worker_error_surfaces_with_its_own_message(tmp_path):
    # A missing rows file fails every worker in a second, through the same error-file route a NaN loss takes.
    with pytest.raises(DataError, match="no such file"):
        train_distributed(tmp_path / "missing.jsonl", {"name": "m"}, {}, CPU_X2, tmp_path, base_path="unused")


def test_a_worker_crash_is_a_training_error_naming_it_above_the_log_tail(tmp_path, monkeypatch):
    (tmp_path / "rows.jsonl").write_text("{}\n")
    job = {"run_dir": str(tmp_path), "rows": str(tmp_path / "rows.jsonl"), "hardware": {"bogus": 1}}
    monkeypatch.setattr(distributed, "build_job", lambda *args: job)  # every worker crashes with a TypeError
    with pytest.raises(TrainingError, match=r"torchrun exit code 1\): worker rank[01] raised TypeError") as err:
        train_distributed(tmp_path / "rows.jsonl", {"name": "m"}, {}, CPU_X2, tmp_path, base_path="unused")
    assert "unexpected keyword argument 'bogus'" in str(err.value) and str(tmp_path / LAUNCH_LOG) in str(err.value)
    assert "Traceback" in (tmp_path / LAUNCH_LOG).read_text()  # the crash's traceback is kept in the log


def test_a_worker_killed_without_a_word_gives_the_log_tail(tmp_path):
    (tmp_path / JOB_DIR).mkdir()
    (tmp_path / LAUNCH_LOG).write_text("[rank 1] loading the student\n\rstep 1/9\n" + "torchrun report\n" * 50 +
                                       "exitcode  : -9 (pid: 42)\ntraceback : Signal 9 (SIGKILL) received by PID 42\n")
    error = distributed._failure(tmp_path / JOB_DIR, tmp_path / LAUNCH_LOG, 1)
    assert isinstance(error, TrainingError) and str(error).endswith("Signal 9 (SIGKILL) received by PID 42")
    assert "loading the student" not in str(error) and str(error).count("\n") == distributed.TAIL_LINES


def test_process_count_is_checked_against_the_gpus():
    cfg = compose_config("+level=4", "hardware=turing-x4").hardware
    assert (cfg.device, cfg.precision, cfg.num_processes) == ("cuda", "fp16", 4)
    hardware = resolve_hardware(cfg, cuda_available=True, bf16_supported=False, device_count=4)
    assert (hardware.device, hardware.precision, hardware.num_processes) == ("cuda", "fp16", 4)
    with pytest.raises(ConfigError, match="asks for 4 training processes .* torch sees 2 GPU"):
        resolve_hardware(cfg, cuda_available=True, bf16_supported=False, device_count=2)
    with pytest.raises(ConfigError, match="num_processes must be at least 1"):
        resolve_hardware({**cfg, "num_processes": 0}, cuda_available=True, bf16_supported=False, device_count=4)
    for name in ("cpu", "auto", "a100", "turing"):
        assert compose_config("+level=4", f"hardware={name}").hardware.num_processes == 1
    # On CPU any count goes: the processes share the cores.
    assert resolve_hardware({"name": "cpu", "device": "cpu", "num_processes": 3}, cuda_available=False,
                            bf16_supported=False).num_processes == 3


def test_each_worker_gets_its_gpu_and_its_share_of_the_threads():
    gpus = Hardware("turing-x4", "cuda", "fp16", "sdpa", num_threads=16, num_processes=4)
    assert (rank_hardware(gpus, 3).device, rank_hardware(gpus, 3).num_threads) == ("cuda:3", 4)
    assert rank_hardware(CPU_X2, 1).num_threads == 1 and worker_env(CPU_X2, {})["OMP_NUM_THREADS"] == "1"
    assert rank_hardware(Hardware("cpu", "cpu", "fp32", None, 1, 2), 0).num_threads == 1  # never 0
    assert launch_command(Path("job.json"), 4) == [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                   "--nproc-per-node=4", "-m", "training.sft.train_worker", "job.json"]
    assert ddp_options(CPU_X2) == {"ddp_find_unused_parameters": False, "ddp_backend": "gloo"}
    assert ddp_options(gpus) == {"ddp_find_unused_parameters": False, "ddp_backend": None}  # accelerate picks NCCL
    assert ddp_options(Hardware("cpu", "cpu", "fp32", None, 2)) == {}  # single process: SFTConfig as before
