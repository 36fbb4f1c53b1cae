"""Coordinate descent as an Optuna sampler: one parameter at a time, the others held at the best point so far.

Deimos-A4's sampling config (seed card 002: temperature, repetition and presence penalty) was found by
such a sweep. Each parameter in turn is tried at every one of its values (a categorical's choices as
listed; ``grid_points`` points spread over an interval or range), the others held at the incumbent; the
incumbent then moves to the best of them if it beats the incumbent. A full cycle of parameters with no
such move ends the search (``converged``). Points are compared by one scalar (:class:`Objective`): a
linear combination of the study's objectives, optionally subject to a budget on one of them.

No state of its own: every ask replays the study's trials (:func:`walk`), so a resumed study, a second
worker or a sampler rebuilt per ask continues the same descent. A point a running trial evaluates is
skipped (assumed no better), so workers share one parameter's moves; it converges without such guesses.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from sweep.search.study import INTERRUPTED
from training.common.errors import ConfigError

KEY = "hydra.sweeper.coordinate"
PROPOSE, WAIT, CONVERGED = "propose", "wait", "converged"
Score = tuple[int, float]


@dataclass(frozen=True)
class Objective:
    """The scalar coordinate descent maximises, read from a trial's objective values (named ``metrics``)."""
    metrics: tuple[str, ...]
    weights: dict[str, float]
    constant: float = 0.0
    budget: float | None = None  # the most ``budget_metric`` may be; a point above it is infeasible
    budget_metric: str = "mean_think_tokens"

    def score(self, values: Sequence[float] | None) -> Score:
        """Higher is better: a failed trial lowest, then infeasible points (the nearer the budget the better),
        then feasible ones by the linear combination: no infeasible point ever beats a feasible one."""
        if values is None:
            return (0, 0.0)
        named = dict(zip(self.metrics, values))
        if self.budget is not None and named[self.budget_metric] > self.budget:
            return (1, self.budget - named[self.budget_metric])
        return (2, self.constant + sum(weight * named[metric] for metric, weight in self.weights.items()))


def describe(score: Score | None) -> str:
    """A score as the log shows it."""
    tier, value = score or (0, 0.0)
    return f"{value:.4g}" if tier == 2 else f"{-value:.4g} over the budget" if tier == 1 else "failed"


def linear(expression: str, metrics: Sequence[str]) -> tuple[dict[str, float], float]:
    """``accuracy - 0.01*mean_think_tokens`` as ({metric: weight}, constant); ConfigError unless linear."""

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"{KEY}.objective={expression!r} must be a linear combination of {', '.join(metrics)} "
                           f"(e.g. 'accuracy - 0.01*mean_think_tokens'): {why}")

    def scaled(term: tuple[dict[str, float], float], factor: float) -> tuple[dict[str, float], float]:
        return {metric: weight * factor for metric, weight in term[0].items()}, term[1] * factor

    def read(node: ast.AST) -> tuple[dict[str, float], float]:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return {}, float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in metrics:
                raise refuse(f"{node.id} is not one of the study's objectives")
            return {node.id: 1.0}, 0.0
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return scaled(read(node.operand), -1.0 if isinstance(node.op, ast.USub) else 1.0)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            sign = 1.0 if isinstance(node.op, ast.Add) else -1.0
            (left, a), (right, b) = read(node.left), scaled(read(node.right), sign)
            return {m: left.get(m, 0.0) + right.get(m, 0.0) for m in {**left, **right}}, a + b
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Div)):
            left, right = read(node.left), read(node.right)
            if isinstance(node.op, ast.Div):
                if right[0] or right[1] == 0:
                    raise refuse("divide only by a non-zero number")
                return scaled(left, 1.0 / right[1])
            if left[0] and right[0]:
                raise refuse("a product of two objectives is not linear")
            return scaled(left, right[1]) if left[0] else scaled(right, left[1])
        raise refuse(f"{ast.unparse(node)!r} is not a number, an objective, +, -, * or /")

    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise refuse("it does not parse") from None
    weights, constant = read(tree.body)
    if not any(weights.values()):
        raise refuse("it weighs no objective")
    return weights, constant


def grid_values(dist: BaseDistribution, points: int) -> list[Any]:
    """The values tried for one parameter: every choice as listed, or ``points`` spread evenly (geometrically on a
    log scale) from low to high, on the range's step; a range with fewer values yields each once."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    low, high, step = dist.low, dist.high, getattr(dist, "step", None)
    spread = [low * (high / low) ** (i / (points - 1)) if dist.log else low + (high - low) * i / (points - 1)
              for i in range(points)]
    if isinstance(dist, IntDistribution):
        values: list[Any] = [min(high, low + round((v - low) / step) * step) for v in spread]
    elif step is not None:
        values = [min(high, float(f"{low + round((v - low) / step) * step:.12g}")) for v in spread]
    else:  # 12 significant digits: 1.05, not 1.0500000000000003
        values = [min(high, max(low, float(f"{v:.12g}"))) for v in spread]
    return list(dict.fromkeys(values))


@dataclass
class Progress:
    """Where the descent stands: the next point to try (``propose``), the incumbent it waits on running trials to
    judge (``wait``), or the incumbent no single-parameter move improves (``converged``)."""
    state: str
    point: dict[str, Any]
    trial: int | None = None  # the incumbent's trial, once it has finished
    score: Score | None = None
    points: int = 0  # distinct points evaluated so far


def walk(values: Mapping[str, list[Any]], start: Mapping[str, Any], known: Mapping[tuple, Score],
         running: set[tuple]) -> tuple[str, tuple]:
    """Replay the descent over the finished points ``known`` (point -> score): (state, point); see :class:`Progress`."""
    names, choices = list(values), list(values.values())
    x = tuple(start[name] for name in names)
    if x not in known and x not in running:
        return PROPOSE, x
    stale, index, assumed = 0, 0, False
    while stale < len(names):
        i, index = index % len(names), index + 1
        moves = [x[:i] + (value,) + x[i + 1:] for value in choices[i] if value != x[i]]
        fresh = next((y for y in moves if y not in known and y not in running), None)
        if fresh is not None:
            return PROPOSE, fresh
        if x not in known:
            return WAIT, x  # the incumbent itself still runs: no move can be judged yet
        assumed = assumed or any(y not in known for y in moves)  # a running move taken as no better
        best = max((y for y in moves if y in known), key=known.__getitem__, default=x)
        x, stale = (best, 1) if known[best] > known[x] else (x, stale + 1)
    return (WAIT if assumed else CONVERGED), x


class CoordinateSampler(optuna.samplers.BaseSampler):
    """``hydra.sweeper.sampler=coordinate``. ``start``: the first point (default: each parameter's first value)."""

    def __init__(self, objective: str | None = None, *, metrics: Sequence[str] | None = None,
                 grid_points: int = 5, budget: float | None = None, budget_metric: str = "mean_think_tokens",
                 start: Mapping[str, Any] | None = None) -> None:
        if type(grid_points) is not int or grid_points < 2:
            raise ValueError(f"grid_points={grid_points!r} must be a whole number of at least 2")
        self.expression, self.metrics, self.grid_points = objective, list(metrics or []), grid_points
        self.budget, self.budget_metric, self.start = budget, budget_metric, dict(start or {})
        if self.metrics:  # refuse a bad objective now, not at the first ask
            self.objective(["maximize"] * len(self.metrics))

    def objective(self, directions: Sequence[str], study: optuna.Study | None = None) -> Objective:
        """The scalar; without an expression, a single objective's own value, signed by its direction."""
        metrics = self.metrics or (study.user_attrs.get("metrics") if study else None) or \
            (["value"] if len(directions) == 1 else [f"value{i}" for i in range(len(directions))])
        if self.expression is not None:
            weights, constant = linear(self.expression, metrics)
        elif len(metrics) == 1:
            weights, constant = {metrics[0]: 1.0 if directions[0] == "maximize" else -1.0}, 0.0
        else:
            raise ConfigError(f"{KEY}.objective is required with several objectives ({', '.join(metrics)}): the "
                              "linear combination to maximise, e.g. 'accuracy - 0.01*mean_think_tokens'")
        if self.budget is not None and self.budget_metric not in metrics:
            raise ConfigError(f"{KEY}.budget_metric={self.budget_metric!r} is not one of the study's objectives "
                              f"({', '.join(metrics)})")
        return Objective(tuple(metrics), weights, constant, self.budget, self.budget_metric)

    def progress(self, trials: Sequence[FrozenTrial], directions: Sequence[str], *, current: int | None = None,
                 study: optuna.Study | None = None) -> Progress:
        """The descent replayed over ``trials`` (those of a study, in number order), less trial ``current``."""
        space = search_space(trials, current)
        values = {name: grid_values(dist, self.grid_points) for name, dist in space.items()}
        start = {name: self._start(name, dist) for name, dist in space.items()}
        score, known, running, numbers = self.objective(directions, study).score, {}, set(), {}
        for trial in trials:
            if trial.number == current or any(name not in trial.params for name in space):
                continue
            point = tuple(trial.params[name] for name in space)
            if trial.state == TrialState.COMPLETE:
                known[point], numbers[point] = score(trial.values), trial.number
            elif trial.state == TrialState.FAIL and not trial.user_attrs.get(INTERRUPTED):
                known.setdefault(point, score(None))  # failed for good: the worst, not tried again
                numbers.setdefault(point, trial.number)
            elif trial.state == TrialState.RUNNING:
                running.add(point)
        state, point = walk(values, start, known, running - known.keys())
        return Progress(state, dict(zip(space, point)), numbers.get(point), known.get(point), len(known))

    def _start(self, name: str, dist: BaseDistribution) -> Any:
        with suppress(ValueError, TypeError):  # a start value outside the distribution: its first value instead
            if name in self.start and dist._contains(dist.to_internal_repr(self.start[name])):  # noqa: SLF001
                return self.start[name]
        return grid_values(dist, self.grid_points)[0]

    # -- Optuna's sampler interface -------------------------------------------------------------------------
    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return search_space(study.get_trials(deepcopy=False), trial.number)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        progress = self.progress(study.get_trials(deepcopy=False), _directions(study), current=trial.number,
                                 study=study)
        # Converged, or waiting on running trials: the incumbent again (the sweeper reuses its result).
        return {name: value for name, value in progress.point.items() if name in search_space}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._start(param_name, param_distribution)  # the first trial, or a parameter new to the study

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        told = copy.copy(trial)  # the storage still shows it running
        told.state, told.values = state, values
        trials = [told if t.number == trial.number else t for t in study.get_trials(deepcopy=False)]
        progress = self.progress(trials, _directions(study), study=study)
        if progress.state == CONVERGED:
            with suppress(RuntimeError):  # stop() works inside study.optimize; the sweeper asks search_finished
                study.stop()


def search_space(trials: Sequence[FrozenTrial], current: int | None = None) -> dict[str, BaseDistribution]:
    """The parameters in the order the study's first trial asked them, less any whose distribution changed."""
    asked = [trial for trial in trials if trial.distributions and trial.number != current]
    space = dict(asked[0].distributions) if asked else {}
    for trial in asked[1:]:
        space = {name: dist for name, dist in space.items() if trial.distributions.get(name, dist) == dist}
    return space


def _directions(study: optuna.Study) -> list[str]:
    return [direction.name.lower() for direction in study.directions]
