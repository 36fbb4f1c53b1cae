# Search efficiency. Run: .venv/bin/python bench/search_efficiency.py [--grid CSV] [--seeds 20] [--target 0.95]
#                                                                    [--objective accuracy --think-budget 10]
"""How many trials TPE and NSGA-II need to reach 95% of a recorded grid's hypervolume, against the grid's size.

The grid is a ``sweep_summary.csv`` of every point of level x LoRA rank x temperature
(recorded with ``python -m sweep -m +search=grid`` and copied to ``bench/data/``). Each
sampler searches the same categorical space, asking and telling through an in-memory
Optuna study exactly as our sweeper does (the sampler rebuilt per ask, seeded by
``ask_seed``), and each trial's objectives are looked up in the grid instead of trained, so a
hundred searches take seconds. Samplers propose points they have tried before; the
sweeper reuses a finished trial's result for those (``reuse_repeats``), so a search's cost
is its *runs* (distinct points), and its *trials* are what ``n_trials`` budgets. Reference point: 0 accuracy and 1.1x the most think tokens in the grid.

Every search is measured in this run, against the same grid: the ratios printed are the
grid's size over a sampler's median runs (and trials) to the target.

Coordinate descent (``sampler=coordinate``) maximises one scalar, so it is measured on that scalar:
the trials until it converges (it stops by itself, as in the sweeper), whether it ends at the grid's
best point for the scalar, from the default start and from every grid point as the start, and the
trials every sampler needs until it first tries that best point (TPE also on the scalar alone).
By default two scalars: ``accuracy - 0.01*mean_think_tokens`` and accuracy within 10 think tokens.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.pareto import hypervolume, pareto_front  # noqa: E402
from sweep.search.coordinate import CONVERGED, CoordinateSampler, describe  # noqa: E402
from sweep.search.summary_csv import read_summary  # noqa: E402
from sweep.search.sweeper_settings import ask_seed, build_sampler  # noqa: E402

DEFAULT_GRID = Path(__file__).parent / "data" / "grid_smollm2-135m.csv"
OBJECTIVES = ("accuracy", "mean_think_tokens")
DIRECTIONS = ("maximize", "minimize")
# NSGA-II's default population (50) is larger than the grid: it would be a random search for
# its whole first generation. A population of 10 is what a user of a 30-point space would set
# (hydra.sweeper.sampler_kwargs.population_size=10); TPE keeps its defaults (10 random startup trials).
SAMPLER_KWARGS: dict[str, dict[str, Any]] = {"tpe": {}, "nsgaii": {"population_size": 10}, "random": {}}
SCALARS = [("accuracy - 0.01*mean_think_tokens", None), ("accuracy", 10.0)]  # (objective, think-token budget)
Table = dict[tuple, tuple[float, float]]


def load_grid(path: Path) -> tuple[dict[str, list[Any]], dict[tuple, tuple[float, float]]]:
    """The grid's parameter values and a lookup from a point's values to its (accuracy, think tokens)."""
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: record a grid with `python -m sweep -m +search=grid` and pass "
                         "its sweep_summary.csv as --grid")
    rows = [row for row in read_summary(path) if row["state"] == "COMPLETE"]
    if not rows:
        raise SystemExit(f"{path}: no COMPLETE trials")
    names = [column.removeprefix("param.") for column in rows[0] if column.startswith("param.")]
    values: dict[str, list[Any]] = {name: [] for name in names}
    table: dict[tuple, tuple[float, float]] = {}
    for row in rows:
        point = tuple(yaml.safe_load(row[f"param.{name}"]) for name in names)
        for name, value in zip(names, point):
            if value not in values[name]:
                values[name].append(value)
        table[point] = (float(row["accuracy"]), float(row["mean_think_tokens"]))
    size = 1
    for choices in values.values():
        size *= len(choices)
    if len(table) != size:
        raise SystemExit(f"{path}: {len(table)} completed points, but the grid has {size}; finish the sweep first")
    return {name: sorted(choices) for name, choices in values.items()}, table


def search(sampler: Callable[[int], optuna.samplers.BaseSampler], space: dict[str, list[Any]], table: Table,
           budget: int, stop: Callable[[list[tuple]], bool] = lambda points: False,
           scalar: Callable[[tuple[float, float]], float] | None = None) -> list[tuple]:
    """The points one search asks, in order, each told its grid values (or ``scalar`` of them, to a
    one-objective study), until ``stop(points)`` or ``budget`` trials; coordinate descent also ends once it
    has converged, as the sweeper ends it. ``sampler(n)``: the sampler for the ask after n trials."""
    directions = ["maximize"] if scalar else list(DIRECTIONS)
    study = optuna.create_study(directions=directions)
    distributions = {name: optuna.distributions.CategoricalDistribution(choices) for name, choices in space.items()}
    points: list[tuple] = []
    while len(points) < budget and not stop(points):
        study.sampler = sampler(len(study.trials))
        if isinstance(study.sampler, CoordinateSampler) and \
                study.sampler.progress(study.trials, directions).state == CONVERGED:
            break
        trial = study.ask(distributions)
        points.append(tuple(trial.params[name] for name in space))
        study.tell(trial, [scalar(table[points[-1]])] if scalar else list(table[points[-1]]))
    return points


def seeded(sampler: str, seed: int) -> Callable[[int], optuna.samplers.BaseSampler]:
    """The sweeper's way: the sampler rebuilt for every ask, seeded by ``ask_seed``."""
    return lambda n: build_sampler(sampler, SAMPLER_KWARGS[sampler], ask_seed(seed, n))


def trials_to_target(sampler: str, seed: int, space: dict[str, list[Any]], table: Table,
                     reference: tuple[float, float], target: float, budget: int) -> tuple[int, int] | None:
    """(trials, distinct points) one search needs to reach ``target`` hypervolume; None: not within budget."""
    def reached(points: list[tuple]) -> bool:
        return bool(points) and hypervolume([table[p] for p in points], reference, DIRECTIONS) >= target

    points = search(seeded(sampler, seed), space, table, budget, reached)
    return (len(points), len(set(points))) if reached(points) else None


def grid_order_trials(table: dict[tuple, tuple[float, float]], reference: tuple[float, float], target: float) -> int:
    """Trials the grid sampler needs in its own order (the table's, as enqueued)."""
    seen = []
    for n, values in enumerate(table.values(), start=1):
        seen.append(values)
        if hypervolume(seen, reference, DIRECTIONS) >= target:
            return n
    return len(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=Path, default=DEFAULT_GRID, help="a sweep_summary.csv of a full grid")
    parser.add_argument("--seeds", type=int, default=20, help="searches per sampler")
    parser.add_argument("--target", type=float, default=0.95, help="fraction of the grid's hypervolume to reach")
    parser.add_argument("--budget", type=float, default=3.0, help="give up after this many times the grid's size")
    parser.add_argument("--objective", help="coordinate descent's scalar (default: two, see above)")
    parser.add_argument("--think-budget", dest="think_budget", type=float, help="with --objective: at most this "
                        "many think tokens")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    space, table = load_grid(args.grid)
    points = list(table.values())
    reference = (0.0, 1.1 * max(tokens for _, tokens in points))
    grid_hv = hypervolume(points, reference, DIRECTIONS)
    if grid_hv <= 0:
        raise SystemExit(f"{args.grid}: every point scores 0 accuracy, so every search reaches 100% of a zero "
                         "hypervolume at once; record the grid with a model that solves some problems")
    target = args.target * grid_hv
    front = sorted((points[i] for i in pareto_front(points, DIRECTIONS)), key=lambda p: p[1])
    budget = int(args.budget * len(table))
    print(f"grid {args.grid.name}: {len(table)} points ({' x '.join(f'{k} {v}' for k, v in space.items())})")
    print(f"hypervolume {grid_hv:.3f} (reference: accuracy 0, {reference[1]:.1f} think tokens); "
          f"Pareto front: {', '.join(f'{a:.3f}@{t:.1f}' for a, t in front)}")
    print(f"target {args.target:.0%} of it; {args.seeds} searches per sampler, budget {budget} trials each")
    print(f"grid sampler in its own order: {grid_order_trials(table, reference, target)} trials "
          f"(all {len(table)} to be sure)")

    medians: dict[str, tuple[float, float]] = {}
    for sampler in SAMPLER_KWARGS:
        results = [trials_to_target(sampler, seed, space, table, reference, target, budget) for seed in range(args.seeds)]
        reached = [result for result in results if result is not None]
        # A search that never reached the target counts as the whole budget (and every point), so
        # the median is not flattered.
        trials = statistics.median(result[0] if result else budget for result in results)
        runs = statistics.median(result[1] if result else len(table) for result in results)
        medians[sampler] = (runs, trials)
        spread = f"runs {min(r[1] for r in reached)}-{max(r[1] for r in reached)}" if reached else "none"
        print(f"{sampler:>7}: median {runs:.1f} runs ({trials:.1f} trials), {spread}, "
              f"{len(reached)}/{args.seeds} reached the target within {budget} trials")
    for sampler in ("tpe", "nsgaii"):
        runs, trials = medians[sampler]
        print(f"ratio (grid size / {sampler} median runs): {len(table) / runs:.2f}x "
              f"(per trial: {len(table) / trials:.2f}x)")
    for objective, think_budget in ([(args.objective, args.think_budget)] if args.objective else SCALARS):
        coordinate_report(objective, think_budget, space, table, reference, grid_hv, target, args.seeds, budget)


def coordinate_report(objective: str, think_budget: float | None, space: dict[str, list[Any]], table: Table,
                      reference: tuple[float, float], grid_hv: float, target: float, seeds: int, budget: int) -> None:
    """Coordinate descent on one scalar, beside the other samplers' trials until they first try its best score."""
    conf = {"objective": objective, "grid_points": 5, "budget": think_budget, "budget_metric": OBJECTIVES[1]}
    score = CoordinateSampler(objective, metrics=OBJECTIVES, budget=think_budget).objective(DIRECTIONS).score
    top = max(score(values) for values in table.values())
    best = [point for point in table if score(table[point]) == top]  # several points may tie
    label = objective + (f" within {think_budget:g} {OBJECTIVES[1]}" if think_budget is not None else "")
    print(f"\ncoordinate descent on {label}: the grid's best is {describe(top)}, at "
          + "; ".join(" ".join(f"{n}={v}" for n, v in zip(space, point)) + f" ({table[point][0]:.3f}@"
                      f"{table[point][1]:.1f})" for point in best))

    def descend(start: tuple) -> list[tuple]:
        sampler = build_sampler("coordinate", {"start": dict(zip(space, start))}, 0, conf,
                                dict(zip(OBJECTIVES, DIRECTIONS)))
        return search(lambda n: sampler, space, table, budget)

    def end(points: list[tuple]) -> tuple[int, float]:  # the best score it found, its hypervolume
        return max(score(table[p]) for p in points), hypervolume([table[p] for p in points], reference, DIRECTIONS)

    def found(points: list[tuple]) -> bool:
        return any(score(table[point]) == top for point in points)

    def first_try(points: list[tuple]) -> int:  # the trial that first tried a best point; never: the budget
        return next((n for n, point in enumerate(points, start=1) if score(table[point]) == top), budget)

    start = tuple(choices[0] for choices in space.values())
    first = descend(start)
    reached, volume = end(first)
    print(f"  from {' '.join(f'{n}={v}' for n, v in zip(space, start))} (each first value): converged after "
          f"{len(first)} trials at {describe(reached)} ({'the grid best' if reached == top else 'a local optimum'}),"
          f" {volume / grid_hv:.0%} of the grid's hypervolume")
    walks = [descend(point) for point in table]
    ends = [end(points) for points in walks]
    print(f"  from each of the {len(table)} grid points: converged after median "
          f"{statistics.median(len(p) for p in walks):.1f} trials ({min(map(len, walks))}-{max(map(len, walks))}), "
          f"at the grid best from {sum(s == top for s, _ in ends)}/{len(walks)}, median end "
          f"{describe(statistics.median_low(s for s, _ in ends))}; {target / grid_hv:.0%} of the hypervolume "
          f"from {sum(v >= target for _, v in ends)}/{len(walks)} "
          f"(median {statistics.median(v for _, v in ends) / grid_hv:.0%})")
    runs = {sampler: [search(seeded(sampler, seed), space, table, budget, found) for seed in range(seeds)]
            for sampler in SAMPLER_KWARGS}
    # The score's tiers (failed, over the budget, within it) as one number: a tier outweighs any value in it.
    runs["tpe on the scalar"] = [search(seeded("tpe", seed), space, table, budget, found,
                                        scalar=lambda values: score(values)[1] + 1e6 * score(values)[0])
                                 for seed in range(seeds)]
    runs["coordinate"] = walks
    parts = []
    for sampler, searches in runs.items():
        missed = sum(not found(points) for points in searches)
        trials = statistics.median(first_try(points) for points in searches)
        parts.append(f"{sampler} {trials:.1f}" + (f" ({missed}/{len(searches)} never)" if missed else ""))
    print(f"  trials until the grid's best is first tried, median over {seeds} seeds (coordinate: over the "
          f"{len(walks)} starts; never counts {budget}): " + ", ".join(parts))


if __name__ == "__main__":
    main()
