"""Pareto dominance, fronts and the exact 2-D hypervolume, checked against hand values and brute force."""

import itertools
import random

import pytest

from analysis.pareto import dominates, hypervolume, pareto_front


def test_dominance_respects_directions():
    assert dominates((0.5, 10), (0.4, 12))  # more accurate and shorter
    assert dominates((0.5, 10), (0.5, 12)) and not dominates((0.5, 10), (0.5, 10))
    assert not dominates((0.6, 20), (0.5, 10)) and not dominates((0.5, 10), (0.6, 20))  # a trade-off
    assert dominates((0.4, 12), (0.5, 10), ("minimize", "maximize"))
    with pytest.raises(ValueError, match="neither"):
        dominates((1, 2), (3, 4), ("up", "down"))


def test_front_keeps_the_trade_offs_only():
    points = [(0.10, 30.0), (0.08, 10.0), (0.05, 12.0), (0.10, 31.0), (0.02, 5.0), (0.08, 10.0)]
    assert pareto_front(points) == [0, 1, 4, 5]


def test_hypervolume_by_hand():
    # Boxes up to the reference (0 accuracy, 40 tokens): 0.10 x 10 = 1.0, plus 0.08 x (30 - 10) = 1.6.
    assert hypervolume([(0.10, 30), (0.08, 10)], (0.0, 40)) == pytest.approx(2.6)
    assert hypervolume([(0.10, 30), (0.08, 10), (0.05, 20)], (0.0, 40)) == pytest.approx(2.6)  # dominated: adds 0
    assert hypervolume([(0.0, 5), (0.3, 50)], (0.0, 40)) == 0.0  # not better than the reference in both
    assert hypervolume([], (0.0, 40)) == 0.0


def test_hypervolume_matches_counting_unit_cells():
    rng = random.Random(0)
    for _ in range(50):
        points = [(rng.randint(0, 9), rng.randint(0, 9)) for _ in range(rng.randint(1, 8))]
        cells = sum(1 for x, y in itertools.product(range(10), range(10))
                    if any(px > x and py <= y for px, py in points))  # cell [x, x+1] x [y, y+1] below ref (0, 10)
        assert hypervolume(points, (0, 10)) == cells


def test_front_with_ties_duplicates_and_a_single_point():
    assert pareto_front([(0.3, 10.0)]) == [0]
    assert hypervolume([(0.3, 10.0)], (0.0, 40.0)) == pytest.approx(0.3 * 30)
    # Same accuracy: only the shorter survives. Same tokens: only the more accurate survives.
    assert pareto_front([(0.5, 12.0), (0.5, 10.0), (0.4, 10.0)]) == [1]
    # Exact duplicates on the front all stay (two trials reached the same point) and count once in the volume.
    points = [(0.5, 10.0), (0.5, 10.0), (0.2, 4.0), (0.2, 4.0), (0.1, 9.0)]
    assert pareto_front(points) == [0, 1, 2, 3]
    assert hypervolume(points, (0.0, 40.0)) == pytest.approx(hypervolume([(0.5, 10.0), (0.2, 4.0)], (0.0, 40.0)))
    assert pareto_front([]) == []
