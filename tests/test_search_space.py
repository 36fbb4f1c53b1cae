"""The sweeper's search-space notation: Hydra override syntax in, Optuna distributions out, and back."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from sweep.search.space import build_space, format_value, grid_points, parse_overrides
from training.common.errors import ConfigError


def test_each_notation_maps_to_its_distribution():
    space = build_space({
        "+level": "choice(1, 2, 3)",
        "train.lora_r": "8,16,32",
        "train.epochs": "range(1, 4)",
        "sampling.max_new_tokens": "range(64, 257, 64)",
        "train.learning_rate": "tag(log, interval(1e-4, 1e-2))",
        "sampling.temperature": "interval(0.3, 1.0)",
        "train.batch_size": "tag(int, interval(2, 8))",
        "sampling": "choice(greedy, sample)",
    }, [])
    d = space.distributions
    assert d["level"] == CategoricalDistribution([1, 2, 3])
    assert d["train.lora_r"] == CategoricalDistribution([8, 16, 32])
    assert d["train.epochs"] == IntDistribution(1, 3)  # Hydra's stop is exclusive
    assert d["sampling.max_new_tokens"] == IntDistribution(64, 256, step=64)
    assert d["train.learning_rate"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert d["sampling.temperature"] == FloatDistribution(0.3, 1.0)
    assert d["train.batch_size"] == IntDistribution(2, 8)
    assert d["sampling"] == CategoricalDistribution(["greedy", "sample"])
    assert space.keys["level"] == "+level" and space.fixed == []


def test_the_command_line_wins_and_plain_values_are_fixed():
    space = build_space({"+level": "choice(1, 2)", "train.lora_r": "choice(8, 16)"},
                        ["+search=pareto", "+level='4'", "train.lora_r=choice(4,64)"])
    assert "level" not in space.distributions
    assert space.fixed == ["+search=pareto", "+level='4'"]
    assert space.distributions["train.lora_r"] == CategoricalDistribution([4, 64])


def test_trial_overrides_read_back_with_the_same_types():
    space = build_space({"+level": "choice(1, 2)", "sampling": "choice(greedy, sample)",
                         "train.learning_rate": "interval(1e-5, 1e-3)", "x.flag": "choice(true, false)"}, ["a=1"])
    params = {"level": 2, "sampling": "sample", "train.learning_rate": 1.5e-05, "x.flag": False}
    overrides = space.overrides(params)
    assert overrides[0] == "a=1"
    parsed = {o.get_key_element(): o.value() for o in parse_overrides(overrides[1:])}
    assert parsed == {"+level": 2, "sampling": "sample", "train.learning_rate": 1.5e-05, "x.flag": False}
    assert format_value("it's") == "'it\\'s'" and format_value(None) == "null"


def test_grid_points_enumerate_discrete_parameters():
    space = build_space({"a": "choice(x, y)", "b": "range(1, 7, 2)", "c": "range(0.1, 0.4, 0.1)"}, [])
    assert grid_points(space) == {"a": ["x", "y"], "b": [1, 3, 5], "c": [0.1, 0.2, 0.3]}


@pytest.mark.parametrize("params, message", [
    ({"t": "interval(0.1, 1.0)"}, "t is continuous"),
])
def test_grid_rejects_continuous_parameters(params, message):
    with pytest.raises(ConfigError, match=message):
        grid_points(build_space(params, []))


@pytest.mark.parametrize("expression, message", [
    ("range(5, 1)", "is empty"),
    ("interval(1.0, 0.5)", "is empty"),
    ("tag(log, interval(0, 1))", "log scale needs low > 0"),
    ("choice(1,", "search space"),
])
def test_bad_declarations_name_the_parameter(expression, message):
    with pytest.raises(ConfigError, match=message):
        build_space({"train.x": expression}, [])
