"""Build the report of one or more sweeps: ``pareto.csv`` (the fronts), ``trials.csv`` (every completed
trial), ``pareto.png``, ``report.html`` and ``report.json`` (hypervolumes, skipped counts, fronts, the
baselines, the paired evidence: each front point and the baseline against the series' best point, and
per-task routing).

Every series (a sweep dir or a study) gets its own front, hypervolume, paired table and routing. Routing
(``analysis.route``) runs over all of a series' trials, its baselines included, with the bound
``--route-max-accuracy-drop`` (default 0.02); where it cannot be computed (the samples carry no task
type, fewer than two settings share the eval problems) the report says why in one line and writes
everything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.html_report import write_report
from analysis.paired_table import DEFAULT_MARGIN, METHODS, PairedEvidence, evidence_rows, paired_evidence
from analysis.plots import plot_pareto
from analysis.route import Routing, route, routing_line, routing_summary
from analysis.route_crossfit import crossfit_line
from analysis.tradeoff import FrontPoint, Tradeoff, tradeoff
from analysis.trials import Collection, Trial
from sweep.search.summary_csv import write_summary
from training.common.errors import CotParetoError
from training.common.jsonl import write_json

FILES = ("pareto.csv", "trials.csv", "pareto.png", "report.html", "report.json")
ROUTE_MAX_ACCURACY_DROP = 0.02


@dataclass(frozen=True)
class Report:
    out_dir: Path
    tradeoffs: list[Tradeoff]
    collections: list[Collection]
    evidence: list[PairedEvidence]
    routings: list[Routing | None]      # one per series; None where routing could not be computed
    routing_notes: list[str | None]     # why not, where it could not

    @property
    def html(self) -> Path:
        return self.out_dir / "report.html"


def trial_row(trial: Trial) -> dict[str, Any]:
    """A trial as a flat row: who, params, and metrics with the CI split in two."""
    return {"series": trial.series, "trial": trial.name, "baseline": trial.baseline, "level": trial.level,
            "latent": trial.latent, "thinking": trial.thinking, "accuracy": trial.accuracy,
            "accuracy_ci_low": trial.accuracy_ci[0],
            "accuracy_ci_high": trial.accuracy_ci[1], "mean_think_tokens": trial.mean_think_tokens,
            "mean_completion_tokens": trial.mean_completion_tokens, "n_eval": trial.n_eval, "n_train": trial.n_train,
            "seconds_per_problem": None if trial.seconds_per_problem is None else round(trial.seconds_per_problem, 4),
            **{f"param.{k}": v for k, v in sorted(trial.params.items())},
            "run_dir": None if trial.run_dir is None else str(trial.run_dir)}


def front_row(point: FrontPoint) -> dict[str, Any]:
    return {**trial_row(point.trial), "token_saving": point.token_saving, "latency_saving": point.latency_saving,
            "accuracy_vs_baseline": point.accuracy_change}


def paired_summary(evidence: PairedEvidence) -> dict[str, Any]:
    sets = evidence.sets
    return {"shared_problems": len(sets.problems), "all_trials_share_problems": not sets.excluded,
            "statement": sets.statement(),
            "left_out": [{"trial": t.name, "reason": sets.excluded[id(t)]}
                         for t in sets.trials if id(t) in sets.excluded],
            "best": None if evidence.best is None else evidence.best.name, "margin": evidence.margin,
            "not_significantly_worse": f"paired 95 % CI lower bound of (accuracy - the best's) >= -{evidence.margin:g}",
            "methods": METHODS, "notes": evidence.notes, "rows": evidence_rows(evidence)}


def _base(trial: Trial) -> dict[str, Any]:
    return {"trial": trial.name, "label": trial.label, "thinking": trial.thinking, "accuracy": trial.accuracy,
            "mean_think_tokens": trial.mean_think_tokens}


def summary(tr: Tradeoff, collection: Collection, evidence: PairedEvidence, routing: Routing | None,
            routing_note: str | None) -> dict[str, Any]:
    return {"series": tr.series, "completed": len(tr.trials), "skipped": dict(collection.skipped),
            "unreadable": collection.unreadable, "baseline": None if tr.baseline is None else _base(tr.baseline),
            "other_baselines": [_base(t) for t in tr.other_baselines],
            "reference": list(tr.reference), "reference_source": tr.reference_source,
            "hypervolume": tr.hypervolume, "hypervolume_share": tr.hypervolume_share,
            "front": [front_row(p) for p in tr.front], "paired": paired_summary(evidence),
            "routing": None if routing is None else routing_summary(routing), "routing_note": routing_note}


def series_routing(trials: Sequence[Trial], max_accuracy_drop: float) -> tuple[Routing | None, str | None]:
    """The series' routing, or None and why it cannot be computed (the rest of the report does not need it)."""
    try:
        return route(trials, max_accuracy_drop=max_accuracy_drop), None
    except CotParetoError as err:
        return None, str(err)


def build_report(collections: Sequence[Collection], out_dir: Path, reference_tokens: float | None = None,
                 margin: float = DEFAULT_MARGIN, route_max_accuracy_drop: float = ROUTE_MAX_ACCURACY_DROP) -> Report:
    tradeoffs = [tradeoff(c.series, c.trials, reference_tokens) for c in collections]
    evidence = [paired_evidence(tr, margin) for tr in tradeoffs]
    routed = [series_routing(c.trials, route_max_accuracy_drop) for c in collections]
    routings, notes = [routing for routing, _ in routed], [note for _, note in routed]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_summary([front_row(p) for tr in tradeoffs for p in tr.front], out_dir / "pareto.csv")
    on_front = {id(p.trial) for tr in tradeoffs for p in tr.front}
    write_summary([{**trial_row(t), "on_front": id(t) in on_front} for c in collections for t in c.trials],
                  out_dir / "trials.csv")
    plot_pareto(tradeoffs, out_dir / "pareto.png", evidence=evidence, routings=routings)
    write_report(tradeoffs, {c.series: c.skipped_text() for c in collections}, out_dir / "report.html",
                 evidence=evidence, routings=routings, routing_notes=notes)
    write_json(out_dir / "report.json", {"series": [summary(*parts) for parts in
                                                    zip(tradeoffs, collections, evidence, routings, notes)]})
    return Report(out_dir=out_dir, tradeoffs=tradeoffs, collections=list(collections), evidence=evidence,
                  routings=routings, routing_notes=notes)


def format_report(report: Report) -> str:
    lines = []
    for tr, collection, evidence, routing, note in zip(report.tradeoffs, report.collections, report.evidence,
                                                       report.routings, report.routing_notes):
        base = (f"baseline {tr.baseline.name}: accuracy {tr.baseline.accuracy:.3f}, "
                f"{tr.baseline.mean_think_tokens:.1f} think tokens") if tr.baseline else "no baseline (adapter=none) run"
        base += "".join(f"; also {t.label} {t.name}: accuracy {t.accuracy:.3f}, {t.mean_think_tokens:.1f} think tokens"
                        for t in tr.other_baselines)
        lines += [f"{tr.series}: {len(tr.trials)} completed trials ({collection.skipped_text()}); {base}",
                  f"  hypervolume {tr.hypervolume:.4g} ({tr.hypervolume_share:.1%} of ideal; reference: accuracy 0, "
                  f"{tr.reference[1]:.1f} think tokens, {tr.reference_source})",
                  "  front: " + ", ".join(f"{p.trial.label} {p.trial.name} ({p.trial.accuracy:.3f} @ "
                                          f"{p.trial.mean_think_tokens:.1f} tok)" for p in tr.front),
                  f"  eval problems: {evidence.sets.statement()}"]
        if evidence.best is not None:
            kept = [p.trial.name for p in tr.front if evidence.not_worse(p.trial)]
            lines.append(f"  not significantly worse than the best {evidence.best.name} (paired 95 % CI lower bound "
                         f">= -{evidence.margin:g}): {', '.join(kept)}")
        lines.append(f"  routing per task type ({routing.bound}): {routing_line(routing)}" if routing
                     else f"  routing per task type not computed: {note}")
        if routing:
            lines.append(f"  routing, {crossfit_line(routing.crossfit)}")
    lines.append(f"report: {report.html} (also {', '.join(f for f in FILES if f != 'report.html')} in {report.out_dir})")
    return "\n".join(lines)
