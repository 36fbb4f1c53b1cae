"""Pareto fronts and hypervolume over (accuracy, think tokens)-style objective pairs.

Pure functions over plain tuples, so sweeps, benchmarks and reports share one
definition of "better". Each objective has a direction: ``maximize`` (accuracy) or
``minimize`` (mean think tokens); internally everything is turned into minimisation.
"""

from __future__ import annotations

from collections.abc import Sequence

Point = Sequence[float]
DEFAULT_DIRECTIONS = ("maximize", "minimize")  # accuracy up, think tokens down


def _signs(directions: Sequence[str]) -> list[float]:
    signs = []
    for direction in directions:
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction {direction!r} is neither 'maximize' nor 'minimize'")
        signs.append(-1.0 if direction == "maximize" else 1.0)
    return signs


def _minimised(point: Point, signs: Sequence[float]) -> tuple[float, ...]:
    if len(point) != len(signs):
        raise ValueError(f"point {tuple(point)} has {len(point)} objectives, directions name {len(signs)}")
    return tuple(sign * float(value) for sign, value in zip(signs, point))


def dominates(a: Point, b: Point, directions: Sequence[str] = DEFAULT_DIRECTIONS) -> bool:
    """True when ``a`` is at least as good as ``b`` in every objective and better in one."""
    signs = _signs(directions)
    left, right = _minimised(a, signs), _minimised(b, signs)
    return all(x <= y for x, y in zip(left, right)) and any(x < y for x, y in zip(left, right))


def pareto_front(points: Sequence[Point], directions: Sequence[str] = DEFAULT_DIRECTIONS) -> list[int]:
    """Indices of the non-dominated points, in input order (identical points all stay)."""
    return [i for i, point in enumerate(points)
            if not any(dominates(other, point, directions) for j, other in enumerate(points) if j != i)]


def hypervolume(points: Sequence[Point], reference: Point, directions: Sequence[str] = DEFAULT_DIRECTIONS) -> float:
    """The area the points dominate up to ``reference`` (two objectives, exact).

    ``reference`` is a point worse than any worth counting, e.g. (0 accuracy, the most think
    tokens seen plus a margin); points not strictly better than it in both objectives add nothing.
    """
    signs = _signs(directions)
    if len(signs) != 2:
        raise ValueError(f"hypervolume is implemented for two objectives, not {len(signs)}")
    ref_x, ref_y = _minimised(reference, signs)
    boxes = sorted(p for p in (_minimised(point, signs) for point in points) if p[0] < ref_x and p[1] < ref_y)
    area, lowest_y = 0.0, ref_y
    for x, y in boxes:  # by x ascending: each point adds the strip below the lowest y seen so far
        if y < lowest_y:
            area += (ref_x - x) * (lowest_y - y)
            lowest_y = y
    return area
