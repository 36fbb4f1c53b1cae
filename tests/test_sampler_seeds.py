"""The sweeper rebuilds its sampler for every ask; the seeds it uses must still give well-spread draws."""

from collections import Counter

import optuna
from optuna.distributions import CategoricalDistribution

from hydra_plugins.cot_pareto_sweeper.pareto_sweeper import ask_seed, build_sampler

SPACE = {"level": CategoricalDistribution([1, 2, 3, 4, 5]), "train.lora_r": CategoricalDistribution([2, 4])}


def draws(seed_of, n: int = 40) -> list[tuple]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"])
    points = []
    for _ in range(n):
        study.sampler = build_sampler("random", {}, seed_of(len(study.trials)))
        trial = study.ask(SPACE)
        points.append((trial.params["level"], trial.params["train.lora_r"]))
        study.tell(trial, [0.0, 0.0])
    return points


def test_rebuilt_random_sampler_covers_the_space():
    points = draws(lambda n: ask_seed(42, n))
    levels = Counter(level for level, _ in points)
    assert set(levels) == {1, 2, 3, 4, 5} and max(levels.values()) <= 16  # 8 expected per level
    assert len(set(points)) >= 9
    assert 10 <= sum(rank == 2 for _, rank in points) <= 30


def test_nearby_study_seeds_do_not_replay_each_other():
    # With seed + trial count, study 43's draws would be study 42's shifted by one trial.
    assert draws(lambda n: ask_seed(43, n), 20) != draws(lambda n: ask_seed(42, n + 1), 20)
    assert draws(lambda n: 43 + n, 20) == draws(lambda n: 42 + n + 1, 20)  # the overlap this avoids


def test_seeds_are_deterministic_and_differ_per_trial_and_study():
    assert ask_seed(42, 3) == ask_seed(42, 3)
    assert len({ask_seed(42, n) for n in range(100)}) == 100
    assert ask_seed(42, 0) != ask_seed(43, 0)
    assert draws(lambda n: ask_seed(7, n), 10) == draws(lambda n: ask_seed(7, n), 10)
