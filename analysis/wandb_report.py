"""Log a report to W&B as one run of the sweep's group: the Pareto scatter, the front table, hypervolumes,
and the paired table (each front point and the baseline against the best: Δ accuracy [95 % CI], p, n to decide).

Offline unless the user has a key (the same rule as the trials' runs, ``sweep.tracking.resolve_mode``);
``--wandb online|offline|disabled`` beats a ``WANDB_MODE`` in the environment, ``--wandb auto`` does not.
"""

from __future__ import annotations

import logging
from pathlib import Path

from analysis.paired_table import evidence_rows
from analysis.report import Report, front_row
from analysis.scatter import pareto_figure
from sweep.tracking import resolve_mode

log = logging.getLogger(__name__)


def log_report(report: Report, group: str, mode: str = "auto", project: str = "cot-pareto") -> str | None:
    """The run's mode and dir, or None when W&B is disabled; the run is always finished."""
    mode = resolve_mode(mode, explicit=True)  # --wandb disabled must win over an exported WANDB_MODE
    if mode == "disabled":
        return None
    import wandb

    run = wandb.init(project=project, group=group, name=f"pareto-{group}", job_type="analysis", mode=mode,
                     dir=str(report.out_dir), reinit="finish_previous", settings=wandb.Settings(silent=True),
                     config={"series": [tr.series for tr in report.tradeoffs]})
    try:
        rows = [front_row(p) for tr in report.tradeoffs for p in tr.front]
        columns = sorted({key for row in rows for key in row}, key=lambda k: (k.startswith("param."), k))
        table = _table(wandb, rows, columns)
        run.log({"pareto/scatter": wandb.Plotly(pareto_figure(report.tradeoffs, report.evidence, report.routings)),
                 "pareto/plot": wandb.Image(str(report.out_dir / "pareto.png")), "pareto/front": table,
                 "pareto/paired": _table(wandb, [row for ev in report.evidence for row in evidence_rows(ev)])})
        for tr, ev in zip(report.tradeoffs, report.evidence):
            run.summary[f"{tr.series}/hypervolume"] = tr.hypervolume
            run.summary[f"{tr.series}/hypervolume_share"] = tr.hypervolume_share
            run.summary[f"{tr.series}/front_size"] = len(tr.front)
            run.summary[f"{tr.series}/eval_problems"] = ev.sets.statement()
            run.summary[f"{tr.series}/paired_best"] = None if ev.best is None else ev.best.name
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.finish()
    where = Path(run.dir).parent if mode == "offline" else run.url
    log.info("wandb: %s report run in %s", mode, where)
    return f"{mode} run in {where}"


def _table(wandb, rows: list[dict], columns: list[str] | None = None):
    """A W&B table of dict rows; ``columns`` defaults to the first row's keys."""
    columns = columns or (list(rows[0]) if rows else ["series"])
    return wandb.Table(columns=columns, data=[[_cell(row.get(c)) for c in columns] for row in rows])


def _cell(value):
    return str(value) if isinstance(value, Path) else value
