"""Recommend a deployment level: the front point that meets the user's constraints.

With an accuracy constraint (``--min-accuracy``, ``--max-accuracy-drop`` against the baseline)
the recommendation is the point with the fewest think tokens that meets it; with only a token
cap (``--max-think-tokens``) it is the most accurate point under the cap. Both optima lie on
the Pareto front, so only front points are candidates. With no constraint, the floor is the
most accurate point's 95 % CI lower bound: the shortest point not measurably worse than the best.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from analysis.tradeoff import FrontPoint, Tradeoff
from training.errors import CotParetoError


@dataclass(frozen=True)
class Constraints:
    min_accuracy: float | None = None
    max_think_tokens: float | None = None
    max_accuracy_drop: float | None = None  # absolute, against the baseline's accuracy


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
    if checks:
        return checks, f"the highest accuracy with {checks[0].text}"
    best = max(tradeoff.front, key=lambda p: (p.trial.accuracy, -p.trial.mean_think_tokens))
    low = best.trial.accuracy_ci[0]
    return [_Check(f"accuracy >= {low:.3f}", "accuracy", low)], (
        f"no constraint given: the fewest think tokens whose accuracy reaches the 95 % CI lower bound "
        f"({low:.3f}) of the most accurate trial ({best.trial.label}, {best.trial.name})")


def choose(tradeoff: Tradeoff, constraints: Constraints) -> Choice:
    if not tradeoff.front:
        raise CotParetoError(f"{tradeoff.series} has no completed trial with an adapter to choose from")
    checks, rule = _checks(tradeoff, constraints)
    feasible = [p for p in tradeoff.front if all(c.holds(p) for c in checks)]
    if not feasible:
        alone = [c.text for c in checks if not any(c.holds(p) for p in tradeoff.front)]
        binding = alone or [" and ".join(c.text for c in checks) + " (each is met by some point, never together)"]
        closest = min(tradeoff.front, key=lambda p: (sum(c.violation(p) for c in checks), p.trial.mean_think_tokens))
        return Choice(point=None, rule=rule, binding=binding, closest=closest)
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
    return Choice(point=point, rule=rule, notes=notes)


def describe_point(point: FrontPoint) -> str:
    t = point.trial
    settings = ", ".join(f"{k}={v}" for k, v in sorted(t.params.items()) if k != "level") or "defaults"
    lines = [f"level {t.level} ({t.name}; {settings})",
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
    else:
        lines = ["recommended: " + describe_point(choice.point), f"rule: {choice.rule}"]
        lines += [f"note: {note}" for note in choice.notes]
    return "\n".join(lines)
