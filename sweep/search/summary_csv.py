"""``sweep_summary.csv``: one row per trial of a sweep (number, state, params, metrics, run dir, wall time).

Written from the Optuna storage for a search (it knows trials that failed before a run dir
existed) and from the run dirs' ``metrics.json`` and ``.hydra/overrides.yaml`` for a grid.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from optuna.trial import FrozenTrial

from sweep.cli import override_key
from sweep.run_record import read_metrics
from sweep.trial_record import SCORES
from training.common.atomic import atomic_file

SUMMARY_CSV = "sweep_summary.csv"
# The metrics each row carries, in this order (from metrics.json's top level): the trial record's scores, the
# confidence interval split in two, then how much it trained and how long it took.
METRIC_COLUMNS = ("level", *(column for key in SCORES for column in
                             ((f"{key}_low", f"{key}_high") if key == "accuracy_ci" else (key,))),
                  "n_train", "train_seconds", "eval_seconds")
STATES = {"completed": "COMPLETE", "failed": "FAIL", "running": "RUNNING"}


def trial_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The CSV's metric columns from a run dir's ``metrics.json`` (the CI split in two)."""
    ci = metrics.get("accuracy_ci") or [None, None]
    split = {**metrics, "accuracy_ci_low": ci[0], "accuracy_ci_high": ci[1]}
    return {key: split.get(key) for key in METRIC_COLUMNS}


def row_from_trial(trial: FrozenTrial) -> dict[str, Any]:
    attrs = trial.user_attrs
    wall = (trial.datetime_complete - trial.datetime_start).total_seconds() \
        if trial.datetime_complete and trial.datetime_start else None
    return {
        "number": trial.number, "state": trial.state.name,
        **{f"param.{name}": value for name, value in trial.params.items()},
        **trial_metrics(attrs.get("metrics") or {}),
        "error": attrs.get("error"), "retry_of": attrs.get("retry_of"), "repeat_of": attrs.get("repeat_of"),
        "run_dir": attrs.get("run_dir"), "wall_seconds": None if wall is None else round(wall, 1),
    }


def row_from_run_dir(run_dir: Path) -> dict[str, Any]:
    """A grid job's row: its number and overrides from ``.hydra``, its outcome from ``metrics.json``."""
    metrics = read_metrics(run_dir)
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    number = yaml.safe_load(hydra_file.read_text())["hydra"]["job"].get("num") if hydra_file.is_file() else None
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    params = {}
    for line in (yaml.safe_load(overrides_file.read_text()) or []) if overrides_file.is_file() else []:
        params[f"param.{override_key(line)}"] = str(line).partition("=")[2].strip("'\"")
    return {
        "number": number, "state": STATES.get(metrics.get("status"), str(metrics.get("status"))), **params,
        **trial_metrics(metrics), "error": metrics.get("error"), "retry_of": None, "repeat_of": None,
        "run_dir": str(run_dir), "wall_seconds": metrics.get("seconds"),
    }


def rows_from_sweep_dir(sweep_dir: Path) -> list[dict[str, Any]]:
    dirs = sorted(path.parent.parent for path in sweep_dir.glob("*/.hydra/hydra.yaml"))
    rows = [row_from_run_dir(path) for path in dirs]
    return sorted(rows, key=lambda row: (row["number"] is None, row["number"] or 0))


def write_summary(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Write ``rows`` as CSV (columns: the union, in first-seen order), replacing the file atomically."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(_cells(row) for row in rows)
    return path


def _cells(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: "" if value is None else value for key, value in row.items()}


def read_summary(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def state_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row["state"])] = counts.get(str(row["state"]), 0) + 1
    return counts
