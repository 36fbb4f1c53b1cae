"""Cross-fitted (out-of-sample) estimate of what per-task routing delivers on new problems.

``analysis.route`` chooses each task type's setting, and the best single setting, on the same problems
it then scores them on. That in-sample comparison is optimistic: the choice and the score share the
data, so with many settings and few problems per type the routed policy collects each type's lucky
setting, and part of its gain over the single setting is noise (with settings that differ by noise
alone it still shows a gain). Cross-fitting separates the two. The problems are split within each task
type into K folds (default 2): a problem's fold is its rank, within its type, under
sha256("<seed>:<problem id>"), dealt round-robin, so every type is in every fold and the split is
reproducible. For each fold, the per-type choices (``route``'s own rule, same bound and tie-breaking,
passed in as ``choose``) and the best single setting are made on the other folds' problems only, and
both are scored on the held-out fold. Joined over folds, each problem has one held-out routed and one
held-out single answer: their accuracies, mean think tokens and the paired 95 % CI of routed - single
(``analysis.paired.compare``) estimate what routing would deliver on new problems, at the cost of
choosing on (K-1)/K of the data (with 2 folds, half), so the estimate is if anything a little pessimistic.

A module of its own so that ``analysis.route`` stays a short statement of the routing rule (about 250 lines); the
rule comes in as functions, so nothing here imports ``route`` at run time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from analysis.paired import PairedResult, compare

if TYPE_CHECKING:
    from analysis.route import Setting

FOLDS = 2
SEED = 0
MIN_PER_FOLD = 2  # a type with fewer held-out problems than this in some fold: no cross-fitted estimate


@dataclass(frozen=True)
class CrossFit:
    """The held-out routed policy against the held-out best single setting; ``reason`` says why there is none."""

    folds: int
    seed: int
    n: int = 0
    accuracy: float = 0.0
    think_tokens: float = 0.0
    single_accuracy: float = 0.0
    single_think_tokens: float = 0.0
    paired: PairedResult | None = None
    per_fold: tuple[dict[str, Any], ...] = ()  # what was chosen on the other folds: {"n", "single", "routes"}
    reason: str | None = None


def fold_of(by_type: Mapping[str, Sequence[str]], folds: int = FOLDS, seed: int = SEED) -> dict[str, int]:
    """Problem id -> fold: within each type, ranked by sha256 of "seed:id" and dealt round-robin."""
    out = {}
    for problems in by_type.values():
        ranked = sorted(problems, key=lambda p: (hashlib.sha256(f"{seed}:{p}".encode()).hexdigest(), p))
        out.update({p: i % folds for i, p in enumerate(ranked)})
    return out


def cross_fit(by_type: Mapping[str, Sequence[str]], choose: Callable[[Sequence[str]], Setting],
              single: Callable[[Sequence[str]], Setting], margin: float, folds: int = FOLDS,
              seed: int = SEED) -> CrossFit:
    """The cross-fitted estimate (see the module doc).

    ``choose(problems)`` is the setting routed to for one type's ``problems``; ``single(problems)`` the best
    single setting over ``problems`` of all types. Both only ever see the folds not being scored.
    """
    if folds < 2:
        return CrossFit(folds, seed, reason=f"it needs at least 2 folds, not {folds}")
    small = [f"{t} ({len(p)})" for t, p in sorted(by_type.items()) if len(p) < MIN_PER_FOLD * folds]
    if small:
        return CrossFit(folds, seed, reason=f"fewer than {MIN_PER_FOLD} problems per fold in task type"
                                            f"{'s' if len(small) > 1 else ''} {', '.join(small)}")
    fold = fold_of(by_type, folds, seed)
    routed: dict[str, tuple[bool, float]] = {}
    alone: dict[str, tuple[bool, float]] = {}
    per_fold = []
    for f in range(folds):
        picked, scored = {}, []
        for task_type, problems in sorted(by_type.items()):
            picked[task_type] = choose([p for p in problems if fold[p] != f])
            held = [p for p in problems if fold[p] == f]
            routed.update({p: picked[task_type].results[p] for p in held})
            scored += held
        best = single([p for problems in by_type.values() for p in problems if fold[p] != f])
        alone.update({p: best.results[p] for p in scored})
        per_fold.append({"n": len(scored), "single": best.name, "routes": {t: s.name for t, s in picked.items()}})
    n = len(routed)
    return CrossFit(folds, seed, n=n, accuracy=sum(ok for ok, _ in routed.values()) / n,
                    think_tokens=sum(t for _, t in routed.values()) / n,
                    single_accuracy=sum(ok for ok, _ in alone.values()) / n,
                    single_think_tokens=sum(t for _, t in alone.values()) / n,
                    paired=compare({p: ok for p, (ok, _) in routed.items()},
                                   {p: ok for p, (ok, _) in alone.items()}, margin),
                    per_fold=tuple(per_fold))


def crossfit_line(cf: CrossFit) -> str:
    """The cross-fitted routed policy against the cross-fitted single setting, in one line, or why there is none."""
    if cf.paired is None:
        return f"cross-fitted estimate ({cf.folds} folds) not computed: {cf.reason}"
    how = ("choose on one half, score on the other" if cf.folds == 2
           else f"choose on {cf.folds - 1} of {cf.folds} parts, score on the remaining one")
    ci = cf.paired.ci
    return (f"cross-fitted ({cf.folds} folds: {how}; out of sample, unlike the optimistic in-sample line above): "
            f"routed {cf.accuracy:.3f} @ {cf.think_tokens:.1f} tokens vs single "
            f"{cf.single_accuracy:.3f} @ {cf.single_think_tokens:.1f}; routed - single {cf.paired.difference:+.3f} "
            f"[{ci[0]:+.3f}, {ci[1]:+.3f}] ({cf.paired.verdict} at margin {cf.paired.margin:g})")


def crossfit_summary(cf: CrossFit) -> dict[str, Any]:
    """The cross-fitted estimate as plain data, for report.json."""
    out: dict[str, Any] = {"folds": cf.folds, "seed": cf.seed, "computed": cf.paired is not None,
                           "reason": cf.reason, "text": crossfit_line(cf)}
    if cf.paired is None:
        return out
    return {**out, "n": cf.n, "routed": {"accuracy": cf.accuracy, "mean_think_tokens": cf.think_tokens},
            "single": {"accuracy": cf.single_accuracy, "mean_think_tokens": cf.single_think_tokens},
            "routed_vs_single": {"delta_accuracy": cf.paired.difference, "ci_low": cf.paired.ci[0],
                                 "ci_high": cf.paired.ci[1], "mcnemar_p": cf.paired.p_value,
                                 "verdict": cf.paired.verdict, "margin": cf.paired.margin},
            "per_fold": [dict(f) for f in cf.per_fold]}
