"""Early stopping on a validation split (the Atem recipe): real TRL, PEFT and transformers on the tiny Qwen3."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sweep.config_check import check_config
from sweep.pipeline import run_pipeline
from tests.conftest import compose_config
from training.common.errors import ConfigError
from training.common.jsonl import read_jsonl
from training.config.schema import TrainSettings
from training.config.settings import read_settings
from training.models.hardware import resolve_hardware
from training.sft.early_stopping import split_validation
from training.sft.trainer import build_sft_config

# 16 problems, a quarter held out: 12 rows train in 6 steps an epoch, 3 epochs planned (18 steps). At a
# learning rate of 0.05 the tiny model's validation loss is lowest after the first step and rises after it.
RISING = ("+level=4", "model=tiny-qwen3", "data.n_train=16", "hardware=cpu", "stages=[traces,filter,train]",
          "train.batch_size=2", "train.epochs=3", "train.learning_rate=0.05", "train.logging_steps=1",
          "train.val_fraction=0.25", "train.early_stopping_patience=2", "train.eval_steps=1", "wandb.mode=offline")


@pytest.fixture(scope="module")
def stopped(tmp_path_factory, wandb_logged):
    """The trial whose validation loss rises, trained once into a module-wide stage cache."""
    run, cache = tmp_path_factory.mktemp("stopped"), tmp_path_factory.mktemp("cache")
    summary = run_pipeline(compose_config(*RISING, f"cache.dir={cache}"), run, group="tests")
    return run, cache, summary, list(wandb_logged)


def test_a_rising_validation_loss_stops_training_and_keeps_the_best_adapter(stopped):
    run, _, summary, logged = stopped
    assert summary["status"] == "completed", summary.get("error")
    train, rows = summary["train"], read_jsonl(run / "filtered.jsonl")
    curve = [entry["loss"] for entry in train["val_loss_history"]]
    assert train["stopped_early"] and train["steps"] < 18
    # Patience 2: the best evaluation, then two without improvement, then the stop.
    assert train["best_step"] == train["val_loss_history"][-3]["step"] < train["steps"]
    assert train["best_val_loss"] == min(curve) < curve[-1]
    assert train["n_val"] == 4 and summary["n_train"] == train["n_train"] == len(rows) - 4
    # The Trainer kept the best step's checkpoint alone, and the adapter saved is that one, not the last step's.
    [best] = (run / "trainer").glob("checkpoint-*")
    assert best.name == f"checkpoint-{train['best_step']}"
    saved, kept = (load_file(folder / "adapter_model.safetensors") for folder in (run / "adapter", best))
    assert saved.keys() == kept.keys() and all(torch.equal(saved[key], kept[key]) for key in saved)
    # W&B got the validation curve (the Trainer's own eval/loss), at the steps it was evaluated.
    assert [(row["train/global_step"], round(row["eval/loss"], 5)) for row in logged if "eval/loss" in row] == \
        [(entry["step"], entry["loss"]) for entry in train["val_loss_history"]]


def test_a_cache_hit_replays_the_validation_curve(stopped, tmp_path, wandb_logged):
    _, cache, first, _ = stopped
    logged = wandb_logged
    logged.clear()
    again = run_pipeline(compose_config(*RISING, f"cache.dir={cache}"), tmp_path, group="tests")
    assert again["train"]["cache"] == "hit" and again["train"]["best_step"] == first["train"]["best_step"]
    assert [(row["train/global_step"], row["eval/loss"]) for row in logged if "eval/loss" in row] == \
        [(entry["step"], entry["loss"]) for entry in first["train"]["val_loss_history"]]


def test_the_split_is_exact_seeded_and_by_problem():
    rows = [{"id": f"p{i // 2}", "sample": i % 2} for i in range(40)]  # 20 problems, two traces each
    train, val = split_validation(rows, 0.1, seed=7)
    assert len({row["id"] for row in val}) == 2 and len(val) == 4 and len(train) == 36
    assert not {row["id"] for row in val} & {row["id"] for row in train}  # no problem on both sides
    assert train + val != rows and sorted(map(str, train + val)) == sorted(map(str, rows))
    assert split_validation(rows, 0.1, seed=7) == (train, val)  # the same seed, the same split
    assert {row["id"] for row in split_validation(rows, 0.1, seed=8)[1]} != {row["id"] for row in val}
    assert [len(split_validation(rows, f, 0)[1]) // 2 for f in (0.01, 0.25, 0.99)] == [1, 5, 19]  # both sides kept
    assert split_validation(rows, 0.0, 0) == (rows, [])


def test_without_a_split_the_trainer_is_configured_as_before():
    cfg = compose_config("+level=4", "model=tiny-qwen3", "hardware=cpu")
    args = build_sft_config(cfg.train, resolve_hardware(cfg.hardware), Path("unused"))
    assert (args.eval_strategy, args.save_strategy, args.load_best_model_at_end) == ("no", "no", False)
    on = compose_config("+level=4", "model=tiny-qwen3", "hardware=cpu", "train.val_fraction=0.1", "train.eval_steps=3")
    args = build_sft_config(on.train, resolve_hardware(on.hardware), Path("unused"))
    assert (args.eval_strategy, args.eval_steps, args.save_strategy) == ("steps", 3, "best")
    assert (args.metric_for_best_model, args.greater_is_better, args.load_best_model_at_end) == ("eval_loss", False, True)


@pytest.mark.parametrize(("override", "message"), [
    ("train.val_fraction=1", "train.val_fraction must be a number in [0, 1), got 1"),
    ("train.val_fraction=-0.1", "train.val_fraction must be a number in [0, 1), got -0.1"),
    ("train.early_stopping_patience=0", "train.early_stopping_patience must be null or an integer >= 1, got 0"),
    ("train.eval_steps=0", "train.eval_steps must be an integer >= 1, got 0"),
    ("train.early_stopping_patience=3", "train.early_stopping_patience=3 needs a validation split: set "
                                        "train.val_fraction in (0, 1), or the patience to null"),
])
def test_bad_values_are_one_line_errors(override, message):
    with pytest.raises(ConfigError) as caught:
        check_config(compose_config("+level=4", override))
    assert str(caught.value) == message


def test_the_atem_experiment_composes_and_checks():
    cfg = compose_config("+level=4", "experiment=atem")
    settings = read_settings(TrainSettings, cfg.train, "train")
    assert (settings.early_stopping_patience, settings.early_stopping_threshold) == (3, 0.001)
    assert settings.val_fraction > 0 and settings.load_best_model_at_end
