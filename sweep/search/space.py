"""A search space in Hydra's override syntax, turned into Optuna distributions and back.

Declared in ``hydra.sweeper.params`` (or on the command line, which wins for the same key):

* ``choice(a, b, c)`` or ``a,b,c``  -- categorical
* ``range(start, stop, step)``      -- a stepped int (or float) range, ``stop`` excluded, as in Hydra
* ``interval(low, high)``           -- a float in [low, high]; ``tag(log, interval(...))`` samples on a
                                       log scale, ``tag(int, interval(...))`` draws ints
* a plain value                     -- fixed: passed to every trial unchanged

The same notation as Hydra's grid sweeps and the official Optuna sweeper, so a user moves
from ``-m train.lora_r=8,16,32`` to a search without learning a new syntax.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from sweep.cli import override_key
from training.common.errors import ConfigError


@dataclass
class SearchSpace:
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)  # Optuna name -> distribution
    keys: dict[str, str] = field(default_factory=dict)  # Optuna name -> override key, e.g. level -> +level
    fixed: list[str] = field(default_factory=list)  # overrides every trial gets

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """A trial's overrides: the fixed ones, then one per sampled parameter."""
        return [*self.fixed, *(f"{self.keys[name]}={format_value(params[name])}" for name in self.keys if name in params)]


def format_value(value: Any) -> str:
    """A value as Hydra's override parser reads it back with the same type."""
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution for one sweep override (ConfigError naming the key if it has none)."""
    key, sweep = override.get_key_element(), override.value()
    if isinstance(sweep, ChoiceSweep):
        values = list(sweep.list)
        if not values:
            raise ConfigError(f"search space {key}: choice() needs at least one value")
        return CategoricalDistribution(values)
    if isinstance(sweep, RangeSweep):
        start, stop, step = sweep.start, sweep.stop, sweep.step
        if step is None or step <= 0 or start >= stop:
            raise ConfigError(f"search space {key}: range({start}, {stop}, {step}) is empty (need start < stop, step > 0)")
        # Hydra's stop is exclusive, Optuna's high is not; the epsilon keeps 0.1-steps from overshooting.
        last = start + step * (math.ceil((stop - start) / step - 1e-9) - 1)
        if all(isinstance(v, int) for v in (start, stop, step)):
            return IntDistribution(start, last, step=step)
        return FloatDistribution(float(start), round(float(last), 12), step=float(step))
    if isinstance(sweep, IntervalSweep):
        log = "log" in sweep.tags
        low, high = sweep.start, sweep.end
        if low >= high or (log and low <= 0):
            raise ConfigError(f"search space {key}: interval({low}, {high}) is empty"
                              + (" or not positive (a log scale needs low > 0)" if log else ""))
        if "int" in sweep.tags:
            return IntDistribution(math.ceil(low), math.floor(high), log=log)
        return FloatDistribution(float(low), float(high), log=log)
    raise ConfigError(f"search space {key}: {override.input_line!r} is not a choice, range or interval")


def parse_overrides(lines: Sequence[str]) -> list[Override]:
    try:
        return OverridesParser.create().parse_overrides(list(lines))
    except HydraException as err:
        raise ConfigError(f"search space: {err}") from err


def build_space(params: Mapping[str, Any] | None, arguments: Sequence[str]) -> SearchSpace:
    """The space from ``hydra.sweeper.params`` and the command line's task overrides (which win)."""
    declared = parse_overrides([f"{key}={value}" for key, value in (params or {}).items()])
    given = parse_overrides(arguments)
    merged: dict[str, Override] = {override_key(o.get_key_element()): o for o in declared}
    for override in given:  # the command line wins over the config for the same parameter
        merged.pop(override_key(override.get_key_element()), None)
        merged[override_key(override.get_key_element())] = override
    space = SearchSpace()
    for name, override in merged.items():
        if override.is_sweep_override():
            space.distributions[name] = distribution(override)
            space.keys[name] = override.get_key_element()
        else:
            space.fixed.append(override.input_line)
    return space


def grid_points(space: SearchSpace) -> dict[str, list[Any]]:
    """Every value of every parameter, for Optuna's GridSampler (continuous intervals have none)."""
    grid: dict[str, list[Any]] = {}
    for name, dist in space.distributions.items():
        if isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            grid[name] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, FloatDistribution) and dist.step is not None:
            count = round((dist.high - dist.low) / dist.step) + 1
            grid[name] = [round(dist.low + i * dist.step, 12) for i in range(count)]
        else:
            raise ConfigError(f"the grid sampler needs discrete values: {name} is continuous "
                              "(use choice() or range() for it, or another sampler)")
    return grid
