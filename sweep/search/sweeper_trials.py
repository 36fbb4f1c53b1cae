"""What the sweeper reads back from a trial's run dir, the grid queue, and the baseline's claim among workers."""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import optuna
from hydra.core.utils import JobReturn, JobStatus
from optuna.trial import FrozenTrial, TrialState

from sweep.run_record import RUNNING, read_metrics
from sweep.search.space import SearchSpace, grid_points
from sweep.search.study import ERROR, REPEAT_OF, host_name, parse_worker, pid_alive, worker_id
from sweep.search.summary_csv import SUMMARY_CSV

log = logging.getLogger(__name__)

BASELINE_DIR = "baseline"


def enqueue_grid(study: optuna.Study, space: SearchSpace) -> int:
    """Queue every grid point once, in order; a resumed study skips the points it already has.

    Optuna's GridSampler re-samples the points of failed trials and stops the study from
    inside ``tell``; a queue runs each point exactly once and lets workers share it.
    """
    grid = grid_points(space)
    for values in itertools.product(*grid.values()):
        study.enqueue_trial(dict(zip(grid, values)), skip_if_exists=True)
    return math.prod(len(values) for values in grid.values())


def claim(marker: Path) -> bool:
    """Take the baseline for this worker, unless a live worker on this host (or any on another) holds it.

    Called under the ask lock. A claim by a dead process on this host is taken over; a baseline that
    failed is retried by the next run of the command.
    """
    if marker.is_file():
        host, pid = parse_worker(marker.read_text().strip())
        if host != host_name() or (pid is not None and pid != os.getpid() and pid_alive(pid)):
            return False
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(worker_id())
    return True


def read_outcome(run_dir: Path, result: JobReturn | None, metrics: Sequence[str]) -> tuple[list[float] | None, str | None, dict]:
    """(objective values, None) for a completed trial, else (None, reason); plus its metrics.json."""
    summary = read_metrics(run_dir)
    if summary["status"] == RUNNING:  # no metrics.json: the trial never got to write one
        if result is not None and result.status == JobStatus.FAILED:
            err = result._return_value  # noqa: SLF001 - .return_value would re-raise it
            return None, f"{type(err).__name__}: {err}", {}
        return None, f"no metrics.json in {run_dir}", {}
    if summary.get("status") != "completed":
        return None, summary.get("error") or f"trial ended with status {summary.get('status')!r}", summary
    values = [summary.get(name) for name in metrics]
    bad = [name for name, value in zip(metrics, values) if not isinstance(value, int | float) or not math.isfinite(value)]
    if bad:
        return None, f"metrics.json has no finite {', '.join(bad)} (did the eval stage run?)", summary
    return [float(v) for v in values], None, summary


def log_report(study: optuna.Study, sweep_dir: Path) -> None:
    """The study's last line: trials by state, the Pareto front, where the summary and report are."""
    trials = study.get_trials(deepcopy=False)
    states = {state.name: sum(1 for t in trials if t.state == state) for state in TrialState}
    front = [t.number for t in study.best_trials] if states.get("COMPLETE") else []
    log.info("study %s: %s; Pareto front: trials %s; summary: %s; plots and report: python -m analysis report %s",
             study.study_name, ", ".join(f"{n} {s.lower()}" for s, n in states.items() if n), front or "none yet",
             sweep_dir / SUMMARY_CSV, sweep_dir)


def reuse(study: optuna.Study, trial: optuna.Trial, twin: FrozenTrial) -> None:
    """Tell ``trial`` the result of ``twin``, a finished trial with the same parameters: nothing runs."""
    original = twin.user_attrs.get(REPEAT_OF, twin.number)
    for key in ("run_dir", "metrics", "overrides"):
        if key in twin.user_attrs:
            trial.set_user_attr(key, twin.user_attrs[key])
    trial.set_user_attr(REPEAT_OF, original)
    study.tell(trial, twin.values)
    log.info("trial %d repeats trial %d's parameters: its result reused, nothing run", trial.number, original)


def fail(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr(ERROR, reason)
    study.tell(trial, state=TrialState.FAIL)
    log.error("trial %d failed: %s", trial.number, reason)
