"""Run the configured stages of one trial into its run dir, and record the outcome.

The trial is a loop over the declared stages (:data:`sweep.stages.PLAN`), each run through the one cached
call site, :func:`sweep.stages.base.run_stage`; what each returns fills the :class:`TrialRecord`.
Whatever happens, the run dir ends with a ``metrics.json`` whose ``status`` is ``completed`` or
``failed`` (with the error), so analysis never has to guess.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sweep.cli import available_levels
from sweep.config_check import check_config
from sweep.memory import peak_rss, release_process_memory, reset_peak_rss
from sweep.run_record import reserve_metrics, write_metrics
from sweep.stages import MODEL_STAGES, PLAN, resolve_stages
from sweep.stages.base import Stage, TrialContext, run_stage
from sweep.tracking import wandb_run
from sweep.trial_record import COMPLETED, TrialRecord
from training.common.errors import storage_error
from training.data.levels import level_from_config
from training.data.problems import load_problems
from training.models.gpu_slots import apply_gpu_slot
from training.models.hardware import apply_threads, resolve_hardware

__all__ = ["run_pipeline"]

log = logging.getLogger(__name__)


def run_pipeline(cfg: DictConfig, run_dir: Path, group: str = "runs") -> dict[str, Any]:
    """Run ``cfg.stages`` into ``run_dir``; always leave a ``metrics.json`` behind; return its contents.

    The model stages run inside the trial's W&B run (grouped by ``group``), which is closed as failed if
    they raise.
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
        settings = check_config(cfg, stages)  # every setting the stages will read, before any of them starts
        _run_stages(TrialContext(cfg, run_dir, level, stages, settings=settings), record, group)
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


def _run_stages(ctx: TrialContext, record: TrialRecord, group: str) -> None:
    """Each stage of ``ctx.stages`` in order, its result into ``record``; then the finishing touches of those
    that ran (the adapter's model card), even when a later stage failed."""
    plan = [stage for stage in PLAN if stage.name in ctx.stages]
    done: list[Stage] = []
    with contextlib.ExitStack() as model_scope:
        try:
            if "traces" in ctx.stages or "eval" in ctx.stages:
                ctx.splits = load_problems(ctx.cfg.data)
                record.data = stats = ctx.splits.stats
                log.info("data: %s, %d train / %d eval problems (%d rows without a gold answer skipped)",
                         stats["name"], stats["n_train"], stats["n_eval"], stats["skipped_no_gold"])
            for stage in plan:
                if stage.needs_model and ctx.hardware is None:
                    ctx.tracker = model_scope.enter_context(wandb_run(ctx.cfg, ctx.run_dir, group))
                    _start_model_stages(ctx, record)
                result = run_stage(stage, ctx, complete_inputs=record.complete_inputs is not False)
                ctx.results[stage.name] = result
                for key, value in stage.record(result).items():
                    setattr(record, key, value)
                done.append(stage)
        except BaseException:
            _finish(done, ctx, record, failing=True)
            raise
        _finish(done, ctx, record)
    if any(stage.name in MODEL_STAGES for stage in plan):
        release_process_memory()  # the student and trainer are unreachable now, but held in cycles


def _start_model_stages(ctx: TrialContext, record: TrialRecord) -> None:
    settings = ctx.group("hardware")
    # Before anything starts CUDA: a trial sharing the machine sees only its own GPUs from here on.
    gpus = None if settings.device == "cpu" else apply_gpu_slot(settings.concurrent_trials)
    hardware = ctx.hardware = resolve_hardware(ctx.cfg.hardware)
    apply_threads(hardware)
    record.hardware = {"name": hardware.name, "device": hardware.device, "precision": hardware.precision,
                       "precision_reason": hardware.precision_reason, "num_threads": hardware.num_threads,
                       "num_processes": hardware.num_processes,
                       "gpus": gpus if hardware.device == "cuda" else None}
    record.n_train = 0  # an eval-only trial trained on nothing


def _finish(done: list[Stage], ctx: TrialContext, record: TrialRecord, failing: bool = False) -> None:
    for stage in done:
        if stage.finish is None:
            continue
        try:
            stage.finish(ctx, record)
        except Exception as err:
            if not failing:
                raise
            # The trial's own error is the one to report; this one is logged beside it.
            log.warning("%s: could not finish (%s: %s)", stage.name, type(err).__name__, err)
