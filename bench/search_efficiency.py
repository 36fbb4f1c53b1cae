# Search efficiency. Run: .venv/bin/python bench/search_efficiency.py [--grid CSV] [--seeds 20] [--target 0.95]
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
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import optuna
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.pareto import hypervolume, pareto_front  # noqa: E402
from hydra_plugins.cot_pareto_sweeper.pareto_sweeper import ask_seed, build_sampler  # noqa: E402
from sweep.search.summary_csv import read_summary  # noqa: E402

DEFAULT_GRID = Path(__file__).parent / "data" / "grid_smollm2-135m.csv"
OBJECTIVES = ("accuracy", "mean_think_tokens")
DIRECTIONS = ("maximize", "minimize")
# NSGA-II's default population (50) is larger than the grid: it would be a random search for
# its whole first generation. A population of 10 is what a user of a 30-point space would set
# (hydra.sweeper.sampler_kwargs.population_size=10); TPE keeps its defaults (10 random startup trials).
SAMPLER_KWARGS: dict[str, dict[str, Any]] = {"tpe": {}, "nsgaii": {"population_size": 10}, "random": {}}


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


def trials_to_target(sampler: str, seed: int, space: dict[str, list[Any]], table: dict[tuple, tuple[float, float]],
                     reference: tuple[float, float], target: float, budget: int) -> tuple[int, int] | None:
    """(trials, distinct points) one search needs to reach ``target`` hypervolume; None: not within budget."""
    study = optuna.create_study(directions=list(DIRECTIONS))
    distributions = {name: optuna.distributions.CategoricalDistribution(choices) for name, choices in space.items()}
    seen: list[tuple[float, float]] = []
    points: set[tuple] = set()
    for n in range(1, budget + 1):
        study.sampler = build_sampler(sampler, SAMPLER_KWARGS[sampler], ask_seed(seed, len(study.trials)))
        trial = study.ask(distributions)
        point = tuple(trial.params[name] for name in space)
        study.tell(trial, list(table[point]))
        seen.append(table[point])
        points.add(point)
        if hypervolume(seen, reference, DIRECTIONS) >= target:
            return n, len(points)
    return None


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


if __name__ == "__main__":
    main()
