"""Train and evaluate one level with the tiny Qwen3: real TRL, PEFT, bitsandbytes NF4 and W&B (offline), in process."""

import hashlib
import json
import logging
import weakref
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sweep.pipeline import run_pipeline
from sweep.stages import eval as eval_stage
from sweep.stages import train as train_stage
from tests.conftest import compose_config
from training.common.errors import ConfigError, TrainingError
from training.common.jsonl import read_jsonl
from training.models.loading import model_path
from training.sft import lora_adapter

TINY = ("model=tiny-qwen3", "data.n_train=16", "train.batch_size=4", "data.n_eval=16", "hardware=cpu",
        "sampling.max_new_tokens=32", "wandb.mode=offline")
ISSUE_METRICS = ("level", "accuracy", "accuracy_ci", "accuracy_strict", "mean_think_tokens", "median_think_tokens",
                 "mean_completion_tokens", "format_error_rate", "n_train", "n_eval", "train_seconds", "eval_seconds",
                 "eval_tokens_per_second")


def run_trial(run_dir: Path, *overrides: str) -> dict:
    return run_pipeline(compose_config("+level=4", *TINY, *overrides), run_dir, group="tests")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    """The trained trial, and whether any model it loaded or trained was still alive when it returned."""
    base = Path(model_path(compose_config("+level=4", *TINY).model))
    before = sha256(base / "model.safetensors")
    run = tmp_path_factory.mktemp("trial")
    models = []  # weak references: the test must not keep the models alive itself
    with pytest.MonkeyPatch.context() as patch:
        def keep(function, pick):
            def wrapper(*args, **kwargs):
                result = function(*args, **kwargs)
                models.append(weakref.ref(pick(result)))
                return result
            return wrapper

        for stage in (train_stage, eval_stage):
            patch.setattr(stage, "load_student", keep(stage.load_student, lambda student: student.model))
        patch.setattr(lora_adapter, "train_adapter", keep(lora_adapter.train_adapter, lambda result: result[0]))
        patch.setattr(eval_stage, "inference_model", keep(eval_stage.inference_model, lambda runner: runner.model))
        summary = run_trial(run, f"cache.dir={run.parent / 'trial-cache'}")
    alive = [ref() is not None for ref in models]  # before any collection of our own
    return run, summary, base, before, alive


def test_trial_writes_every_artifact(trial):
    run, summary, *_ = trial
    assert summary["status"] == "completed" and summary["stages"] == ["traces", "filter", "train", "eval"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and set(ISSUE_METRICS) <= set(metrics)
    assert metrics["n_train"] == 16 and metrics["n_eval"] == 16 and metrics["level"] == 4
    low, high = metrics["accuracy_ci"]
    assert 0 <= low <= metrics["accuracy"] <= high <= 1
    assert metrics["train"]["steps"] == 4 and metrics["train"]["loss_history"]
    samples = read_jsonl(run / "eval_samples.jsonl")
    assert len(samples) == 16
    assert {"prompt", "output", "extracted", "gold", "correct", "think_tokens", "completion_tokens"} <= set(samples[0])
    assert samples[0]["prompt"][-1]["content"].startswith("Solve this using Level 4 (Ultra-compact).")
    assert metrics["mean_completion_tokens"] == sum(s["completion_tokens"] for s in samples) / 16
    assert json.loads((run / "eval_results.json").read_text())["accuracy"] == metrics["accuracy"]
    assert metrics["eval"]["backend"] == "transformers"  # no vLLM, no GPU here
    card = (run / "adapter" / "README.md").read_text()
    assert "level 4 (Ultra-compact)" in card and "r=16" in card and "| accuracy |" in card and "svamp" in card
    [record] = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    logged = record.read_bytes()  # W&B's offline record: the trainer's loss and our metrics in one run
    assert b"train/loss" in logged and b"eval/accuracy" in logged and b"eval/samples" in logged


def test_no_model_outlives_its_trial(trial):
    # A multirun process runs the next trial right after: a model left in a reference cycle would still be there.
    *_, alive = trial
    # The loaded student, the trained PEFT model, the student reloaded with the adapter as saved, the eval's model.
    assert len(alive) == 4 and not any(alive)
    metrics = json.loads((trial[0] / "metrics.json").read_text())
    assert metrics["peak_rss_mb"] > 0 and metrics["peak_rss_scope"].startswith("trial")


def test_bf16_evaluation_folds_the_adapter_into_a_dense_copy(trial, tmp_path):
    from training.evaluation.inference import dense_copy
    from training.models.hardware import resolve_hardware
    from training.models.student import attach_adapter, load_student

    run, *_ = trial
    cfg = compose_config("+level=4", *TINY)
    student = load_student(cfg.model, cfg.train, resolve_hardware(cfg.hardware))
    attach_adapter(student, run / "adapter")
    ids = student.tokenizer("Problem: 3 + 4 = ?", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        expected = student.model(input_ids=ids).logits.float()
        dense = dense_copy(student.model, torch.float32)
        got = dense(input_ids=ids).logits.float()
    assert type(dense).__name__ == "Qwen3ForCausalLM"  # a plain model: no bitsandbytes layer, no LoRA
    # The student's 4-bit kernel may round its input to bf16: agreement to bf16 precision.
    assert torch.allclose(got, expected, atol=0.05 * expected.abs().max().item())
    again = run_trial(tmp_path, "stages=[eval]", f"adapter={run / 'adapter'}", "hardware.precision=bf16",
                      "wandb.mode=disabled")
    assert again["eval"]["eval_compute"].startswith("a dense bf16 copy") and again["n_eval"] == 16
    assert again["eval_prefill_tokens_per_second"] > 0 and again["eval_decode_tokens_per_second"] > 0
    assert again["eval"]["eval_shared_prefix_tokens"] >= 16  # the system message and the level's instruction


def test_adapter_loads_back_with_trained_lora_and_untouched_base(trial):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run, _, base, before, _ = trial
    saved = load_file(run / "adapter" / "adapter_model.safetensors")
    assert saved and all("lora_" in key for key in saved)  # the adapter carries LoRA weights only
    # PEFT initialises every lora_B to zero: a non-zero B is a trained one.
    assert all(tensor.abs().sum() > 0 for key, tensor in saved.items() if "lora_B" in key)
    original = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).state_dict()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), run / "adapter")
    loaded = {k.replace("base_model.model.", "").replace(".base_layer", ""): v for k, v in model.state_dict().items()
              if "lora_" not in k}
    for name, tensor in original.items():
        assert torch.equal(loaded[name], tensor), name
    assert sha256(base / "model.safetensors") == before  # training never wrote to the base weights


def test_saved_adapter_reproduces_the_evaluation(trial, tmp_path):
    run, *_ = trial
    again = run_trial(tmp_path, "stages=[eval]", f"adapter={run / 'adapter'}", "wandb.mode=disabled")
    assert again["stages"] == ["eval"] and again["n_train"] == 0
    first = [row["output"] for row in read_jsonl(run / "eval_samples.jsonl")]
    assert [row["output"] for row in read_jsonl(tmp_path / "eval_samples.jsonl")] == first


def test_regrouping_unfinished_rows_continues_them_exactly(trial, tmp_path):
    run, *_ = trial
    first = read_jsonl(run / "eval_samples.jsonl")
    assert sum(not row["stopped"] for row in first) >= 2  # rows that run on: what regrouping acts on
    again = run_trial(tmp_path, "stages=[eval]", f"adapter={run / 'adapter'}", "eval.regroup_after=4",
                      "eval.batch_size=3", "wandb.mode=disabled")
    # Every row here runs to max_new_tokens: each batch stopped at 4, 8 and 16 tokens and went on from its own
    # KV cache, which must give the tokens one uninterrupted generate call gives. (Dropping finished rows is
    # tested with the bigram student in test_llm_teachers.py: this random model's rows never finish early.)
    assert again["eval"]["eval_rows_dropped_early"] == 0
    rows = read_jsonl(tmp_path / "eval_samples.jsonl")
    assert [(r["output"], r["completion_tokens"], r["stopped"]) for r in rows] == \
        [(r["output"], r["completion_tokens"], r["stopped"]) for r in first]


def test_trial_with_the_same_training_settings_restores_the_adapter(trial, tmp_path, caplog):
    run, first, *_ = trial
    caplog.set_level(logging.INFO, logger="training.caching.stage_cache")
    # Only the eval batch differs, which is not in the train key: no stage does work again.
    again = run_trial(tmp_path, f"cache.dir={run.parent / 'trial-cache'}", "eval.batch_size=4")
    assert first["train"]["cache"] == "miss" and again["train"]["cache"] == "hit"
    assert again["traces"]["cache"] == again["filter"]["cache"] == "hit"
    assert again["train"]["computed_seconds"] == first["train"]["train_seconds"] and again["train_seconds"] < 5
    assert again["train"]["adapter"] == str(tmp_path / "adapter") and again["eval"]["adapter"] == str(tmp_path / "adapter")
    assert "train: cache hit" in caplog.text
    [record] = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert b"train/loss" in record.read_bytes()  # the restored adapter's loss curve is in this trial's run too
    assert sha256(tmp_path / "adapter" / "adapter_model.safetensors") == sha256(run / "adapter" / "adapter_model.safetensors")
    first_outputs = [row["output"] for row in read_jsonl(run / "eval_samples.jsonl")]
    assert [row["output"] for row in read_jsonl(tmp_path / "eval_samples.jsonl")] == first_outputs


def test_baseline_evaluates_the_base_model(tmp_path):
    # Sampling with a presence penalty exercises the non-greedy path of the same evaluator.
    summary = run_trial(tmp_path, "adapter=none", "wandb.mode=disabled", "data.n_eval=8", "sampling=sample",
                        "sampling.presence_penalty=0.5")
    assert summary["stages"] == ["traces", "filter", "eval"] and summary["adapter"] == "none"
    assert summary["eval"]["adapter"] == "none" and summary["n_train"] == 0 and summary["n_eval"] == 8
    assert not (tmp_path / "adapter").exists()


def assert_failed(run_dir: Path, message: str) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "failed" and message in metrics["error"]


def test_nan_loss_fails_the_trial(tmp_path):
    with pytest.raises(TrainingError, match="training loss became nan"):
        # Two one-row steps: the first update blows up, the second step's logged loss is NaN.
        run_trial(tmp_path, "train.learning_rate=1e38", "train.logging_steps=1", "data.n_train=2", "train.batch_size=1",
                  "wandb.mode=disabled")
    assert_failed(tmp_path, "training loss became nan")


def test_empty_filtered_set_fails_before_loading_a_model(tmp_path):
    with pytest.raises(TrainingError, match="nothing to train on"):
        run_trial(tmp_path, "filter.max_think_tokens=1", "wandb.mode=disabled")
    assert_failed(tmp_path, "nothing to train on")


def test_unloadable_model_fails_and_closes_the_wandb_run(tmp_path):
    import wandb

    with pytest.raises(ConfigError, match="cannot load"):
        run_trial(tmp_path, "model.source=hub", f"+model.path={tmp_path / 'no-such-model'}", "stages=[eval]",
                  "adapter=none")
    assert_failed(tmp_path, "cannot load")
    assert wandb.run is None  # finished, with exit code 1, not left open


def test_no_think_mix_trains_and_both_thinking_modes_give_two_records(tmp_path):
    from analysis.trials import load_trials

    summary = run_trial(tmp_path, "train.no_think_fraction=0.25", "eval.thinking=both", "data.n_eval=8",
                        "wandb.mode=disabled")
    train = summary["train"]
    assert train["n_no_think"] == round(0.25 * summary["n_train"]) > 0
    assert train["no_think_form"] == "chat template (enable_thinking=False)"  # Qwen3's template has the switch
    on = summary["eval"]
    assert on["thinking"] == "on" and on["no_think_run"] == "no_think"
    off_record = json.loads((tmp_path / "no_think" / "metrics.json").read_text())
    off = off_record["eval"]
    assert off_record["status"] == "completed" and off["thinking"] == "off" and off["n_eval"] == 8
    assert off_record["run_dir"] == str(tmp_path / "no_think") and off_record["train"] == train
    # The template writes the empty think block into the prompt: whatever the model writes after it, it thought
    # for nothing (a second block would be a format error, not think tokens).
    assert off["mean_think_tokens"] == 0 and off_record["mean_think_tokens"] == 0
    rows = read_jsonl(tmp_path / "no_think" / "eval_samples.jsonl")
    assert len(rows) == 8 and [r["id"] for r in rows] == [r["id"] for r in read_jsonl(tmp_path / "eval_samples.jsonl")]
    trials = {t.name: t for t in load_trials(str(tmp_path)).trials}
    assert {name: t.thinking for name, t in trials.items()} == {tmp_path.name: "on", "no_think": "off"}
    assert trials["no_think"].label == "L4 no-think"
