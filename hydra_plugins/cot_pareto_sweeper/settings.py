"""The sweeper's settings, checked before any trial, and the hydra config it writes with the storage redacted.

A bad setting is a ConfigError naming ``hydra.sweeper.<field>``: the sweeper prints it as one line
and exits with status 2 before it opens the storage or starts a trial. Without these checks a
negative ``n_trials`` ran nothing and exited 0, and a bad sampler failed after the first trials.
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Mapping
from typing import Any

import optuna
from omegaconf import DictConfig, open_dict, read_write

from sweep.cli import override_key
from sweep.search_space import format_value
from sweep.storage import is_url, redact, storage_setting
from sweep.study import DIRECTIONS
from training.errors import ConfigError

SAMPLERS = ("tpe", "nsgaii", "random", "grid")
STORAGE_KEY = "hydra.sweeper.storage"


def build_sampler(name: str, kwargs: dict[str, Any], seed: int) -> optuna.samplers.BaseSampler:
    # The grid is enqueued up front (see ``enqueue_grid``); anything asked beyond it is random.
    classes = {"tpe": optuna.samplers.TPESampler, "nsgaii": optuna.samplers.NSGAIISampler,
               "random": optuna.samplers.RandomSampler, "grid": optuna.samplers.RandomSampler}
    if name not in classes:
        raise ConfigError(f"hydra.sweeper.sampler={name!r} is not one of {', '.join(SAMPLERS)}")
    try:
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


def _number(settings: Mapping[str, Any], key: str) -> float:
    value = settings[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"hydra.sweeper.{key}={value!r} is not a number")
    return value


def check_settings(settings: Mapping[str, Any]) -> None:
    """Every setting the sweep reads, checked at once: ConfigError naming the first bad one."""
    name = settings["sampler"]
    build_sampler(name, dict(settings.get("sampler_kwargs") or {}), 0)  # the sampler and its kwargs
    n_trials = settings.get("n_trials")
    if n_trials is None and name != "grid":
        raise ConfigError("hydra.sweeper.n_trials is required unless sampler=grid")
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1):
        raise ConfigError(f"hydra.sweeper.n_trials={n_trials!r} must be a whole number of at least 1 "
                          "(the finished trials the study should end with)")
    n_jobs = settings.get("n_jobs")
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or (n_jobs < 1 and n_jobs != -1)):
        raise ConfigError(f"hydra.sweeper.n_jobs={n_jobs!r} must be at least 1, -1 (one per core) or null")
    if _number(settings, "n_workers") < 1 or int(settings["n_workers"]) != settings["n_workers"]:
        raise ConfigError(f"hydra.sweeper.n_workers={settings['n_workers']!r} must be a whole number of at least 1")
    heartbeat, stale_after = _number(settings, "heartbeat_seconds"), _number(settings, "stale_after_seconds")
    if heartbeat <= 0 or stale_after <= heartbeat:
        # A trial whose heartbeat is refreshed less often than it is declared stale would be retried while it runs.
        raise ConfigError(f"hydra.sweeper.stale_after_seconds={stale_after} must exceed "
                          f"hydra.sweeper.heartbeat_seconds={heartbeat}, which must be above 0")
    objectives = settings.get("objectives") or {}
    if not objectives:
        raise ConfigError("hydra.sweeper.objectives is empty: name the metrics.json keys to optimise")
    for metric, direction in objectives.items():
        if direction not in DIRECTIONS:
            raise ConfigError(f"hydra.sweeper.objectives.{metric}={direction!r} is not one of {', '.join(DIRECTIONS)}")
    if not str(settings.get("study_name") or "").strip():
        raise ConfigError("hydra.sweeper.study_name is empty")
    storage_setting(settings.get("storage"), settings.get("storage_env"))  # both set, or an unset variable


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
