"""Registers ``hydra/sweeper=pareto_optuna``: a multi-objective Optuna search driven by ask/tell.

Selected by ``conf/search/pareto.yaml`` (``python -m sweep -m +search=pareto``). Every
field can be overridden as ``hydra.sweeper.<field>=...``.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class ParetoSweeperConf:
    _target_: str = "hydra_plugins.cot_pareto_sweeper.pareto_sweeper.ParetoSweeper"
    study_name: str = "pareto"
    # null: an Optuna journal file in the sweep dir; a path: a journal file there;
    # a URL (sqlite:///study.db, postgresql://user@host/db): an RDB storage. A password in the URL
    # is shown as *** in every file and log; PGPASSWORD, ~/.pgpass or storage_env keep it off the command line.
    storage: Optional[str] = None
    # The name of an environment variable holding the storage URL (instead of storage).
    storage_env: Optional[str] = None
    # Finished trials the study should end with (interrupted ones are retried, not counted);
    # null: the grid's size, with sampler=grid.
    n_trials: Optional[int] = None
    sampler: str = "tpe"  # tpe | nsgaii | random | grid
    sampler_kwargs: Dict[str, Any] = field(default_factory=dict)
    seed: int = 42
    # metrics.json keys to optimise, in order, with their directions.
    objectives: Dict[str, str] = field(
        default_factory=lambda: {"accuracy": "maximize", "mean_think_tokens": "minimize"})
    # Trials launched together by this process (null: the launcher's n_jobs, 1 for the basic launcher).
    n_jobs: Optional[int] = None
    # Processes sharing the study on this machine: each trial then gets cores / (n_workers * n_jobs)
    # CPU threads unless hardware.num_threads is set.
    n_workers: int = 1
    heartbeat_seconds: float = 30.0
    # A RUNNING trial whose heartbeat is older than this (or whose worker on this host is dead) is
    # marked failed and its parameters queued again, by a live worker: one whose own trials are done
    # waits while other workers' trials run. Must exceed heartbeat_seconds.
    stale_after_seconds: float = 300.0
    # A proposed point that a finished trial already had reuses that trial's result instead of
    # running again (a trial's seed is fixed, so the rerun would match); false runs every trial.
    reuse_repeats: bool = True
    # Overrides of a no-adapter evaluation run once per study into <sweep dir>/baseline, before the
    # trials: the base model's point, against which analysis measures savings (null: no baseline).
    baseline: Optional[List[str]] = None
    params: Dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="pareto_optuna", node=ParetoSweeperConf,
                             provider="cot_pareto")
