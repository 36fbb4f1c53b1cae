"""The sweeper's settings, checked before any trial, and the hydra config it writes with the storage redacted.

A bad setting is a ConfigError naming ``hydra.sweeper.<field>``: the sweeper prints it as one line
and exits with status 2 before it opens the storage or starts a trial. Without these checks a
negative ``n_trials`` ran nothing and exited 0, and a bad sampler failed after the first trials.
Each field's own rule is declared on the sweeper's schema (:class:`~.config.ParetoSweeperConf`);
the rules that span fields are here.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from omegaconf import DictConfig, open_dict, read_write
from optuna.trial import FrozenTrial

from hydra_plugins.cot_pareto_sweeper.config import SAMPLERS, ParetoSweeperConf  # noqa: F401 (re-exported)
from sweep.cli import override_key
from sweep.search.coordinate import CONVERGED, PROPOSE, CoordinateSampler, describe
from sweep.search.space import format_value
from sweep.search.storage import is_url, redact, storage_setting
from training.common.errors import ConfigError
from training.config.settings import read_setting, read_settings

log = logging.getLogger(__name__)

STORAGE_KEY = "hydra.sweeper.storage"
_CONVERGED_LOGGED: set[tuple[str, int | None]] = set()  # a worker waiting on others asks again every 2 s


def build_sampler(name: str, kwargs: dict[str, Any], seed: int, coordinate: Any = None,
                  objectives: Mapping[str, str] | None = None) -> optuna.samplers.BaseSampler:
    """The sampler for one ask. ``coordinate`` (its settings) and ``objectives`` (metric -> direction) are for
    ``coordinate``, which is deterministic: it draws nothing, so it takes no seed."""
    # The grid is enqueued up front (see ``enqueue_grid``); anything asked beyond it is random.
    classes = {"tpe": optuna.samplers.TPESampler, "nsgaii": optuna.samplers.NSGAIISampler,
               "random": optuna.samplers.RandomSampler, "grid": optuna.samplers.RandomSampler}
    try:
        if name == "coordinate":
            conf = read_setting(ParetoSweeperConf, "coordinate", coordinate, "hydra.sweeper")
            return CoordinateSampler(conf.objective, metrics=list(objectives or {}), grid_points=conf.grid_points,
                                     budget=conf.budget, budget_metric=conf.budget_metric, **kwargs)
        return classes[name](seed=seed, **kwargs)
    except (TypeError, ValueError) as err:  # an unknown keyword, a population_size of 1, ...
        raise ConfigError(f"hydra.sweeper.sampler_kwargs={dict(kwargs)} for sampler {name}: {err}") from None


def ask_seed(seed: int, n_trials: int) -> int:
    """The sampler's seed for the ask after ``n_trials`` trials: a hash, not ``seed + n_trials``.

    The sampler is rebuilt for every ask so that workers sharing a study draw different points
    and a resumed study continues deterministically. With ``seed + n_trials``, a study seeded
    43 would replay the draws of one seeded 42, one trial behind; hashed seeds do not overlap.
    """
    digest = hashlib.sha256(f"{seed}:{n_trials}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def check_settings(settings: Mapping[str, Any]) -> ParetoSweeperConf:
    """Every setting the sweep reads, checked at once: ConfigError naming the first bad one; the settings."""
    checked = read_settings(ParetoSweeperConf, settings, "hydra.sweeper")  # each field's own rule
    # The sampler's keywords; coordinate's objective against the study's objectives.
    build_sampler(checked.sampler, dict(checked.sampler_kwargs or {}), 0, checked.coordinate, checked.objectives)
    if checked.n_trials is None and checked.sampler != "grid":
        raise ConfigError("hydra.sweeper.n_trials is required unless sampler=grid")
    heartbeat, stale_after = checked.heartbeat_seconds, checked.stale_after_seconds
    if heartbeat <= 0 or stale_after <= heartbeat:
        # A trial whose heartbeat is refreshed less often than it is declared stale would be retried while it runs.
        raise ConfigError(f"hydra.sweeper.stale_after_seconds={stale_after} must exceed "
                          f"hydra.sweeper.heartbeat_seconds={heartbeat}, which must be above 0")
    storage_setting(checked.storage, checked.storage_env)  # both set, or an unset variable
    return checked


def search_finished(settings: Mapping[str, Any], trials: Sequence[FrozenTrial], n_trials: int) -> bool:
    """Whether the sampler has nothing to propose before ``n_trials``: coordinate descent converged (logged),
    or every next point is being run by another worker (this one waits for them, then asks again)."""
    if settings["sampler"] != "coordinate":
        return False
    objectives = dict(settings["objectives"])
    sampler = build_sampler("coordinate", dict(settings["sampler_kwargs"] or {}), 0, settings.get("coordinate"),
                            objectives)
    progress = sampler.progress(trials, list(objectives.values()))
    if progress.state == CONVERGED and (settings["study_name"], progress.trial) not in _CONVERGED_LOGGED:
        _CONVERGED_LOGGED.add((settings["study_name"], progress.trial))
        log.info("coordinate descent converged after %d points: no single-parameter move from trial %s (%s) "
                 "improves %s = %s; the study stops short of n_trials=%d", progress.points, progress.trial,
                 ", ".join(f"{name}={value}" for name, value in progress.point.items()),
                 sampler.expression or "the objective", describe(progress.score), n_trials)
    return progress.state != PROPOSE


def redact_config(config: DictConfig, storage: str | None) -> None:
    """Put the redacted storage URL in the hydra config: every file written from it shows no password.

    ``multirun.yaml`` is this config; each trial's ``.hydra/hydra.yaml`` is composed again from its
    ``hydra.overrides.hydra``, so the redacted URL goes there too (last, so it wins over a URL set
    in a config file). W&B records the command line of the trials run in this process: redacted too.
    """
    if not is_url(storage) or redact(str(storage)) == storage:
        return
    shown = redact(str(storage))
    with read_write(config), open_dict(config):
        config.hydra.sweeper.storage = shown
        kept = [line for line in config.hydra.overrides.hydra if override_key(line) != STORAGE_KEY]
        config.hydra.overrides.hydra = [*kept, f"{STORAGE_KEY}={format_value(shown)}"]
    sys.argv[:] = [redact(arg) for arg in sys.argv]
