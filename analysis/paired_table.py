"""The paired evidence of a trade-off: every front point and the baseline against the best point.

The best is the most accurate front point (fewer think tokens on a tie). Each row pairs a
trial with the best over the shared eval problems: accuracy difference with its paired 95 %
CI, exact McNemar p, the non-inferiority verdict at the margin, and the eval problems needed
to decide it. "Not significantly worse than the best" means non-inferior at the margin: the
paired 95 % CI lower bound of (accuracy - the best's) is >= -margin. The best itself counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analysis.eval_sets import EvalSets, eval_sets
from analysis.paired import FEW_DISCORDANT, PairedResult, compare
from analysis.tradeoff import Tradeoff, most_accurate
from analysis.trials import Trial

DEFAULT_MARGIN = 0.02
METHODS = ("95 % CI: paired bootstrap (percentile, 9999 resamples of problems, seed 0; exact bound on the "
           "discordance rate when the two never disagree); p: exact McNemar (binomial test on the discordant "
           "pairs); n to decide: eval problems for 80 % power to settle non-inferiority at two-sided alpha 0.05, "
           "from the observed discordance rate and difference")


@dataclass(frozen=True)
class PairedRow:
    trial: Trial
    role: str                         # "best", "front" or "baseline"
    result: PairedResult | None       # None for the best itself and for a trial left out
    excluded: str | None = None       # why the trial is not paired

    @property
    def not_worse(self) -> bool:
        """Not significantly worse than the best: the best itself, or non-inferior at the margin."""
        return self.role == "best" or (self.result is not None and self.result.non_inferior)


@dataclass(frozen=True)
class PairedEvidence:
    series: str
    margin: float
    sets: EvalSets
    best: Trial | None                # the trial paired against; None when no front point can be paired
    rows: list[PairedRow]             # front points by think tokens, then the baseline
    notes: list[str]

    def row(self, trial: Trial) -> PairedRow | None:
        return next((r for r in self.rows if r.trial is trial), None)

    def not_worse(self, trial: Trial) -> bool:
        row = self.row(trial)
        return row is not None and row.not_worse


def paired_evidence(tr: Tradeoff, margin: float = DEFAULT_MARGIN) -> PairedEvidence:
    everyone = list(tr.trials) + ([tr.baseline] if tr.baseline else [])
    sets = eval_sets(everyone)
    notes: list[str] = []
    paired_front = [p.trial for p in tr.front if sets.results(p.trial) is not None]
    best = most_accurate(paired_front)
    top = most_accurate(p.trial for p in tr.front)
    if top is not None and best is not top:
        notes.append(f"the most accurate front point {top.name} is left out of the paired tests "
                     f"({sets.reason(top)}); " + (f"paired against {best.name} instead" if best else
                                                 "no front point can be paired"))
    rows = [_row(trial, "front", best, sets, margin) for trial in (p.trial for p in tr.front)]
    if tr.baseline is not None:
        rows.append(_row(tr.baseline, "baseline", best, sets, margin))
    if any(r.result is not None and r.result.rough for r in rows):
        notes.append(f"rows marked * have fewer than {FEW_DISCORDANT} discordant pairs: their bootstrap interval "
                     "is approximate, the exact McNemar p is the safer guide")
    return PairedEvidence(tr.series, margin, sets, best, rows, notes)


def _row(trial: Trial, role: str, best: Trial | None, sets: EvalSets, margin: float) -> PairedRow:
    if trial is best:
        return PairedRow(trial, "best", None)
    if sets.results(trial) is None:
        return PairedRow(trial, role, None, sets.reason(trial))
    if best is None:
        return PairedRow(trial, role, None, "no front point to pair against")
    return PairedRow(trial, role, compare(sets.results(trial), sets.results(best), margin))


def delta_text(row: PairedRow) -> str:
    if row.role == "best":
        return "best (reference)"
    if row.result is None:
        return f"not paired: {row.excluded}"
    r = row.result
    return f"{r.difference:+.3f} [{r.ci[0]:+.3f}, {r.ci[1]:+.3f}]" + ("*" if r.rough else "")


def p_text(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _name(row: PairedRow) -> str:
    no_think = " no-think" if row.trial.no_think else ""
    return f"{'base' if row.trial.baseline else row.trial.level_tag}{no_think} {row.trial.name}"


def format_paired_table(evidence: PairedEvidence) -> str:
    """The paired table as fixed-width text, with the shared-problems statement and the methods."""
    lines = [f"eval problems: {evidence.sets.statement()}"]
    if evidence.best is None:
        return "\n".join(lines + [f"note: {note}" for note in evidence.notes])
    lines.append(f"paired against the best, {evidence.best.name} ({evidence.best.level_tag}, accuracy "
                 f"{evidence.best.accuracy:.3f}, {evidence.best.mean_think_tokens:.1f} think tokens). Verdict at "
                 f"margin {evidence.margin:g}: non-inferior when the CI lower bound is >= -{evidence.margin:g}, "
                 f"inferior when its upper bound is below -{evidence.margin:g}:")
    header = ("point", "think", "acc", "Δ acc vs best [95 % CI]", "McNemar p", "verdict", "n to decide")
    cells = [header] + [(_name(r), f"{r.trial.mean_think_tokens:.1f}", f"{r.trial.accuracy:.3f}", delta_text(r),
                         "-" if r.result is None else p_text(r.result.p_value),
                         "reference" if r.role == "best" else ("-" if r.result is None else r.result.verdict),
                         "-" if r.result is None else r.result.n_to_decide_text()) for r in evidence.rows]
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(header))]
    for row in cells:
        if row[3].startswith("not paired"):  # a long reason: no columns after it
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + "  " + row[3])
        else:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines + [f"note: {note}" for note in evidence.notes] + [f"methods: {METHODS}"])


def evidence_rows(evidence: PairedEvidence) -> list[dict[str, Any]]:
    """One flat dict per row, for report.json and the W&B table."""
    rows = []
    for r in evidence.rows:
        result = r.result
        rows.append({
            "series": evidence.series, "trial": r.trial.name, "level": r.trial.level, "latent": r.trial.latent,
            "role": r.role,
            "accuracy": r.trial.accuracy, "mean_think_tokens": r.trial.mean_think_tokens,
            "best": None if evidence.best is None else evidence.best.name, "margin": evidence.margin,
            "paired": result is not None or r.role == "best", "excluded_reason": r.excluded,
            "n": None if result is None else result.counts.n,
            "only_this": None if result is None else result.counts.only_a,
            "only_best": None if result is None else result.counts.only_b,
            "delta_accuracy": 0.0 if r.role == "best" else (None if result is None else result.difference),
            "ci_low": None if result is None else result.ci[0], "ci_high": None if result is None else result.ci[1],
            "mcnemar_p": None if result is None else result.p_value,
            "verdict": "reference" if r.role == "best" else (None if result is None else result.verdict),
            "not_significantly_worse": r.not_worse,
            "n_to_decide": None if result is None or result.needed == float("inf") else int(result.needed),
            "n_to_decide_text": None if result is None else result.n_to_decide_text()})
    return rows
