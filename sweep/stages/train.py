"""Stage ``train``: a NF4 QLoRA adapter on the filtered rows, in process or in torchrun workers.

Reads: ``filtered.jsonl`` (from ``filter``, or ``+train.data_path=PATH``), by content.
Writes: ``adapter/`` (weights, tokenizer and, once the trial's stages are over, a model card).
Cache key: ``train``, ``model``, the device, precision and weight quantization, the process count when above 1
(the global batch depends on it), and the rows' digest: trials that differ only in sampling train once.
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import OmegaConf

from sweep.stages.base import Stage, TrialContext, cache_parts, file_input, stage_cache
from sweep.stages.filter import FILTERED_FILE
from sweep.trial_record import SCORES, TrialRecord
from training.caching.stage_cache import content_digest
from training.common.errors import ConfigError, TrainingError
from training.common.jsonl import read_jsonl
from training.config.schema import HardwareSettings, ModelSettings, TrainSettings
from training.latent.warmup import run_warmup
from training.models.loading import model_path, plain_values, release_memory
from training.models.student import load_student
from training.sft.distributed import train_distributed
from training.sft.lora_adapter import ADAPTER_DIR, train_and_save
from training.sft.model_card import write_model_card
from training.sft.trainer import _lora_settings

log = logging.getLogger(__name__)


def run(ctx: TrialContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """Train the adapter into ``run_dir/adapter``; return the train summary.

    The model is dropped afterwards: evaluation loads the base model and attaches the adapter as saved, as a
    cache hit, data-parallel training and an eval-only run do. The model as training left it generated other
    greedy outputs than its own saved adapter (7 of 48 problems, SmolLM2-135M, bf16 on CPU), so the same
    adapter would score differently fresh and restored from the cache.
    """
    cfg, hardware, rows_path = ctx.cfg, ctx.hardware, inputs["filtered"]
    rows = read_jsonl(rows_path)  # before any model loads: an empty set fails in a second, not a minute
    if not rows:
        raise TrainingError(f"nothing to train on: {rows_path} is empty (the filter kept no trace; "
                            "see its filter_report.json)")
    if ctx.level.latent is not None:
        return _warmup(ctx, rows, inputs["filtered"])
    if hardware.num_processes > 1:
        summary = train_distributed(rows_path, plain_values(cfg.model), plain_values(cfg.train), hardware,
                                    ctx.run_dir, base_path=model_path(cfg.model))
        # Trained in the workers: the loss curves still belong in this trial's W&B run.
        ctx.tracker.log_train_history(summary.get("loss_history") or [], summary.get("val_loss_history") or [])
        summary["adapter"] = str(ctx.run_dir / ADAPTER_DIR)  # as this trial names it, not the workers' path
        return summary
    student = load_student(cfg.model, cfg.train, hardware)
    summary = train_and_save(student, rows, cfg.model, cfg.train, hardware, ctx.run_dir, ctx.tracker.report_to)
    student.model = None
    release_memory()
    return summary


def _warmup(ctx: TrialContext, rows: list[dict[str, Any]], rows_path) -> dict[str, Any]:
    """The latent level: its warm-up rounds (:mod:`training.latent.warmup`), each phase cached on its own."""
    cfg, hardware = ctx.cfg, ctx.hardware
    if hardware.num_processes > 1:
        raise ConfigError("the latent level trains in one process: set hardware.num_processes=1")
    # The train stage's own key (its settings, the rows' digest, the device): each phase's adds its place.
    key = cache_parts(cfg, STAGE, {"filtered": content_digest(rows_path)}, **key_extra(ctx))

    def log_phase(name: str, history: list[dict[str, Any]]) -> None:
        ctx.tracker.log_train_history(history, prefix=f"latent/{name}")

    summary = run_warmup(lambda: load_student(cfg.model, cfg.train, hardware), rows, spec=ctx.level.latent,
                         model_cfg=cfg.model, train_cfg=cfg.train, lora=_lora_settings(cfg.train), hardware=hardware,
                         run_dir=ctx.run_dir, cache_root=stage_cache(cfg), key=key,
                         batch_size=int(cfg.eval.batch_size), log_phase=log_phase,
                         adapter_dir=ctx.run_dir / ADAPTER_DIR)
    release_memory()
    return summary


# Settings that do nothing without a validation split: out of the key then, so adapters cached before early
# stopping existed (or trained with it off) still hit.
EARLY_STOPPING_KEYS = ("val_fraction", "early_stopping_patience", "early_stopping_threshold", "eval_steps",
                       "load_best_model_at_end")


def key_settings(settings: dict[str, Any]) -> dict[str, Any]:
    train = settings["train"]
    idle = () if train.get("val_fraction") else EARLY_STOPPING_KEYS
    idle += () if train.get("no_think_fraction") else ("no_think_fraction",)  # 0: the rows as before the mix existed
    return {**settings, "train": {k: v for k, v in train.items() if k not in idle}}


def key_extra(ctx: TrialContext) -> dict[str, Any]:
    hardware = ctx.hardware
    # 1 process stays out of the key, so single-process entries cached before data-parallel training existed hit.
    extra = {"num_processes": hardware.num_processes} if hardware.num_processes > 1 else {}
    return {"device": hardware.device, "precision": hardware.precision, "quantization": ctx.quantization, **extra}


def restored(ctx: TrialContext, summary: dict[str, Any]) -> dict[str, Any]:
    """A cache hit: the loss curves of the trial that trained it go into this one's W&B run, and this trial's
    wall time is the copy (the training's own time stays in ``computed_seconds``)."""
    ctx.tracker.log_train_history(summary.get("loss_history") or [], summary.get("val_loss_history") or [])
    return {**summary, "adapter": str(ctx.run_dir / ADAPTER_DIR), "computed_seconds": summary["train_seconds"],
            "train_seconds": summary["seconds"]}


def record(summary: dict[str, Any]) -> dict[str, Any]:
    return {"train": summary, "n_train": summary["n_train"], "train_seconds": summary["train_seconds"]}


def write_card(ctx: TrialContext, record: TrialRecord) -> None:
    """The adapter's README.md, written once the trial's stages are over: with the scores if it was evaluated."""
    train = ctx.cfg.train
    write_model_card(ctx.run_dir / ADAPTER_DIR, {
        "level": ctx.level.id, "level_name": ctx.level.name, "level_style": ctx.level.style,
        "base_model": ctx.cfg.model.get("path") or ctx.cfg.model.name, "base_path": model_path(ctx.cfg.model),
        "quantization": ctx.quantization, "data": ctx.cfg.data.name, "teacher": (record.traces or {}).get("teacher"),
        "n_train": record.n_train, "train_loss": (record.train or {}).get("train_loss"),
        "precision": record.hardware["precision"],
        "metrics": {key: value for key, value in record.headline().items() if key in SCORES},
        **{key: train[key] for key in ("lora_r", "lora_alpha", "lora_dropout", "epochs", "learning_rate", "batch_size")},
        "target_modules": OmegaConf.to_container(train.target_modules) if OmegaConf.is_config(train.target_modules)
        else train.target_modules,
    })


STAGE = Stage(
    name="train", run=run, record=record,
    settings={"model": ModelSettings, "hardware": HardwareSettings, "train": TrainSettings},
    inputs=(file_input("filtered", FILTERED_FILE, producer="filter", override="train.data_path"),),
    outputs=(ADAPTER_DIR,), cache_key=("train", "model"), key_settings=key_settings, key_extra=key_extra,
    # The latent level's phases are cached one by one (their folders with them); the whole is not stored again.
    cacheable=lambda summary: "latent_phases" not in summary,
    restored=restored,
    finish=write_card, needs_model=True,
)
