"""Paired statistics on hand-made cases with known answers: the 2x2 table, exact McNemar, the CI, n to decide."""

import math

import pytest

from analysis.paired import PairedCounts, compare, difference_ci, mcnemar_exact_p, paired_counts, problems_to_decide


def results(right: set[int], n: int) -> dict[str, bool]:
    return {f"p{i}": i in right for i in range(n)}


def counts(only_a: int, only_b: int, n: int, both_right: int = 0) -> PairedCounts:
    return PairedCounts(both_right, only_a, only_b, n - both_right - only_a - only_b)


def test_the_two_by_two_table_and_the_difference():
    a, b = results({0, 1, 2, 5}, 8), results({0, 3, 4, 5, 6}, 8)
    table = paired_counts(a, b)
    assert table == PairedCounts(both_right=2, only_a=2, only_b=3, both_wrong=1)
    assert (table.n, table.discordant, table.difference) == (8, 5, pytest.approx(4 / 8 - 5 / 8))
    with pytest.raises(ValueError, match="different problems"):
        paired_counts(a, results({0}, 7))


def test_exact_mcnemar_p_for_known_discordant_splits():
    assert mcnemar_exact_p(1, 9) == pytest.approx(22 / 1024)  # 2 * P(X <= 1), X ~ Bin(10, 1/2)
    assert mcnemar_exact_p(9, 1) == pytest.approx(22 / 1024)
    assert mcnemar_exact_p(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact_p(5, 5) == 1.0 and mcnemar_exact_p(0, 0) == 1.0  # balanced, or no discordant pair


def test_ci_brackets_the_difference_and_excludes_zero_when_clear():
    clear = counts(only_a=20, only_b=1, n=200, both_right=100)
    low, high = difference_ci(clear)
    assert low < clear.difference < high and low > 0
    assert difference_ci(clear) == (low, high)  # seeded: the same interval every time
    balanced = counts(only_a=6, only_b=6, n=200)
    low, high = difference_ci(balanced)
    assert low < 0 < high


def test_ci_agrees_with_the_large_sample_interval_on_many_problems():
    table = counts(only_a=50, only_b=30, n=1000, both_right=500)
    d, rate = table.difference, table.discordant / table.n
    half = 1.959964 * math.sqrt((rate - d * d) / table.n)  # Wald interval of a paired difference
    low, high = difference_ci(table)
    assert low == pytest.approx(d - half, abs=0.003) and high == pytest.approx(d + half, abs=0.003)


def test_identical_trials_get_the_exact_bound_on_their_disagreement():
    # Never disagreeing on 100 problems bounds the disagreement rate (so |difference|) by 1 - 0.025^(1/100).
    low, high = difference_ci(counts(0, 0, 100, both_right=40))
    assert high == pytest.approx(1 - 0.025 ** (1 / 100)) and low == -high


def test_problems_to_decide_by_hand():
    # d = -0.05, discordance 0.1, margin 0.1: n = (1.959964 + 0.841621)^2 (0.1 - 0.05^2) / 0.05^2 = 306.1.
    assert problems_to_decide(counts(only_a=5, only_b=15, n=200), margin=0.1) == 307
    assert math.isinf(problems_to_decide(counts(only_a=5, only_b=15, n=200), margin=0.05))  # d = -margin
    # No disagreement: 1 - 0.025^(1/n) <= 0.02 from n = 183 on.
    assert problems_to_decide(counts(0, 0, 50), margin=0.02) == 183


def test_compare_decides_or_says_how_many_problems_would():
    best = results(set(range(60)), 400)
    close = results(set(range(57)) | {300, 301, 302}, 400)  # 3 lost, 3 won: difference 0
    decided = compare(close, best, margin=0.02)
    assert decided.difference == 0 and decided.ci[0] >= -0.02 and decided.verdict == "non-inferior"
    assert decided.needed == 400 and decided.n_to_decide_text() == "decided (n=400)"
    assert decided.rough  # 6 discordant pairs: an approximate interval, and reports say so
    strict = compare(close, best, margin=0.005)
    assert strict.verdict == "undecided" and strict.needed > 400 and strict.n_to_decide_text().startswith("~")
    worse = compare(results(set(range(30)), 400), best, margin=0.02)
    assert worse.verdict == "inferior" and worse.p_value < 1e-6 and worse.ci[1] < -0.02
    with pytest.raises(ValueError, match="margin"):
        compare(best, best, margin=-0.01)
