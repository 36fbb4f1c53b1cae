"""The coordinate-descent sampler (``hydra.sweeper.sampler=coordinate``) on a synthetic two-objective study.

Real Optuna studies, asked and told as the sweeper does (the sampler rebuilt for every ask), with made-up
objective values per point instead of trials: no model, a second or two in all.
"""

from __future__ import annotations

import random

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from sweep.search.coordinate import CONVERGED, PROPOSE, CoordinateSampler, grid_values
from sweep.search.sweeper_settings import build_sampler, check_settings
from tests.test_config_schema import sweeper_settings
from training.common.errors import ConfigError

OBJECTIVES = {"accuracy": "maximize", "mean_think_tokens": "minimize"}
LINEAR = "accuracy - 0.01*mean_think_tokens"
SPACE = {"level": CategoricalDistribution([1, 2, 3, 4, 5]),
         "temperature": FloatDistribution(0.2, 1.0),
         "max_new_tokens": IntDistribution(32, 128, step=32)}


def measured(params: dict) -> list[float]:
    """(accuracy, think tokens) of a point: the best temperature rises with the level, so each move of one opens a
    move of the other and the descent needs several cycles; a little noise per point breaks every tie."""
    level, temperature, tokens = params["level"], params["temperature"], params["max_new_tokens"]
    noise = random.Random(repr(sorted(params.items()))).random()
    return [0.5 + 0.1 * level - 2 * (temperature - 0.2 * level) ** 2 + 1e-3 * noise, tokens * (0.1 + 0.1 * temperature)]


def scalar(values: list[float]) -> float:
    return values[0] - 0.01 * values[1]


def sampler() -> optuna.samplers.BaseSampler:
    conf = {"objective": LINEAR, "grid_points": 5, "budget": None, "budget_metric": "mean_think_tokens"}
    return build_sampler("coordinate", {}, 0, conf, OBJECTIVES)


def run(study: optuna.Study, budget: int) -> list[dict]:
    """Ask and tell as the sweeper does, until the sampler has converged or ``budget`` trials ran."""
    for _ in range(budget):
        study.sampler = sampler()
        if study.sampler.progress(study.trials, list(OBJECTIVES.values())).state == CONVERGED:
            break
        trial = study.ask(dict(SPACE))
        study.tell(trial, measured(trial.params))
    return [trial.params for trial in study.trials]


@pytest.fixture(scope="module")
def descent() -> list[dict]:
    return run(optuna.create_study(directions=list(OBJECTIVES.values())), 200)


def test_one_parameter_at_a_time_from_the_best_point_so_far(descent):
    assert descent[0] == {"level": 1, "temperature": 0.2, "max_new_tokens": 32}  # each parameter's first value
    for number, params in enumerate(descent[1:], start=1):
        best = max(descent[:number], key=lambda p: scalar(measured(p)))
        assert sum(params[name] != best[name] for name in SPACE) == 1, (number, params, best)
    assert len({tuple(p.values()) for p in descent}) == len(descent)  # no point proposed twice
    assert {p["temperature"] for p in descent} <= {0.2, 0.4, 0.6, 0.8, 1.0}


def test_it_cycles_and_stops_where_no_move_improves(descent):
    varied = [next(name for name in SPACE if a[name] != b[name]) for a, b in zip(descent, descent[1:])]
    blocks = [name for i, name in enumerate(varied) if i == 0 or varied[i - 1] != name]
    assert len(blocks) > len(SPACE) and len(descent) < 200, blocks  # more than one cycle, then it stopped
    best = max(descent, key=lambda p: scalar(measured(p)))
    tried = {tuple(p.values()) for p in descent}
    values = {name: grid_values(dist, 5) for name, dist in SPACE.items()}
    for name in SPACE:  # a local optimum: every single-parameter neighbour tried, none better
        for value in values[name]:
            neighbour = {**best, name: value}
            assert tuple(neighbour.values()) in tried
            assert scalar(measured(neighbour)) <= scalar(measured(best))
    # Study.optimize stops by itself once it has converged, on the same points.
    study = optuna.create_study(directions=list(OBJECTIVES.values()), sampler=sampler())

    def objective(trial: optuna.Trial) -> list[float]:
        return measured({"level": trial.suggest_categorical("level", [1, 2, 3, 4, 5]),
                         "temperature": trial.suggest_float("temperature", 0.2, 1.0),
                         "max_new_tokens": trial.suggest_int("max_new_tokens", 32, 128, step=32)})

    study.optimize(objective, n_trials=200)
    assert [trial.params for trial in study.trials] == descent


def test_a_resumed_study_continues_the_cycle(descent, tmp_path):
    def storage() -> JournalStorage:  # a fresh handle on the file each time, as a rerun of the command opens it
        return JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal")))

    first = optuna.create_study(study_name="c", storage=storage(), directions=list(OBJECTIVES.values()))
    assert run(first, 9) == descent[:9]
    again = optuna.load_study(study_name="c", storage=storage())
    assert run(again, 200) == descent  # trial 9 onwards: where the first left off, not back at the start


def test_workers_share_a_parameter_and_wait_for_its_last_point():
    study = optuna.create_study(directions=list(OBJECTIVES.values()), sampler=sampler())
    start = study.ask(dict(SPACE))
    study.tell(start, measured(start.params))
    running = [study.ask(dict(SPACE)) for _ in range(4)]  # four workers: the other four levels at once
    assert sorted(trial.params["level"] for trial in running) == [2, 3, 4, 5]
    progress = sampler().progress(study.trials, list(OBJECTIVES.values()))
    assert progress.state == PROPOSE  # a running level is taken as no better: the next parameter goes on
    assert progress.point["level"] == 1 and progress.point["temperature"] != 0.2


def test_a_budget_ranks_every_point_within_it_above_every_point_over_it():
    objective = CoordinateSampler("accuracy", metrics=list(OBJECTIVES), budget=20).objective(list(OBJECTIVES.values()))
    assert objective.score([0.1, 20]) > objective.score([0.9, 21]) > objective.score([0.9, 30]) > objective.score(None)
    weights = CoordinateSampler("(accuracy - mean_think_tokens/100)*2 + 1", metrics=list(OBJECTIVES))
    assert weights.objective(list(OBJECTIVES.values())).weights == {"accuracy": 2.0, "mean_think_tokens": -0.02}


@pytest.mark.parametrize(("override", "message"), [
    ("hydra.sweeper.coordinate.objective='accuracy*mean_think_tokens'",
     "hydra.sweeper.coordinate.objective='accuracy*mean_think_tokens' must be a linear combination of accuracy, "
     "mean_think_tokens (e.g. 'accuracy - 0.01*mean_think_tokens'): a product of two objectives is not linear"),
    ("hydra.sweeper.coordinate.grid_points=1", "hydra.sweeper.coordinate.grid_points must be a whole number of at "
     "least 2, got 1"),
])
def test_a_bad_coordinate_setting_is_one_line(override, message):
    with pytest.raises(ConfigError) as caught:
        check_settings(sweeper_settings("hydra.sweeper.sampler=coordinate", override))
    assert str(caught.value) == message
