"""Run the configured stages of one trial into its run dir, and record the outcome.

Whatever happens, the run dir ends with a ``metrics.json`` whose ``status`` is
``completed`` or ``failed`` (with the error), so analysis never has to guess. The
data stages run here; the model stages in :mod:`sweep.model_run`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from sweep.cli import available_levels
from sweep.config_check import check_config
from sweep.memory import peak_rss, release_process_memory, reset_peak_rss
from sweep.model_run import run_model_stages
from sweep.run_record import METRICS_FILE, reserve_metrics, write_metrics
from sweep.trial_record import COMPLETED, TrialRecord
from sweep.stage_plan import MODEL_STAGES, STAGES, cache_parts, input_digest, resolve_stages, stage_cache, stage_input
from sweep.tracking import wandb_run
from training.data import Splits, load_problems
from training.errors import CotParetoError, storage_error
from training.levels import Level, level_from_config
from training.models import model_path
from training.stage_cache import rows_digest, run_cached
from training.stages import FILTER_REPORT_FILE, FILTERED_FILE, TRACES_FILE, filter_stage, traces_stage
from training.tokens import TokenCounter

__all__ = ["METRICS_FILE", "STAGES", "build_teacher", "resolve_stages", "run_pipeline"]

log = logging.getLogger(__name__)


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


def run_pipeline(cfg: DictConfig, run_dir: Path, group: str = "runs") -> dict[str, Any]:
    """Run ``cfg.stages`` into ``run_dir``; always leave a ``metrics.json`` behind; return its contents.

    The model stages run inside the trial's W&B run (grouped by ``group``), which
    is closed as failed if they raise.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    record = TrialRecord(run_dir=str(run_dir))
    rss_scope = "process"
    try:
        reserve_metrics(run_dir, record.to_json())  # blocks that a failure on a full disk can still write into
        # Inside the try: a Ctrl-C during the collection must still leave a metrics.json behind.
        release_process_memory()  # an earlier trial in this process (or its failure's traceback) must not count here
        rss_scope = reset_peak_rss()
        level = level_from_config(cfg.get("level"), valid=available_levels())
        adapter = str(cfg.get("adapter", "auto"))
        stages = resolve_stages(cfg.get("stages"), adapter)
        record.level, record.level_name, record.stages = level.id, level.name, stages
        record.model, record.adapter = cfg.model.name, adapter
        check_config(cfg, stages)  # every setting the stages will read, before any of them starts
        splits = _data_stages(cfg, run_dir, level, stages, record)
        if any(stage in stages for stage in MODEL_STAGES):
            with wandb_run(cfg, run_dir, group) as tracker:
                run_model_stages(cfg, run_dir, level, stages, splits, record, tracker)
            release_process_memory()  # the student and trainer are unreachable now, but held in cycles
        record.status = COMPLETED
    except BaseException as err:  # Ctrl-C too: the run dir must not be left saying "running"
        disk_full = storage_error(err)  # one line naming the path, not a traceback (or a kilobyte of shutil.Error)
        record.fail(disk_full or err)
        if disk_full is not None:
            raise disk_full from None
        raise
    finally:
        record.seconds = round(time.perf_counter() - start, 3)
        record.resources = peak_rss(rss_scope)
        try:
            write_metrics(run_dir, record.to_json())
        except OSError as err:
            raise (storage_error(err) or err) from None
    return record.to_json()


def _data_stages(cfg: DictConfig, run_dir: Path, level: Level, stages: list[str], record: TrialRecord) -> Splits | None:
    """The data, traces and filter stages, their results in ``record``. ``record.complete_inputs`` is False after
    failed teacher requests, so that nothing derived from the short trace set (filtered rows, an adapter) is
    stored in the stage cache."""
    splits = None
    if "traces" in stages or "eval" in stages:
        splits = load_problems(cfg.data)
        record.data = splits.stats
        log.info("data: %s, %d train / %d eval problems (%d rows without a gold answer skipped)",
                 splits.stats["name"], splits.stats["n_train"], splits.stats["n_eval"], splits.stats["skipped_no_gold"])
    if "traces" in stages:
        parts = cache_parts(cfg, "traces", {"problems": rows_digest([asdict(p) for p in splits.train])})
        record.traces = run_cached(stage_cache(cfg), "traces", parts, run_dir, [TRACES_FILE],
                                   lambda: _traces(cfg, splits, level, run_dir),
                                   cacheable=lambda result: result["retryable_errors"] == 0)
        # Only errors that may not recur (failed requests) make the traces incomplete; a problem the reference
        # teacher cannot render fails the same way every time.
        record.complete_inputs = record.traces.get("retryable_errors", 0) == 0
        if not record.complete_inputs:
            log.warning("traces: %d teacher requests failed; this trial trains on the traces that came back, and "
                        "nothing derived from them is cached (a later run asks the teacher again)",
                        record.traces["retryable_errors"])
    if "filter" in stages:
        traces_path = stage_input(cfg, "traces_path", run_dir / TRACES_FILE, "traces", stages)
        parts = cache_parts(cfg, "filter", {"traces": input_digest(traces_path)})
        report = run_cached(stage_cache(cfg), "filter", parts, run_dir, [FILTERED_FILE, FILTER_REPORT_FILE],
                            lambda: _filter(cfg, run_dir, level, traces_path),
                            cacheable=lambda _: record.complete_inputs is not False)
        record.filter = {key: report[key] for key in ("kept_problems", "n_problems", "keep_rate",
                                                      "problems_without_correct_trace", "dropped")}
        record.filter["mean_think_chars"] = (report["think_chars"] or {}).get("mean")
        record.filter["mean_think_tokens"] = (report["think_tokens"] or {}).get("mean")
        record.filter.update({key: report[key] for key in ("cache", "seconds") if key in report})
    return splits


def _traces(cfg: DictConfig, splits: Splits, level: Level, run_dir: Path) -> dict[str, Any]:
    teacher, n_samples = build_teacher(cfg.teacher)
    return traces_stage(splits.train, level, teacher, run_dir / TRACES_FILE, n_samples=n_samples, seed=int(cfg.seed))


def _filter(cfg: DictConfig, run_dir: Path, level: Level, traces_path: Path) -> dict[str, Any]:
    think = cfg.model.think
    counter = TokenCounter(cfg.filter.get("tokenizer") or model_path(cfg.model))
    return filter_stage(
        traces_path, run_dir, level, counter,
        system=cfg.prompt.get("system"), select=cfg.filter.select,
        allow_empty_think=bool(cfg.filter.allow_empty_think), max_think_tokens=cfg.filter.get("max_think_tokens"),
        open_tag=think.open, close_tag=think.close,
    )
