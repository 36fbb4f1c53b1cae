"""Run the configured stages of one trial into its run dir, and record the outcome.

Whatever happens, the run dir ends with a ``metrics.json`` whose ``status`` is
``completed`` or ``failed`` (with the error), so analysis never has to guess.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from sweep.cli import available_levels
from sweep.tracking import Tracker, wandb_run
from training.data import Splits, load_problems
from training.distributed import train_distributed
from training.errors import ConfigError, CotParetoError, TrainingError
from training.generation import generation_kwargs
from training.hardware import Hardware, apply_threads, resolve_hardware
from training.jsonl import read_jsonl, write_json
from training.levels import Level, level_from_config
from training.model_card import write_model_card
from training.model_stages import ADAPTER_DIR, Student, attach_adapter, eval_stage, load_student, train_stage
from training.models import model_path
from training.sft import resolve_quant_config
from training.stage_cache import cache_dir, run_cached
from training.stages import FILTER_REPORT_FILE, FILTERED_FILE, TRACES_FILE, filter_stage, traces_stage
from training.tokens import TokenCounter

log = logging.getLogger(__name__)

STAGES = ("traces", "filter", "train", "eval")  # in execution order
MODEL_STAGES = ("train", "eval")
METRICS_FILE = "metrics.json"


def resolve_stages(requested: Any, adapter: str = "auto") -> list[str]:
    names = [requested] if isinstance(requested, str) else list(requested or [])
    for name in names:
        if name not in STAGES:
            raise ConfigError(f"unknown stage {name!r} in stages={names} (valid: {', '.join(STAGES)})")
    if not names:
        raise ConfigError(f"stages is empty; list any of {', '.join(STAGES)}")
    if adapter == "none" and "train" in names:
        log.info("adapter=none: evaluating the base model, so the train stage is skipped")
        names = [name for name in names if name != "train"]
    return [name for name in STAGES if name in names]


def build_teacher(cfg: DictConfig) -> tuple[Any, int]:
    """The teacher object and how many samples per problem to ask it for."""
    args = OmegaConf.to_container(cfg, resolve=True)
    n_samples = int(args.pop("n_samples", 1))
    try:
        return instantiate(args), n_samples
    except InstantiationException as err:
        # A teacher that rejects its own settings: the user gets that one line, not Hydra's wrapper.
        if isinstance(err.__cause__, CotParetoError):
            raise err.__cause__ from None
        raise


# Teacher settings that change how the work is done, not what comes out: not part of the traces' cache key,
# so raising concurrency or moving the response cache does not redo a level's traces.
OPERATIONAL_TEACHER_KEYS = ("concurrency", "timeout_s", "max_retries", "backoff_s", "backoff_max_s", "cache_dir",
                            "api_key_env", "batch_size")


def _input(cfg: DictConfig, key: str, produced: Path, producer: str, stages: list[str]) -> Path:
    """A stage's input file: made by ``producer`` in this run, or given as ``+<stage>.<key>=PATH``."""
    if producer in stages:
        return produced
    stage = "filter" if key == "traces_path" else "train"
    if cfg[stage].get(key):
        return Path(cfg[stage][key])
    raise ConfigError(f"stage {stage!r} needs {producer} output: add {producer!r} to stages or set +{stage}.{key}=PATH")


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
    path = _input(cfg, "data_path", run_dir / FILTERED_FILE, "filter", stages)
    rows = read_jsonl(path)
    if not rows:
        raise TrainingError(f"nothing to train on: {path} is empty (the filter kept no trace; see its filter_report.json)")
    return path, rows


def _card_info(cfg: DictConfig, level: Level, student: Student, summary: dict[str, Any]) -> dict[str, Any]:
    train = cfg.train
    return {
        "level": level.id, "level_name": level.name, "level_style": level.style,
        "base_model": cfg.model.get("path") or cfg.model.name, "base_path": student.path,
        "quantization": student.quantization, "data": cfg.data.name, "teacher": summary.get("traces", {}).get("teacher"),
        "n_train": summary.get("n_train"), "train_loss": summary.get("train", {}).get("train_loss"),
        "precision": summary["hardware"]["precision"], "metrics": summary.get("eval"),
        **{key: train[key] for key in ("lora_r", "lora_alpha", "lora_dropout", "epochs", "learning_rate", "batch_size")},
        "target_modules": OmegaConf.to_container(train.target_modules) if OmegaConf.is_config(train.target_modules)
        else train.target_modules,
    }


def run_pipeline(cfg: DictConfig, run_dir: Path, group: str = "runs") -> dict[str, Any]:
    """Run ``cfg.stages`` into ``run_dir``; always leave a ``metrics.json`` behind.

    The model stages run inside the trial's W&B run (grouped by ``group``), which
    is closed as failed if they raise.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summary: dict[str, Any] = {"status": "running", "run_dir": str(run_dir)}
    try:
        level = level_from_config(cfg.get("level"), valid=available_levels())
        adapter = str(cfg.get("adapter", "auto"))
        stages = resolve_stages(cfg.get("stages"), adapter)
        summary.update(level=level.id, level_name=level.name, stages=stages, model=cfg.model.name, adapter=adapter)
        splits = _data_stages(cfg, run_dir, level, stages, summary)
        if any(stage in stages for stage in MODEL_STAGES):
            with wandb_run(cfg, run_dir, group) as tracker:
                _model_stages(cfg, run_dir, level, stages, splits, summary, tracker)
        summary["status"] = "completed"
    except BaseException as err:  # Ctrl-C too: the run dir must not be left saying "running"
        summary.update(status="failed", error=f"{type(err).__name__}: {err}" if str(err) else type(err).__name__)
        raise
    finally:
        summary["seconds"] = round(time.perf_counter() - start, 3)
        write_json(run_dir / METRICS_FILE, summary)
    return summary


def _data_stages(cfg: DictConfig, run_dir: Path, level: Level, stages: list[str], summary: dict[str, Any]) -> Splits | None:
    splits = None
    if "traces" in stages or "eval" in stages:
        splits = load_problems(cfg.data)
        summary["data"] = splits.stats
        log.info("data: %s, %d train / %d eval problems (%d rows without a gold answer skipped)",
                 splits.stats["name"], splits.stats["n_train"], splits.stats["n_eval"], splits.stats["skipped_no_gold"])
    if "traces" in stages:
        summary["traces"] = run_cached(_stage_cache(cfg, stages, "traces"), "traces", _cache_parts(cfg, "traces"),
                                       run_dir, [TRACES_FILE], lambda: _traces(cfg, splits, level, run_dir),
                                       cacheable=lambda result: result["teacher_errors"] == 0)
    if "filter" in stages:
        report = run_cached(_stage_cache(cfg, stages, "filter"), "filter", _cache_parts(cfg, "filter"), run_dir,
                            [FILTERED_FILE, FILTER_REPORT_FILE], lambda: _filter(cfg, run_dir, level, stages))
        summary["filter"] = {key: report[key] for key in ("kept_problems", "n_problems", "keep_rate",
                                                          "problems_without_correct_trace", "dropped")}
        summary["filter"]["mean_think_chars"] = (report["think_chars"] or {}).get("mean")
        summary["filter"]["mean_think_tokens"] = (report["think_tokens"] or {}).get("mean")
        summary["filter"].update({key: report[key] for key in ("cache", "seconds") if key in report})
    return splits


# The config groups each stage's output depends on, cumulatively: a stage's key covers its inputs' keys.
CACHE_KEYS = {"traces": ("data", "teacher", "level", "seed"), "filter": ("filter", "prompt", "model"),
              "train": ("train",)}


def _cache_parts(cfg: DictConfig, stage: str, **extra: Any) -> dict[str, Any]:
    """Resolved plain values of the settings ``stage``'s output depends on: its cache key."""
    keys = [key for name in STAGES[:STAGES.index(stage) + 1] for key in CACHE_KEYS.get(name, ())]
    parts = {key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
             for key in keys}
    if isinstance(parts.get("teacher"), dict):
        parts["teacher"] = {k: v for k, v in parts["teacher"].items() if k not in OPERATIONAL_TEACHER_KEYS}
    return {**parts, **extra}


def _stage_cache(cfg: DictConfig, stages: list[str], stage: str) -> Path | None:
    """The cache root for ``stage``, or None: off by config, or fed a file given by path (no settings to key on)."""
    if not (cfg.get("cache") and cfg.cache.get("enabled")):
        return None
    if any(name not in stages for name in STAGES[:STAGES.index(stage)]):
        return None
    return cache_dir(cfg.cache.get("dir"))


def _traces(cfg: DictConfig, splits: Splits, level: Level, run_dir: Path) -> dict[str, Any]:
    teacher, n_samples = build_teacher(cfg.teacher)
    return traces_stage(splits.train, level, teacher, run_dir / TRACES_FILE, n_samples=n_samples, seed=int(cfg.seed))


def _filter(cfg: DictConfig, run_dir: Path, level: Level, stages: list[str]) -> dict[str, Any]:
    think = cfg.model.think
    counter = TokenCounter(cfg.filter.get("tokenizer") or model_path(cfg.model))
    return filter_stage(
        _input(cfg, "traces_path", run_dir / TRACES_FILE, "traces", stages), run_dir, level, counter,
        system=cfg.prompt.get("system"), select=cfg.filter.select,
        allow_empty_think=bool(cfg.filter.allow_empty_think), max_think_tokens=cfg.filter.get("max_think_tokens"),
        open_tag=think.open, close_tag=think.close,
    )


def _model_stages(cfg: DictConfig, run_dir: Path, level: Level, stages: list[str], splits: Splits | None,
                  summary: dict[str, Any], tracker: Tracker) -> None:
    hardware = resolve_hardware(cfg.hardware)
    apply_threads(hardware)
    summary["hardware"] = {"name": hardware.name, "device": hardware.device, "precision": hardware.precision,
                           "num_threads": hardware.num_threads, "num_processes": hardware.num_processes}
    adapter_dir = _adapter_source(cfg, run_dir, stages)
    rows_path, rows = _training_rows(cfg, run_dir, stages) if "train" in stages else (None, [])
    if "eval" in stages:
        generation_kwargs(cfg.sampling)  # bad sampling settings fail now, not after the training they would waste
    # Data-parallel training runs in torchrun workers; the trial loads its own copy of the student only after
    # them (in _train), so it holds no GPU memory while they train.
    parallel = "train" in stages and hardware.num_processes > 1
    student = None if parallel else load_student(cfg.model, cfg.train, hardware)
    summary["n_train"] = 0
    if "train" in stages:
        summary["train"], student = _train(cfg, student, rows_path, rows, hardware, run_dir, stages, tracker)
        summary["n_train"] = summary["train"]["n_train"]
        summary["train_seconds"] = summary["train"]["train_seconds"]
        write_model_card(Path(student.adapter), _card_info(cfg, level, student, summary))
    elif adapter_dir is not None:
        attach_adapter(student, adapter_dir)
    if "eval" in stages:
        samples, metrics = eval_stage(student, splits.eval, level, cfg.model, cfg.eval, cfg.sampling, run_dir,
                                      system=cfg.prompt.get("system"), seed=int(cfg.seed), hardware=hardware)
        summary["eval"] = metrics
        summary.update({key: metrics[key] for key in HEADLINE_METRICS if key in metrics})
        tracker.log_metrics({**metrics, "n_train": summary["n_train"]})
        tracker.log_samples(samples, int(cfg.eval.get("log_samples", 64)))
        if "train" in stages:  # the card now carries the scores too
            write_model_card(Path(student.adapter), _card_info(cfg, level, student, summary))


def _train(cfg: DictConfig, student: Student | None, rows_path: Path, rows: list[dict[str, Any]], hardware: Hardware,
           run_dir: Path, stages: list[str], tracker: Tracker) -> tuple[dict[str, Any], Student]:
    """Train the adapter, or restore it from the stage cache: trials that differ only in sampling train once.

    ``student`` is None for data-parallel training: the workers train, and the student is loaded afterwards
    with their adapter attached, as on a cache hit. Returns the train summary and the student, adapter attached.
    """
    if student is None:
        quantization = "nf4" if resolve_quant_config(cfg.train, hardware) is not None else "none"
        compute = functools.partial(train_distributed, rows_path, _plain(cfg.model), _plain(cfg.train), hardware,
                                    run_dir, base_path=model_path(cfg.model))
    else:
        quantization = student.quantization
        compute = functools.partial(train_stage, student, rows, cfg.model, cfg.train, hardware, run_dir,
                                    tracker.report_to)
    # The global batch, hence the adapter, depends on the process count; 1 stays out of the key so that
    # single-process entries cached before data-parallel training existed still hit.
    extra = {"num_processes": hardware.num_processes} if hardware.num_processes > 1 else {}
    parts = _cache_parts(cfg, "train", device=hardware.device, precision=hardware.precision,
                         quantization=quantization, **extra)
    summary = run_cached(_stage_cache(cfg, stages, "train"), "train", parts, run_dir, [ADAPTER_DIR], compute)
    cache = summary.get("cache")  # absent with the cache off
    if student is None:
        student = load_student(cfg.model, cfg.train, hardware)
        attach_adapter(student, run_dir / ADAPTER_DIR)
        summary["adapter"] = student.adapter  # as this trial names it, not the workers' resolved path
        if cache != "hit":  # the workers logged nowhere: their loss curve goes into the trial's run
            _log_loss_history(tracker, summary["loss_history"])
    elif cache == "hit":
        attach_adapter(student, run_dir / ADAPTER_DIR)
    if cache == "hit":
        # This trial's wall time is the copy; the cached training's own time stays in computed_seconds.
        summary.update(adapter=str(run_dir / ADAPTER_DIR), computed_seconds=summary["train_seconds"],
                       train_seconds=summary["seconds"])
    return summary, student


def _plain(node: Any) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True)


def _log_loss_history(tracker: Tracker, history: list[dict[str, Any]]) -> None:
    """Log a worker's loss curve under the names the HF Trainer's W&B callback uses in a single-process trial."""
    if tracker.run is None:
        return
    for entry in history:
        tracker.run.log({"train/loss": entry["loss"], "train/global_step": entry["step"]})


# Copied to the top level of metrics.json, where analysis and sweeps read them.
HEADLINE_METRICS = ("accuracy", "accuracy_ci", "accuracy_strict", "mean_think_tokens", "median_think_tokens",
                    "mean_completion_tokens", "format_error_rate", "n_eval", "eval_seconds", "eval_tokens_per_second")
