"""A Hydra sweeper that runs a multi-objective Optuna study with ask/tell.

Each trial is one Hydra job (run dir ``<sweep dir>/trial_NNNN``) launched by the configured
launcher; its objectives are read back from the run dir's ``metrics.json``, never from
memory. A trial whose config does not compose, that raises, or whose metrics are missing
or not finite is told FAIL with the reason; the search goes on. Ctrl-C marks the trials
in flight as interrupted and queues their parameters, so re-running the command resumes.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState

from sweep.cli import prepare_overrides
from sweep.pipeline import HEADLINE_METRICS
from sweep.run_record import RUNNING, completed, read_metrics
from sweep.search_space import SearchSpace, build_space, grid_points
from sweep.study import (ERROR, HEARTBEAT, INTERRUPTED, REPEAT_OF, RETRY_OF, WORKER, Heartbeat, completed_twin, counted,
                         finished, load_study, open_storage, parse_worker, pid_alive, recover_stale,
                         worker_id)
from sweep.sweep_summary import SUMMARY_CSV, row_from_trial, write_summary
from training.atomic import file_lock
from training.errors import ConfigError
from training.hardware import usable_cores

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "nsgaii", "random", "grid")


def build_sampler(name: str, kwargs: dict[str, Any], seed: int) -> optuna.samplers.BaseSampler:
    # The grid is enqueued up front (see ``enqueue_grid``); anything asked beyond it is random.
    classes = {"tpe": optuna.samplers.TPESampler, "nsgaii": optuna.samplers.NSGAIISampler,
               "random": optuna.samplers.RandomSampler, "grid": optuna.samplers.RandomSampler}
    if name not in classes:
        raise ConfigError(f"hydra.sweeper.sampler={name!r} is not one of {', '.join(SAMPLERS)}")
    return classes[name](seed=seed, **kwargs)


def ask_seed(seed: int, n_trials: int) -> int:
    """The sampler's seed for the ask after ``n_trials`` trials: a hash, not ``seed + n_trials``.

    The sampler is rebuilt for every ask so that workers sharing a study draw different points
    and a resumed study continues deterministically. With ``seed + n_trials``, a study seeded
    43 would replay the draws of one seeded 42, one trial behind; hashed seeds do not overlap.
    """
    digest = hashlib.sha256(f"{seed}:{n_trials}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def enqueue_grid(study: optuna.Study, space: SearchSpace) -> int:
    """Queue every grid point once, in order; a resumed study skips the points it already has.

    Optuna's GridSampler re-samples the points of failed trials and stops the study from
    inside ``tell``; a queue runs each point exactly once and lets workers share it.
    """
    grid = grid_points(space)
    for values in itertools.product(*grid.values()):
        study.enqueue_trial(dict(zip(grid, values)), skip_if_exists=True)
    return math.prod(len(values) for values in grid.values())


BASELINE_DIR = "baseline"


def override_key(line: str) -> str:
    """``+level='1'`` -> ``level``: what an override sets, whatever its prefix."""
    return line.partition("=")[0].lstrip("+~")


def claim(marker: Path) -> bool:
    """Take the baseline for this worker, unless a live worker on this host (or any on another) holds it.

    Called under the ask lock. A claim by a dead process on this host is taken over; a baseline that
    failed is retried by the next run of the command.
    """
    if marker.is_file():
        host, pid = parse_worker(marker.read_text().strip())
        if host != socket.gethostname() or (pid is not None and pid != os.getpid() and pid_alive(pid)):
            return False
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(worker_id())
    return True


def read_outcome(run_dir: Path, result: JobReturn | None, metrics: Sequence[str]) -> tuple[list[float] | None, str | None, dict]:
    """(objective values, None) for a completed trial, else (None, reason); plus its metrics.json."""
    summary = read_metrics(run_dir)
    if summary["status"] == RUNNING:  # no metrics.json: the trial never got to write one
        if result is not None and result.status == JobStatus.FAILED:
            err = result._return_value  # noqa: SLF001 - .return_value would re-raise it
            return None, f"{type(err).__name__}: {err}", {}
        return None, f"no metrics.json in {run_dir}", {}
    if summary.get("status") != "completed":
        return None, summary.get("error") or f"trial ended with status {summary.get('status')!r}", summary
    values = [summary.get(name) for name in metrics]
    bad = [name for name, value in zip(metrics, values) if not isinstance(value, int | float) or not math.isfinite(value)]
    if bad:
        return None, f"metrics.json has no finite {', '.join(bad)} (did the eval stage run?)", summary
    return [float(v) for v in values], None, summary


class ParetoSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.params = settings.pop("params") or {}
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    # -- settings derived from the config -------------------------------------------------
    def _batch_size(self) -> int:
        n_jobs = self.settings.get("n_jobs") or OmegaConf.select(self.config, "hydra.launcher.n_jobs") or 1
        return max(1, usable_cores() if n_jobs == -1 else int(n_jobs))

    def _thread_override(self, batch: int) -> list[str]:
        if OmegaConf.select(self.config, "hardware.num_threads") is not None:
            return []  # the user chose
        threads = max(1, usable_cores() // (max(1, int(self.settings["n_workers"])) * batch))
        return [f"hardware.num_threads={threads}"]

    @contextmanager
    def _ask_lock(self, sweep_dir: Path) -> Iterator[None]:
        """Serialise budget check + ask (and summary writes) between the workers on this machine.

        Across machines sharing a database the budget check can race, and a study may end
        with up to (workers - 1) trials more than ``n_trials``, as with Optuna's own
        ``MaxTrialsCallback``.
        """
        with file_lock(sweep_dir / ".ask.lock"):
            yield

    # -- the search ------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        assert self.config is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        space = build_space(self.params, prepare_overrides(arguments))
        if not space.distributions:
            raise ConfigError("the search space is empty: declare hydra.sweeper.params or pass choice()/interval() overrides")
        objectives = dict(self.settings["objectives"])
        study = load_study(self.settings["study_name"], open_storage(self.settings["storage"], sweep_dir),
                           list(objectives.values()), list(objectives))
        n_trials = self.settings["n_trials"]
        if self.settings["sampler"] == "grid":
            with self._ask_lock(sweep_dir):
                grid_size = enqueue_grid(study, space)
            n_trials = grid_size if n_trials is None else n_trials
        elif n_trials is None:
            raise ConfigError("hydra.sweeper.n_trials is required unless sampler=grid")
        batch_size = self._batch_size()
        log.info("study %s in %s: %d trials wanted, %d finished, sampler %s, %d trial(s) at a time; "
                 "search space: %s", study.study_name, sweep_dir, n_trials, finished(study.get_trials(deepcopy=False)),
                 self.settings["sampler"], batch_size, ", ".join(space.distributions))
        returns: list[Sequence[JobReturn]] = []
        if self.settings.get("baseline"):
            self._run_baseline(list(self.settings["baseline"]), space, sweep_dir, list(objectives))
        while True:
            with self._ask_lock(sweep_dir):
                recover_stale(study, float(self.settings["stale_after_seconds"]))
                trials = study.get_trials(deepcopy=False)
                room = n_trials - counted(trials)
                if room <= 0:
                    break
                study.sampler = build_sampler(self.settings["sampler"], dict(self.settings["sampler_kwargs"] or {}),
                                              ask_seed(int(self.settings["seed"]), len(trials)))
                asked = []
                for _ in range(min(room, batch_size)):
                    trial = study.ask(dict(space.distributions))
                    twin = completed_twin(trials, trial.params) if self.settings["reuse_repeats"] else None
                    if twin is not None:
                        self._reuse(study, trial, twin)
                        continue
                    trial.set_user_attr(WORKER, worker_id())
                    trial.set_user_attr(HEARTBEAT, time.time())
                    asked.append(trial)
            returns.append(self._run_batch(study, asked, space, sweep_dir, list(objectives)))
            self._write_summary(study, sweep_dir)
        self._write_summary(study, sweep_dir)
        self._report(study, sweep_dir)
        return returns

    def _run_batch(self, study: optuna.Study, asked: list[optuna.Trial], space: SearchSpace, sweep_dir: Path,
                   metrics: list[str]) -> Sequence[JobReturn]:
        """Compose, launch and tell one batch of trials."""
        jobs: list[tuple[optuna.Trial, list[str]]] = []
        for trial in asked:
            subdir = f"trial_{trial.number:04d}"
            trial.set_user_attr("run_dir", str(sweep_dir / subdir))
            tried = space.overrides(trial.params)
            trial.set_user_attr("overrides", tried)  # what it tried, should it not compose
            try:
                overrides = prepare_overrides(tried) + self._thread_override(len(asked)) \
                    + [f"hydra.sweep.subdir={subdir}"]
                trial.set_user_attr("overrides", overrides)
                self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            except Exception as err:  # noqa: BLE001 - a config that does not compose fails this trial only
                self._fail(study, trial, f"config does not compose: {type(err).__name__}: {err}")
                continue
            log.info("trial %d (%s): %s -> %s", trial.number, worker_id(),
                     " ".join(tried[len(space.fixed):]), sweep_dir / subdir)
            jobs.append((trial, overrides))
        if not jobs:
            return []
        try:
            with Heartbeat([trial for trial, _ in jobs], float(self.settings["heartbeat_seconds"])):
                results = self.launcher.launch([overrides for _, overrides in jobs], initial_job_idx=jobs[0][0].number)
        except BaseException as err:
            if not isinstance(err, KeyboardInterrupt):
                raise
            for trial, _ in jobs:
                trial.set_user_attr(INTERRUPTED, True)
                self._fail(study, trial, "interrupted (Ctrl-C); its parameters are queued for the next run")
                study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})
            self._write_summary(study, sweep_dir)
            raise
        for (trial, _), result in zip(jobs, results):
            values, error, summary = read_outcome(sweep_dir / f"trial_{trial.number:04d}", result, metrics)
            kept = ("level", *metrics, *HEADLINE_METRICS, "n_train", "train_seconds")
            trial.set_user_attr("metrics", {key: summary[key] for key in kept if key in summary})
            if error is not None:
                self._fail(study, trial, error)
                continue
            study.tell(trial, values)
            log.info("trial %d complete: %s", trial.number, ", ".join(f"{m} {v:.4g}" for m, v in zip(metrics, values)))
        return results

    def _run_baseline(self, overrides: list[str], space: SearchSpace, sweep_dir: Path, metrics: list[str]) -> None:
        """Evaluate the base model once per study (``<sweep dir>/baseline``); a failure is logged, not fatal."""
        run_dir = sweep_dir / BASELINE_DIR
        with self._ask_lock(sweep_dir):
            if completed(run_dir) or not claim(run_dir / ".worker"):
                return
        keys = {override_key(line) for line in overrides}
        job = prepare_overrides([line for line in space.fixed if override_key(line) not in keys] + overrides) \
            + self._thread_override(1) + [f"hydra.sweep.subdir={BASELINE_DIR}"]
        log.info("baseline (%s): %s -> %s", worker_id(), " ".join(overrides), run_dir)
        try:
            self.hydra_context.config_loader.load_sweep_config(self.config, job)
            result = self.launcher.launch([job], initial_job_idx=0)[0]
        except Exception as err:  # noqa: BLE001 - the search does not need the baseline to run
            log.error("baseline failed: config does not compose or launch: %s: %s", type(err).__name__, err)
            return
        values, error, _ = read_outcome(run_dir, result, metrics)
        if error is not None:
            log.error("baseline failed: %s (the trials run without it)", error)
        else:
            log.info("baseline complete: %s", ", ".join(f"{m} {v:.4g}" for m, v in zip(metrics, values)))

    def _reuse(self, study: optuna.Study, trial: optuna.Trial, twin: FrozenTrial) -> None:
        original = twin.user_attrs.get(REPEAT_OF, twin.number)
        for key in ("run_dir", "metrics", "overrides"):
            if key in twin.user_attrs:
                trial.set_user_attr(key, twin.user_attrs[key])
        trial.set_user_attr(REPEAT_OF, original)
        study.tell(trial, twin.values)
        log.info("trial %d repeats trial %d's parameters: its result reused, nothing run", trial.number, original)

    def _fail(self, study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
        trial.set_user_attr(ERROR, reason)
        study.tell(trial, state=TrialState.FAIL)
        log.error("trial %d failed: %s", trial.number, reason)

    def _write_summary(self, study: optuna.Study, sweep_dir: Path) -> None:
        # Under the lock, so the last write on this machine reflects every trial told before it.
        with self._ask_lock(sweep_dir):
            write_summary([row_from_trial(t) for t in study.get_trials(deepcopy=False)], sweep_dir / SUMMARY_CSV)

    def _report(self, study: optuna.Study, sweep_dir: Path) -> None:
        trials = study.get_trials(deepcopy=False)
        states = {state.name: sum(1 for t in trials if t.state == state) for state in TrialState}
        front = [t.number for t in study.best_trials] if states.get("COMPLETE") else []
        log.info("study %s: %s; Pareto front: trials %s; summary: %s; plots and report: python -m analysis report %s",
                 study.study_name, ", ".join(f"{n} {s.lower()}" for s, n in states.items() if n), front or "none yet",
                 sweep_dir / SUMMARY_CSV, sweep_dir)
