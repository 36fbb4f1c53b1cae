"""Recommend a deployment level: the front point that meets the user's constraints.

With an accuracy constraint (``--min-accuracy``, ``--max-accuracy-drop`` against the baseline)
the recommendation is the point with the fewest think tokens that meets it; with only a token
cap (``--max-think-tokens``) it is the most accurate point under the cap. Both optima lie on
the Pareto front, so only front points are candidates. With no constraint the rule is
non-inferiority: the point with the fewest think tokens whose paired 95 % CI lower bound for
(its accuracy - the best's), over the eval problems both were graded on, is >= -margin. Every
answer carries the paired evidence of the chosen point against the best, and the paired table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from analysis.paired_table import (
    DEFAULT_MARGIN,
    PairedEvidence,
    delta_text,
    format_paired_table,
    p_text,
    paired_evidence,
)
from analysis.tradeoff import FrontPoint, Tradeoff, most_accurate
from analysis.trials import Trial
from training.common.errors import CotParetoError


@dataclass(frozen=True)
class Constraints:
    min_accuracy: float | None = None
    max_think_tokens: float | None = None
    max_accuracy_drop: float | None = None  # absolute, against the baseline's accuracy
    margin: float = DEFAULT_MARGIN          # the non-inferiority margin (accuracy, absolute) of the paired tests

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.min_accuracy, self.max_think_tokens, self.max_accuracy_drop))


@dataclass(frozen=True)
class _Check:
    text: str
    kind: str      # "accuracy" (a floor) or "tokens" (a cap)
    bound: float
    against_baseline: bool = False

    def holds(self, point: FrontPoint) -> bool:
        if self.kind == "accuracy":
            return point.trial.accuracy >= self.bound - 1e-12
        return point.trial.mean_think_tokens <= self.bound + 1e-12

    def violation(self, point: FrontPoint) -> float:
        """How far ``point`` misses, relative to the bound (0 when it holds)."""
        if self.kind == "accuracy":
            return max(0.0, self.bound - point.trial.accuracy) / max(self.bound, 1e-9)
        return max(0.0, point.trial.mean_think_tokens - self.bound) / max(self.bound, 1e-9)


@dataclass
class Choice:
    point: FrontPoint | None
    rule: str
    binding: list[str] = field(default_factory=list)  # when infeasible: the constraints no point meets
    closest: FrontPoint | None = None
    notes: list[str] = field(default_factory=list)
    evidence: PairedEvidence | None = None


def _checks(tradeoff: Tradeoff, constraints: Constraints) -> tuple[list[_Check], str]:
    checks = []
    if constraints.min_accuracy is not None:
        checks.append(_Check(f"accuracy >= {constraints.min_accuracy:g}", "accuracy", constraints.min_accuracy))
    if constraints.max_accuracy_drop is not None:
        if tradeoff.baseline is None:
            raise CotParetoError("--max-accuracy-drop is measured against the baseline, and no trial evaluated the "
                                 "base model (adapter=none): run one into the sweep dir or pass its run dir too")
        floor = tradeoff.baseline.accuracy - constraints.max_accuracy_drop
        checks.append(_Check(f"accuracy >= baseline {tradeoff.baseline.accuracy:.3f} - "
                             f"{constraints.max_accuracy_drop:g} = {floor:.3f}", "accuracy", floor, True))
    if constraints.max_think_tokens is not None:
        checks.append(_Check(f"think tokens <= {constraints.max_think_tokens:g}", "tokens",
                             constraints.max_think_tokens))
    if any(c.kind == "accuracy" for c in checks):
        return checks, "the fewest think tokens that meet " + " and ".join(c.text for c in checks)
    return checks, f"the highest accuracy with {checks[0].text}"


def non_inferior_choice(tradeoff: Tradeoff, evidence: PairedEvidence) -> Choice:
    """The fewest think tokens among the best and the front points shown non-inferior to it."""
    margin, best = evidence.margin, evidence.best
    rule = (f"no constraint given: non-inferiority at margin {margin:g}, the fewest think tokens whose paired 95 % CI "
            f"lower bound for (its accuracy - the best's) is >= -{margin:g}")
    if best is None:
        top = most_accurate(p.trial for p in tradeoff.front)
        return Choice(point=next(p for p in tradeoff.front if p.trial is top), rule=rule, evidence=evidence, notes=[
            "non-inferiority cannot be tested without per-problem results shared with the best (see 'eval problems' "
            "below): recommending the most accurate front point"])
    point = min((p for p in tradeoff.front if evidence.not_worse(p.trial)),
                key=lambda p: (p.trial.mean_think_tokens, -p.trial.accuracy))
    rule += f"; the best is {best.name} ({level_text(best)}, accuracy {best.accuracy:.3f})"
    shorter = [evidence.row(p.trial) for p in tradeoff.front if p.trial.mean_think_tokens < best.mean_think_tokens]
    notes = []
    if point.trial is best and shorter:
        notes.append(f"no front point with fewer think tokens than the best can be shown non-inferior at margin "
                     f"{margin:g} on these {len(evidence.sets.problems)} eval problems: the recommendation is the "
                     "best itself")
        open_rows = [r for r in shorter if r.result is not None and r.result.verdict == "undecided"]
        if open_rows:
            near = min(open_rows, key=lambda r: r.result.needed)
            needed = ("no number of eval problems would decide it, as its difference equals -margin"
                      if math.isinf(near.result.needed) else
                      f"about {int(near.result.needed)} eval problems (data.n_eval) would decide it")
            notes.append(f"closest to being shown: {near.trial.name} ({level_text(near.trial)}), accuracy "
                         f"{delta_text(near)} against the best; {needed}")
        elif all(r.result is not None and r.result.verdict == "inferior" for r in shorter):
            notes.append(f"every shorter front point is worse than the best by more than {margin:g}")
    elif point.trial is best:
        notes.append("the best is also the front point with the fewest think tokens")
    return Choice(point=point, rule=rule, notes=notes, evidence=evidence)


def choose(tradeoff: Tradeoff, constraints: Constraints) -> Choice:
    if not tradeoff.front:
        raise CotParetoError(f"{tradeoff.series} has no completed trial with an adapter to choose from")
    evidence = paired_evidence(tradeoff, constraints.margin)
    if not constraints.given:
        return non_inferior_choice(tradeoff, evidence)
    checks, rule = _checks(tradeoff, constraints)
    feasible = [p for p in tradeoff.front if all(c.holds(p) for c in checks)]
    if not feasible:
        alone = [c.text for c in checks if not any(c.holds(p) for p in tradeoff.front)]
        binding = alone or [" and ".join(c.text for c in checks) + " (each is met by some point, never together)"]
        closest = min(tradeoff.front, key=lambda p: (sum(c.violation(p) for c in checks), p.trial.mean_think_tokens))
        return Choice(point=None, rule=rule, binding=binding, closest=closest, evidence=evidence)
    if any(c.kind == "accuracy" for c in checks):
        point = min(feasible, key=lambda p: (p.trial.mean_think_tokens, -p.trial.accuracy))
    else:
        point = max(feasible, key=lambda p: (p.trial.accuracy, -p.trial.mean_think_tokens))
    notes = [f"its 95 % CI [{point.trial.accuracy_ci[0]:.3f}, {point.trial.accuracy_ci[1]:.3f}] reaches below "
             f"{c.bound:.3f}: evaluate on more problems (data.n_eval) before relying on the difference"
             for c in checks if c.kind == "accuracy" and point.trial.accuracy_ci[0] < c.bound]
    # A weak baseline makes "lose at most X against it" no constraint at all: say so, or the user trusts it.
    notes += [f"every front point clears the baseline floor {c.bound:.3f} (baseline accuracy "
              f"{tradeoff.baseline.accuracy:.3f}), so --max-accuracy-drop did not constrain the choice; "
              "--min-accuracy sets an absolute floor"
              for c in checks if c.against_baseline and all(c.holds(p) for p in tradeoff.front)]
    return Choice(point=point, rule=rule, notes=notes, evidence=evidence)


def paired_line(evidence: PairedEvidence, point: FrontPoint) -> str:
    """The chosen point against the best, in one line."""
    row = evidence.row(point.trial)
    if row is None or row.role == "best":
        return "paired evidence: it is the most accurate front point, the reference of the paired tests"
    if row.result is None:
        return f"paired evidence: none, {row.excluded}"
    r = row.result
    return (f"paired evidence against the best {evidence.best.name}: accuracy {delta_text(row)} (95 % CI) over "
            f"{r.counts.n} shared problems ({r.counts.only_a} only it solved, {r.counts.only_b} only the best), "
            f"exact McNemar p={p_text(r.p_value)}; {r.verdict} at margin {r.margin:g}; "
            f"n to decide: {r.n_to_decide_text()}")


def level_text(trial: Trial) -> str:
    """``level 4``, ``level 4, thinking off`` for a no-think point, or ``the latent level``: what a deployment
    would set."""
    if trial.latent:
        return "the latent level"
    return f"level {trial.level}" + (", thinking off" if trial.no_think else "")


def describe_point(point: FrontPoint) -> str:
    t = point.trial
    settings = ", ".join(f"{k}={v}" for k, v in sorted(t.params.items()) if k != "level") or "defaults"
    lines = [f"{level_text(t)} ({t.name}; {settings})",
             f"  accuracy {t.accuracy:.3f} (95 % CI {t.accuracy_ci[0]:.3f}-{t.accuracy_ci[1]:.3f}, n={t.n_eval}), "
             f"{t.mean_think_tokens:.1f} mean think tokens"]
    if point.token_saving is not None:
        saving = f"  against the baseline: {point.token_saving:+.0%} think tokens saved"
        if point.latency_saving is not None:
            saving += f", {point.latency_saving:+.0%} eval time per problem saved"
        lines.append(saving + f", accuracy {point.accuracy_change:+.3f}")
    if t.run_dir is not None:
        lines.append(f"  run dir: {t.run_dir}")
    return "\n".join(lines)


def format_choice(choice: Choice) -> str:
    if choice.point is None:
        lines = ["no front point meets the constraints; binding: " + "; ".join(choice.binding),
                 "closest point:", describe_point(choice.closest)]
        shown = choice.closest
    else:
        lines = ["recommended: " + describe_point(choice.point), f"rule: {choice.rule}"]
        lines += [f"note: {note}" for note in choice.notes]
        shown = choice.point
    if choice.evidence is not None:
        lines += [paired_line(choice.evidence, shown), format_paired_table(choice.evidence)]
    return "\n".join(lines)
