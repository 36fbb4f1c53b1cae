"""The model stages of a trial, ``train`` and ``eval``, inside its W&B run.

The student is loaded once and shared: ``train`` gives it an adapter (trained here, in
torchrun workers for data-parallel hardware, or restored from the stage cache), and
``eval`` generates with whatever it then holds.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweep.stage_plan import cache_parts, input_digest, stage_cache, stage_input
from sweep.tracking import Tracker
from sweep.trial_record import SCORES, TrialRecord
from training.data import Splits
from training.distributed import train_distributed
from training.errors import ConfigError, TrainingError
from training.hardware import Hardware, apply_threads, resolve_hardware
from training.jsonl import read_jsonl
from training.levels import Level
from training.model_card import write_model_card
from training.model_stages import ADAPTER_DIR, Student, attach_adapter, eval_stage, load_student, train_stage
from training.models import model_path, plain_values, release_memory
from training.sft import resolve_quant_config
from training.stage_cache import run_cached
from training.stages import FILTERED_FILE

def run_model_stages(cfg: DictConfig, run_dir: Path, level: Level, stages: list[str], splits: Splits | None,
                     record: TrialRecord, tracker: Tracker) -> None:
    """Train and/or evaluate as ``stages`` says, their results in ``record`` (metrics.json)."""
    hardware = resolve_hardware(cfg.hardware)
    apply_threads(hardware)
    record.hardware = {"name": hardware.name, "device": hardware.device, "precision": hardware.precision,
                       "precision_reason": hardware.precision_reason, "num_threads": hardware.num_threads,
                       "num_processes": hardware.num_processes}
    adapter_dir = _adapter_source(cfg, run_dir, stages)
    rows_path, rows = _training_rows(cfg, run_dir, stages) if "train" in stages else (None, [])
    # Data-parallel training runs in torchrun workers; the trial loads its own copy of the student only after
    # them (in _train), so it holds no GPU memory while they train.
    parallel = "train" in stages and hardware.num_processes > 1
    student = None if parallel else load_student(cfg.model, cfg.train, hardware)
    record.n_train = 0
    if "train" in stages:
        record.train, student = _train(cfg, student, rows_path, rows, hardware, run_dir, tracker,
                                       cacheable=record.complete_inputs is not False, reload="eval" in stages)
        record.n_train, record.train_seconds = record.train["n_train"], record.train["train_seconds"]
        write_model_card(Path(student.adapter), _card_info(cfg, level, student, record))
    elif adapter_dir is not None:
        attach_adapter(student, adapter_dir)
    if "eval" in stages:
        samples, record.eval = eval_stage(student, splits.eval, level, cfg.model, cfg.eval, cfg.sampling, run_dir,
                                          system=cfg.prompt.get("system"), seed=int(cfg.seed), hardware=hardware)
        tracker.log_metrics({**record.eval, "n_train": record.n_train})
        tracker.log_samples(samples, int(cfg.eval.get("log_samples", 64)))
        if "train" in stages:  # the card now carries the scores too
            write_model_card(Path(student.adapter), _card_info(cfg, level, student, record))


def _adapter_source(cfg: DictConfig, run_dir: Path, stages: list[str]) -> Path | None:
    adapter = str(cfg.get("adapter", "auto"))
    if adapter == "none" or "train" in stages:
        return None
    if adapter == "auto":
        path = run_dir / ADAPTER_DIR
        if not path.is_dir():
            raise ConfigError(f"stage 'eval' has no adapter: add 'train' to stages, set adapter=PATH, "
                              f"or adapter=none for the base model ({path} does not exist)")
        return path
    return Path(adapter)


def _training_rows(cfg: DictConfig, run_dir: Path, stages: list[str]) -> tuple[Path, list[dict[str, Any]]]:
    """The SFT rows and their file, checked before any model is loaded: an empty set fails in a second, not a minute."""
    path = stage_input(cfg, "data_path", run_dir / FILTERED_FILE, "filter", stages)
    rows = read_jsonl(path)
    if not rows:
        raise TrainingError(f"nothing to train on: {path} is empty (the filter kept no trace; see its filter_report.json)")
    return path, rows


def _train(cfg: DictConfig, student: Student | None, rows_path: Path, rows: list[dict[str, Any]], hardware: Hardware,
           run_dir: Path, tracker: Tracker, cacheable: bool = True, reload: bool = True) -> tuple[dict[str, Any], Student]:
    """Train the adapter, or restore it from the stage cache: trials that differ only in sampling train once.

    ``student`` is None for data-parallel training: the workers train, and the student is loaded afterwards
    with their adapter attached, as on a cache hit. ``reload`` (for an evaluation) swaps the model trained here
    for the base model with the adapter as saved. ``cacheable=False`` (rows derived from incomplete traces) keeps
    the adapter out of the stage cache. Returns the train summary and the student, adapter attached.
    """
    parallel = student is None
    if parallel:
        quantization = "nf4" if resolve_quant_config(cfg.train, hardware) is not None else "none"
        compute = functools.partial(train_distributed, rows_path, plain_values(cfg.model), plain_values(cfg.train),
                                    hardware, run_dir, base_path=model_path(cfg.model))
    else:
        quantization = student.quantization
        compute = functools.partial(train_stage, student, rows, cfg.model, cfg.train, hardware, run_dir,
                                    tracker.report_to)
    # The global batch, hence the adapter, depends on the process count; 1 stays out of the key so that
    # single-process entries cached before data-parallel training existed still hit.
    extra = {"num_processes": hardware.num_processes} if hardware.num_processes > 1 else {}
    parts = cache_parts(cfg, "train", {"filtered": input_digest(rows_path)}, device=hardware.device,
                        precision=hardware.precision, quantization=quantization, **extra)
    summary = run_cached(stage_cache(cfg), "train", parts, run_dir, [ADAPTER_DIR], compute,
                         cacheable=lambda _: cacheable)
    cache = summary.get("cache")  # absent with the cache off
    if parallel:
        student = load_student(cfg.model, cfg.train, hardware)
        attach_adapter(student, run_dir / ADAPTER_DIR)
        summary["adapter"] = student.adapter  # as this trial names it, not the workers' resolved path
    elif cache == "hit":
        attach_adapter(student, run_dir / ADAPTER_DIR)
    elif reload:
        # Evaluate the adapter as saved, as a cache hit, data-parallel training or an eval-only run loads it: the
        # model as training left it generated other greedy outputs than its own saved adapter (7 of 48 problems,
        # SmolLM2-135M, bf16 on CPU), so the same adapter scored differently fresh and restored from the cache.
        student.model = None
        release_memory()
        student = load_student(cfg.model, cfg.train, hardware)
        attach_adapter(student, run_dir / ADAPTER_DIR)
    if parallel or cache == "hit":
        # Trained elsewhere (workers, or the trial that filled the cache): its loss curve still belongs in this
        # trial's W&B run, beside the scores of the adapter it produced.
        tracker.log_train_history(summary.get("loss_history") or [])
    if cache == "hit":
        # This trial's wall time is the copy; the cached training's own time stays in computed_seconds.
        summary.update(adapter=str(run_dir / ADAPTER_DIR), computed_seconds=summary["train_seconds"],
                       train_seconds=summary["seconds"])
    return summary, student


def _card_info(cfg: DictConfig, level: Level, student: Student, record: TrialRecord) -> dict[str, Any]:
    train = cfg.train
    return {
        "level": level.id, "level_name": level.name, "level_style": level.style,
        "base_model": cfg.model.get("path") or cfg.model.name, "base_path": student.path,
        "quantization": student.quantization, "data": cfg.data.name, "teacher": (record.traces or {}).get("teacher"),
        "n_train": record.n_train, "train_loss": (record.train or {}).get("train_loss"),
        "precision": record.hardware["precision"],
        "metrics": {key: value for key, value in record.headline().items() if key in SCORES},
        **{key: train[key] for key in ("lora_r", "lora_alpha", "lora_dropout", "epochs", "learning_rate", "batch_size")},
        "target_modules": OmegaConf.to_container(train.target_modules) if OmegaConf.is_config(train.target_modules)
        else train.target_modules,
    }
