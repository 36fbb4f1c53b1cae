"""Which stages a trial runs, where each stage's input file comes from, and what its cache key holds."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from training.errors import ConfigError
from training.models import plain_values
from training.stage_cache import cache_dir

log = logging.getLogger(__name__)

STAGES = ("traces", "filter", "train", "eval")  # in execution order
MODEL_STAGES = ("train", "eval")


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


def stage_input(cfg: DictConfig, key: str, produced: Path, producer: str, stages: list[str]) -> Path:
    """A stage's input file: made by ``producer`` in this run, or given as ``+<stage>.<key>=PATH``."""
    if producer in stages:
        return produced
    stage = "filter" if key == "traces_path" else "train"
    if cfg[stage].get(key):
        return Path(cfg[stage][key])
    raise ConfigError(f"stage {stage!r} needs {producer} output: add {producer!r} to stages or set +{stage}.{key}=PATH")


# The config groups each stage's output depends on, cumulatively: a stage's key covers its inputs' keys.
CACHE_KEYS = {"traces": ("data", "teacher", "level", "seed"), "filter": ("filter", "prompt", "model"),
              "train": ("train",)}

# Teacher settings that change how the work is done, not what comes out: not part of the traces' cache key,
# so raising concurrency or moving the response cache does not redo a level's traces.
OPERATIONAL_TEACHER_KEYS = ("concurrency", "timeout_s", "max_retries", "backoff_s", "backoff_max_s", "cache_dir",
                            "api_key_env", "batch_size")


def cache_parts(cfg: DictConfig, stage: str, **extra: Any) -> dict[str, Any]:
    """Resolved plain values of the settings ``stage``'s output depends on: its cache key."""
    keys = [key for name in STAGES[:STAGES.index(stage) + 1] for key in CACHE_KEYS.get(name, ())]
    parts = {key: plain_values(cfg[key]) for key in keys}
    if isinstance(parts.get("teacher"), dict):
        parts["teacher"] = {k: v for k, v in parts["teacher"].items() if k not in OPERATIONAL_TEACHER_KEYS}
    return {**parts, **extra}


def stage_cache(cfg: DictConfig, stages: list[str], stage: str) -> Path | None:
    """The cache root for ``stage``, or None: off by config, or fed a file given by path (no settings to key on)."""
    if not (cfg.get("cache") and cfg.cache.get("enabled")):
        return None
    if any(name not in stages for name in STAGES[:STAGES.index(stage)]):
        return None
    return cache_dir(cfg.cache.get("dir"))
