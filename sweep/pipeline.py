"""Run the configured stages of one trial into its run dir, and record the outcome.

Whatever happens, the run dir ends with a ``metrics.json`` whose ``status`` is
``completed`` or ``failed`` (with the error), so analysis never has to guess.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from sweep.cli import available_levels
from training.data import load_problems
from training.errors import ConfigError
from training.jsonl import write_json
from training.levels import level_from_config
from training.stages import TRACES_FILE, filter_stage, traces_stage
from training.tokens import TokenCounter

log = logging.getLogger(__name__)

STAGES = ("traces", "filter")  # in execution order
PLANNED_STAGES = ("train", "eval")  # accepted names that later releases implement
METRICS_FILE = "metrics.json"


def resolve_stages(requested: Any) -> list[str]:
    names = [requested] if isinstance(requested, str) else list(requested or [])
    for name in names:
        if name in PLANNED_STAGES:
            raise ConfigError(f"stage {name!r} is not implemented yet (available: {', '.join(STAGES)})")
        if name not in STAGES:
            raise ConfigError(f"unknown stage {name!r} in stages={names} (valid: {', '.join(STAGES)})")
    if not names:
        raise ConfigError(f"stages is empty; list any of {', '.join(STAGES)}")
    return [name for name in STAGES if name in names]


def build_teacher(cfg: DictConfig) -> tuple[Any, int]:
    """The teacher object and how many samples per problem to ask it for."""
    args = OmegaConf.to_container(cfg, resolve=True)
    n_samples = int(args.pop("n_samples", 1))
    return instantiate(args), n_samples


def _traces_input(cfg: DictConfig, run_dir: Path, stages: list[str]) -> Path:
    if "traces" in stages:
        return run_dir / TRACES_FILE
    if cfg.filter.get("traces_path"):
        return Path(cfg.filter.traces_path)
    raise ConfigError("stage 'filter' needs traces: add 'traces' to stages or set +filter.traces_path=PATH")


def run_pipeline(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run ``cfg.stages`` into ``run_dir``; always leave a ``metrics.json`` behind."""
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summary: dict[str, Any] = {"status": "running", "run_dir": str(run_dir)}
    try:
        level = level_from_config(cfg.get("level"), valid=available_levels())
        stages = resolve_stages(cfg.get("stages"))
        summary.update(level=level.id, level_name=level.name, stages=stages)
        if "traces" in stages:
            splits = load_problems(cfg.data)
            summary["data"] = splits.stats
            log.info("data: %s, %d train / %d eval problems (%d rows without a gold answer skipped)",
                     splits.stats["name"], splits.stats["n_train"], splits.stats["n_eval"], splits.stats["skipped_no_gold"])
            teacher, n_samples = build_teacher(cfg.teacher)
            summary["traces"] = traces_stage(splits.train, level, teacher, run_dir / TRACES_FILE,
                                             n_samples=n_samples, seed=int(cfg.seed))
        if "filter" in stages:
            report = filter_stage(
                _traces_input(cfg, run_dir, stages), run_dir, level, TokenCounter(cfg.filter.get("tokenizer")),
                system=cfg.prompt.get("system"), select=cfg.filter.select,
                allow_empty_think=bool(cfg.filter.allow_empty_think), max_think_tokens=cfg.filter.get("max_think_tokens"),
                open_tag=cfg.think.open, close_tag=cfg.think.close,
            )
            summary["filter"] = {key: report[key] for key in ("kept_problems", "n_problems", "keep_rate", "dropped")}
            summary["filter"]["mean_think_chars"] = (report["think_chars"] or {}).get("mean")
            summary["filter"]["mean_think_tokens"] = (report["think_tokens"] or {}).get("mean")
        summary["status"] = "completed"
    except Exception as err:
        summary.update(status="failed", error=f"{type(err).__name__}: {err}")
        raise
    finally:
        summary["seconds"] = round(time.perf_counter() - start, 3)
        write_json(run_dir / METRICS_FILE, summary)
    return summary
