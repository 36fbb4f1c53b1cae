"""The accuracy-vs-think-tokens trade-off of a series of trials: its front, hypervolume and savings.

The baseline is the base model evaluated without an adapter (``adapter=none``), thinking on where such
a run exists; every front point is compared with it. The other no-adapter runs (the base model in no-think
mode, or with another level's prompt) are kept beside it for the plots and the report, never as candidates.
Trials are compared as (accuracy up, mean think tokens down); no-think trials are candidates like the rest,
so one with few think tokens may well be on the front.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from analysis.pareto import hypervolume, pareto_front
from analysis.trials import Trial


@dataclass(frozen=True)
class FrontPoint:
    """A Pareto-optimal trial and what it saves against the baseline (None without a baseline)."""

    trial: Trial
    token_saving: float | None      # 1 - think tokens / baseline think tokens
    latency_saving: float | None    # 1 - eval seconds per problem / the baseline's
    accuracy_change: float | None   # accuracy - baseline accuracy


@dataclass(frozen=True)
class Tradeoff:
    series: str
    trials: list[Trial]             # the adapters' trials, thinking on and off (no baseline is a candidate)
    baseline: Trial | None
    front: list[FrontPoint]         # by think tokens, ascending
    reference: tuple[float, float]  # (accuracy 0, think tokens) for the hypervolume
    reference_source: str
    hypervolume: float
    other_baselines: list[Trial] = field(default_factory=list)  # the no-adapter trials besides the baseline

    @property
    def baselines(self) -> list[Trial]:
        """The baseline first, then the other no-adapter trials."""
        return ([self.baseline] if self.baseline else []) + list(self.other_baselines)

    @property
    def hypervolume_share(self) -> float:
        """The hypervolume as a share of the ideal box (accuracy 1 at zero think tokens)."""
        return self.hypervolume / self.reference[1] if self.reference[1] > 0 else 0.0


def most_accurate(trials: Iterable[Trial]) -> Trial | None:
    """The most accurate trial, fewer think tokens on a tie: the reference of the paired tests."""
    return max(trials, key=lambda t: (t.accuracy, -t.mean_think_tokens), default=None)


def pick_baseline(trials: Sequence[Trial]) -> Trial | None:
    """The uncompressed reference: of the no-adapter trials, the one that thinks longest, thinking on first.

    A no-think base model is a compression of its own, not the reference: savings, ``--max-accuracy-drop``
    and the hypervolume's reference would otherwise be measured against a model that barely thinks.
    """
    baselines = [trial for trial in trials if trial.baseline]
    return max(baselines, key=lambda t: (not t.no_think, t.mean_think_tokens, -(t.level or 0)), default=None)


def reference_point(trials: Sequence[Trial], baseline: Trial | None,
                    tokens: float | None = None) -> tuple[tuple[float, float], str]:
    """(0 accuracy, the baseline's think tokens), else ``max_new_tokens``, else the longest trial's."""
    if tokens is not None:
        return (0.0, float(tokens)), "given"
    if baseline is not None and baseline.mean_think_tokens > 0:
        return (0.0, baseline.mean_think_tokens), "baseline think tokens"
    budgets = [t.max_new_tokens for t in trials if t.max_new_tokens]
    if budgets:
        return (0.0, float(max(budgets))), "max_new_tokens"
    return (0.0, max((t.mean_think_tokens for t in trials), default=0.0) * 1.1 or 1.0), "1.1 x the most think tokens"


def _saving(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base <= 0:
        return None
    return 1.0 - value / base


def front_points(trials: Sequence[Trial], baseline: Trial | None) -> list[FrontPoint]:
    """The non-dominated trials (ties and duplicates all kept), by think tokens then accuracy."""
    chosen = [trials[i] for i in pareto_front([t.point for t in trials])]
    chosen.sort(key=lambda t: (t.mean_think_tokens, -t.accuracy, t.name))
    return [FrontPoint(
        trial=t,
        token_saving=_saving(t.mean_think_tokens, baseline.mean_think_tokens if baseline else None),
        latency_saving=_saving(t.seconds_per_problem, baseline.seconds_per_problem if baseline else None),
        accuracy_change=None if baseline is None else t.accuracy - baseline.accuracy,
    ) for t in chosen]


def tradeoff(series: str, trials: Sequence[Trial], reference_tokens: float | None = None) -> Tradeoff:
    """Split off the baselines, then the front and the hypervolume of the adapters' trials."""
    baseline = pick_baseline(trials)
    candidates = [t for t in trials if not t.baseline]
    reference, source = reference_point(candidates, baseline, reference_tokens)
    front = front_points(candidates, baseline)
    return Tradeoff(series=series, trials=candidates, baseline=baseline, front=front, reference=reference,
                    reference_source=source, hypervolume=hypervolume([p.trial.point for p in front], reference),
                    other_baselines=[t for t in trials if t.baseline and t is not baseline])
