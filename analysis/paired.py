"""Paired statistics for two trials graded on the same eval problems.

From two ``problem id -> correct`` maps: the 2x2 table of agreements, the accuracy difference
(A - B), an exact McNemar p-value, a paired 95 % CI for the difference, and how many eval
problems a non-inferiority decision at a margin would need. Pure functions, scipy only.

Choice of the interval: scipy (1.17) has no McNemar test and no interval for a difference of
paired proportions, and statsmodels has no paired-difference interval either. scipy's
``bootstrap`` resampling problems (the pairs together, so the correlation between the two
trials is kept) is the maintained route. The percentile method is used rather than BCa: with
few discordant pairs BCa's bias correction swings on the statistic's discreteness (3 discordant
pairs out of 100, all one way, gave a BCa interval excluding 0 while McNemar's exact p is 0.25)
and it fails outright on a degenerate sample. A fixed seed makes reports reproducible. With no
discordant pair at all the bootstrap sees no variation and would claim [0, 0]; there the
interval is the exact (Clopper-Pearson) bound on the discordance rate, since |A - B| can
never exceed the share of problems on which the two disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
POWER = 0.80
RESAMPLES = 9999
SEED = 0
FEW_DISCORDANT = 10  # below this many discordant pairs the bootstrap interval is rough: said so in reports


@dataclass(frozen=True)
class PairedCounts:
    """The 2x2 table of two trials over the same problems."""

    both_right: int
    only_a: int      # A right, B wrong
    only_b: int      # B right, A wrong
    both_wrong: int

    @property
    def n(self) -> int:
        return self.both_right + self.only_a + self.only_b + self.both_wrong

    @property
    def discordant(self) -> int:
        return self.only_a + self.only_b

    @property
    def difference(self) -> float:
        """Accuracy of A minus accuracy of B."""
        return (self.only_a - self.only_b) / self.n if self.n else 0.0


def paired_counts(a: Mapping[str, bool], b: Mapping[str, bool]) -> PairedCounts:
    """Count agreements over the problems both maps grade; they must grade the same problems."""
    if set(a) != set(b):
        raise ValueError(f"the two trials were graded on different problems ({len(set(a) ^ set(b))} not shared)")
    cells = [(bool(a[key]), bool(b[key])) for key in a]
    return PairedCounts(both_right=cells.count((True, True)), only_a=cells.count((True, False)),
                        only_b=cells.count((False, True)), both_wrong=cells.count((False, False)))


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar test: the discordant pairs split as a fair coin would (1.0 with none)."""
    discordant = only_a + only_b
    return 1.0 if discordant == 0 else float(stats.binomtest(only_a, discordant, 0.5).pvalue)


def difference_ci(counts: PairedCounts, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A paired ``confidence`` interval for accuracy A - accuracy B (see the module doc for the method)."""
    if counts.n == 0:
        return (-1.0, 1.0)
    if counts.discordant == 0:
        bound = float(stats.binomtest(0, counts.n).proportion_ci(confidence, method="exact").high)
        return (-bound, bound)
    # Per problem, A's result minus B's is +1, -1 or 0; resampling these resamples whole pairs.
    diffs = np.array([1.0] * counts.only_a + [-1.0] * counts.only_b + [0.0] * (counts.n - counts.discordant))
    result = stats.bootstrap((diffs,), np.mean, n_resamples=RESAMPLES, confidence_level=confidence,
                             method="percentile", vectorized=True, rng=np.random.default_rng(SEED))
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def problems_to_decide(counts: PairedCounts, margin: float, confidence: float = CONFIDENCE,
                       power: float = POWER) -> float:
    """Eval problems at which the non-inferiority question (is A - B >= -margin?) would be decided.

    The large-sample (Wald) size for a paired difference of proportions, the variance taken from
    the observed discordance rate as McNemar sample-size estimates do: with discordance rate psi
    and difference d, one problem's A-minus-B has variance psi - d^2, and a test of d against
    -margin at two-sided ``1 - confidence`` (one-sided 0.025, the rule "95 % CI lower bound >=
    -margin") reaches ``power`` at n = (z_{1-alpha/2} + z_power)^2 (psi - d^2) / (d + margin)^2.
    Infinite when d = -margin (no sample decides a tie with the margin). With no discordant pair
    the variance estimate is 0; there the answer is the n at which zero disagreements would bound
    the discordance rate (so |A - B|) below the margin: 1 - (alpha/2)^(1/n) <= margin.
    """
    alpha = 1.0 - confidence
    distance = counts.difference + margin
    if counts.n == 0:
        return math.inf
    if counts.discordant == 0:
        return float(math.ceil(math.log(alpha / 2) / math.log1p(-margin))) if margin > 0 else math.inf
    if abs(distance) < 1e-12:
        return math.inf
    rate = counts.discordant / counts.n
    variance = max(rate - counts.difference ** 2, 0.0)
    z = stats.norm.ppf(1.0 - alpha / 2) + stats.norm.ppf(power)
    return float(math.ceil(z * z * variance / distance ** 2))


def verdict(ci: tuple[float, float], margin: float) -> str:
    """``non-inferior`` (CI lower bound >= -margin), ``inferior`` (upper bound < -margin), or ``undecided``."""
    if ci[0] >= -margin - 1e-12:
        return "non-inferior"
    if ci[1] < -margin - 1e-12:
        return "inferior"
    return "undecided"


@dataclass(frozen=True)
class PairedResult:
    """Trial A against trial B (the best) over their shared problems, judged at a margin."""

    counts: PairedCounts
    ci: tuple[float, float]
    p_value: float
    margin: float
    needed: float  # eval problems to decide (the current n once decided; math.inf when it never is)

    @property
    def difference(self) -> float:
        return self.counts.difference

    @property
    def verdict(self) -> str:
        return verdict(self.ci, self.margin)

    @property
    def non_inferior(self) -> bool:
        return self.verdict == "non-inferior"

    @property
    def rough(self) -> bool:
        """Few discordant pairs: the bootstrap interval is only approximate."""
        return 0 < self.counts.discordant < FEW_DISCORDANT

    def n_to_decide_text(self) -> str:
        if self.verdict != "undecided":
            return f"decided (n={self.counts.n})"
        return "never (difference = -margin)" if math.isinf(self.needed) else f"~{int(self.needed)}"


def compare(a: Mapping[str, bool], b: Mapping[str, bool], margin: float) -> PairedResult:
    """Trial A (``a``) against the reference B (``b``): difference, CI, McNemar p and n to decide."""
    if margin < 0:
        raise ValueError(f"the non-inferiority margin must be >= 0, not {margin}")
    counts = paired_counts(a, b)
    ci = difference_ci(counts)
    # Decided already: the problems at hand suffice. Otherwise never less than one more than we have,
    # since the asymptotic estimate can undershoot the bootstrap interval it stands in for.
    needed = (float(counts.n) if verdict(ci, margin) != "undecided"
              else max(problems_to_decide(counts, margin), float(counts.n + 1)))
    return PairedResult(counts=counts, ci=ci, p_value=mcnemar_exact_p(counts.only_a, counts.only_b),
                        margin=margin, needed=needed)
