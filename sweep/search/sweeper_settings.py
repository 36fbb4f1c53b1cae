"""The sweeper's settings, checked before any trial, and the hydra config it writes with the storage redacted.

A bad setting is a ConfigError naming ``hydra.sweeper.<field>``: the sweeper prints it as one line
and exits with status 2 before it opens the storage or starts a trial. Without these checks a
negative ``n_trials`` ran nothing and exited 0, and a bad sampler failed after the first trials.
Each field's own rule is declared on the sweeper's schema (:class:`~.config.ParetoSweeperConf`);
the rules that span fields are here.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping
from typing import Any

import optuna
from omegaconf import DictConfig, open_dict, read_write

from hydra_plugins.cot_pareto_sweeper.config import SAMPLERS, ParetoSweeperConf  # noqa: F401 (re-exported)
from sweep.cli import override_key
from sweep.search.space import format_value
from sweep.search.storage import is_url, redact, storage_setting
from training.common.errors import ConfigError
from training.config.settings import read_settings

STORAGE_KEY = "hydra.sweeper.storage"


def build_sampler(name: str, kwargs: dict[str, Any], seed: int) -> optuna.samplers.BaseSampler:
    # The grid is enqueued up front (see ``enqueue_grid``); anything asked beyond it is random.
    classes = {"tpe": optuna.samplers.TPESampler, "nsgaii": optuna.samplers.NSGAIISampler,
               "random": optuna.samplers.RandomSampler, "grid": optuna.samplers.RandomSampler}
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


def check_settings(settings: Mapping[str, Any]) -> ParetoSweeperConf:
    """Every setting the sweep reads, checked at once: ConfigError naming the first bad one; the settings."""
    checked = read_settings(ParetoSweeperConf, settings, "hydra.sweeper")  # each field's own rule
    build_sampler(checked.sampler, dict(checked.sampler_kwargs or {}), 0)  # the sampler's keywords
    if checked.n_trials is None and checked.sampler != "grid":
        raise ConfigError("hydra.sweeper.n_trials is required unless sampler=grid")
    heartbeat, stale_after = checked.heartbeat_seconds, checked.stale_after_seconds
    if heartbeat <= 0 or stale_after <= heartbeat:
        # A trial whose heartbeat is refreshed less often than it is declared stale would be retried while it runs.
        raise ConfigError(f"hydra.sweeper.stale_after_seconds={stale_after} must exceed "
                          f"hydra.sweeper.heartbeat_seconds={heartbeat}, which must be above 0")
    storage_setting(checked.storage, checked.storage_env)  # both set, or an unset variable
    return checked


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
