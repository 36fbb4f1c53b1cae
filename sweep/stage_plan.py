"""Which stages a trial runs, where each stage's input file comes from, and what its cache key holds."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from training.errors import ConfigError, DataError
from training.models import plain_values
from training.stage_cache import cache_dir, content_digest

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


# The config groups each stage's own output depends on. The stage's inputs enter its key by content
# (``inputs`` of cache_parts): a digest of the problems, of traces.jsonl, of filtered.jsonl. Upstream settings
# alone would let a filter run on a teacher outage's short traces be restored after the teacher recovers.
CACHE_KEYS = {"traces": ("data", "teacher", "level", "seed"), "filter": ("filter", "prompt", "model", "level"),
              "train": ("train", "model")}

# Teacher settings that change how the work is done, not what comes out: not part of the traces' cache key,
# so raising concurrency or moving the response cache does not redo a level's traces.
OPERATIONAL_TEACHER_KEYS = ("concurrency", "timeout_s", "max_retries", "backoff_s", "backoff_max_s", "cache_dir",
                            "api_key_env", "batch_size")


def cache_parts(cfg: DictConfig, stage: str, inputs: dict[str, str], **extra: Any) -> dict[str, Any]:
    """The cache key of ``stage``: its resolved settings plus ``inputs``, the content digests of what it reads."""
    parts = {key: plain_values(cfg[key]) for key in CACHE_KEYS[stage]}
    if isinstance(parts.get("teacher"), dict):
        parts["teacher"] = {k: v for k, v in parts["teacher"].items() if k not in OPERATIONAL_TEACHER_KEYS}
    return {**parts, "inputs": dict(inputs), **extra}


def stage_cache(cfg: DictConfig) -> Path | None:
    """The stage cache's root, or None when ``cache.enabled`` is off.

    Keys hold their inputs' content, so a stage fed a file given by path (``+filter.traces_path``) caches too.
    """
    if not (cfg.get("cache") and cfg.cache.get("enabled")):
        return None
    return cache_dir(cfg.cache.get("dir"))


def input_digest(path: Path) -> str:
    """The content digest of a stage's input file, for its cache key; a missing file is the user's to fix."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return content_digest(path)
