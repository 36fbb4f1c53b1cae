"""Registers ``hydra/sweeper=pareto_optuna``: a multi-objective Optuna search driven by ask/tell.

Selected by ``conf/search/pareto.yaml`` (``python -m sweep -m +search=pareto``). Every
field can be overridden as ``hydra.sweeper.<field>=...``. This dataclass is the sweeper's schema:
Hydra checks each field's type as the config is composed, and the fields with a range carry it as
their rule (:func:`training.config.settings.setting`), which ``settings.check_settings`` reads before any
trial, with the rules that span fields; a bad value is ``hydra.sweeper.<field>=<value> ...``, one line.
"""

import math
from dataclasses import dataclass, field, is_dataclass
from typing import Any, Callable, Dict, List, Optional

from hydra.core.config_store import ConfigStore

from sweep.search.study import DIRECTIONS
from training.common.errors import ConfigError
from training.config.settings import as_choice, choice, integer, nested, number, setting, text

SAMPLERS = ("tpe", "nsgaii", "random", "grid", "coordinate")


def _rule(test: Callable[[Any], bool], allowed: str, *, null: bool = False) -> Callable[[Any, str], Any]:
    """A setting ``test`` accepts (or None, with ``null``), refused as ``<key>=<value> must be <allowed>``."""

    def read(value: Any, key: str) -> Any:
        if (value is None and null) or (value is not None and test(value)):
            return value
        raise ConfigError(f"{key}={value!r} must be {allowed}")

    return read


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(then: Callable[[Any, str], Any] | None = None) -> Callable[[Any, str], Any]:
    """A finite int or float, as given (then read by ``then``, if given)."""

    def read(value: Any, key: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{key}={value!r} is not a number")
        return value if then is None else then(value, key)

    return read


def _named(value: Any, key: str) -> Any:
    if not str(value or "").strip():
        raise ConfigError(f"{key} is empty")
    return value


def _objectives(value: Any, key: str) -> Any:
    if not value:
        raise ConfigError(f"{key} is empty: name the metrics.json keys to optimise")
    for metric, direction in value.items():
        as_choice(direction, f"{key}.{metric}", DIRECTIONS)
    return value


@dataclass
class CoordinateConf:
    """``hydra.sweeper.coordinate``: what ``sampler=coordinate`` maximises (:mod:`sweep.search.coordinate`).

    Typed ``Any`` where Hydra would refuse a value in a multi-line error: the rule says it in one line.
    """
    # Values tried per interval or range parameter (a choice's values are all tried, as listed).
    grid_points: Any = setting(integer(2, "a whole number of at least 2"), 5)
    # A linear combination of the objectives to maximise, e.g. 'accuracy - 0.01*mean_think_tokens'
    # (required with several objectives; null: a single objective's own value).
    objective: Optional[str] = setting(text(null=True), None)
    # At most this much budget_metric: a point above it scores below every point within it (null: no budget).
    budget: Any = setting(number(0, null=True), None)
    budget_metric: str = setting(text(), "mean_think_tokens")


def _coordinate(value: Any, key: str) -> CoordinateConf:
    # The schema's own default is a CoordinateConf, not a mapping: read it like a configured one.
    return nested(CoordinateConf)(vars(value) if is_dataclass(value) else value, key)


@dataclass
class ParetoSweeperConf:
    _target_: str = "hydra_plugins.cot_pareto_sweeper.pareto_sweeper.ParetoSweeper"
    study_name: str = setting(_named, "pareto")
    # null: an Optuna journal file in the sweep dir; a path: a journal file there;
    # a URL (sqlite:///study.db, postgresql://user@host/db): an RDB storage. A password in the URL
    # is shown as *** in every file and log; PGPASSWORD, ~/.pgpass or storage_env keep it off the command line.
    storage: Optional[str] = None
    # The name of an environment variable holding the storage URL (instead of storage).
    storage_env: Optional[str] = None
    # Finished trials the study should end with (interrupted ones are retried, not counted);
    # null: the grid's size, with sampler=grid.
    n_trials: Optional[int] = setting(_rule(lambda n: _whole(n) and n >= 1, "a whole number of at least 1 (the "
                                            "finished trials the study should end with)", null=True), None)
    sampler: str = setting(choice(SAMPLERS), "tpe")  # tpe | nsgaii | random | grid | coordinate
    sampler_kwargs: Dict[str, Any] = field(default_factory=dict)
    seed: int = 42
    # metrics.json keys to optimise, in order, with their directions.
    objectives: Dict[str, str] = setting(
        _objectives, factory=lambda: {"accuracy": "maximize", "mean_think_tokens": "minimize"})
    # Trials launched together by this process (null: the launcher's n_jobs, 1 for the basic launcher).
    n_jobs: Optional[int] = setting(_rule(lambda n: _whole(n) and (n >= 1 or n == -1),
                                          "at least 1, -1 (one per core) or null", null=True), None)
    # Processes sharing the study on this machine: each trial then gets cores / (n_workers * n_jobs)
    # CPU threads unless hardware.num_threads is set.
    n_workers: int = setting(_number(_rule(lambda n: n >= 1 and int(n) == n, "a whole number of at least 1")), 1)
    heartbeat_seconds: float = setting(_number(), 30.0)
    # A RUNNING trial whose heartbeat is older than this (or whose worker on this host is dead) is
    # marked failed and its parameters queued again, by a live worker: one whose own trials are done
    # waits while other workers' trials run. Must exceed heartbeat_seconds.
    stale_after_seconds: float = setting(_number(), 300.0)
    # A proposed point that a finished trial already had reuses that trial's result instead of
    # running again (a trial's seed is fixed, so the rerun would match); false runs every trial.
    reuse_repeats: bool = True
    # Overrides of a no-adapter evaluation run once per study into <sweep dir>/baseline, before the
    # trials: the base model's point, against which analysis measures savings (null: no baseline).
    baseline: Optional[List[str]] = None
    # sampler=coordinate: one parameter at a time; the scalar it maximises and the points per interval.
    coordinate: CoordinateConf = setting(_coordinate, factory=CoordinateConf)
    params: Dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="pareto_optuna", node=ParetoSweeperConf,
                             provider="cot_pareto")
