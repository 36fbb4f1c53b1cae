"""A Hydra sweeper that runs a multi-objective Optuna study with ask/tell.

Each trial is one Hydra job (run dir ``<sweep dir>/trial_NNNN``) launched by the configured
launcher; its objectives are read back from the run dir's ``metrics.json``, never from
memory. A trial whose config does not compose, that raises, or whose metrics are missing
or not finite is told FAIL with the reason; the search goes on. Ctrl-C marks the trials
in flight as interrupted and queues their parameters, so re-running the command resumes.
A worker with nothing left to ask stays while other workers' trials run, and retries any
whose worker dies. Bad settings and storages stop the sweep before any trial, as one line.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial

from sweep.cli import override_key, prepare_overrides
from sweep.run_record import completed
from sweep.search.space import SearchSpace, build_space
from sweep.search.storage import describe, first_line, storage_errors, storage_setting
from sweep.search.study import (
    HEARTBEAT,
    INTERRUPTED,
    RETRY_OF,
    WORKER,
    Heartbeat,
    completed_twin,
    counted,
    finished,
    load_study,
    open_storage,
    recover_stale,
    running_elsewhere,
    worker_id,
)
from sweep.search.summary_csv import SUMMARY_CSV, row_from_trial, write_summary
from sweep.search.sweeper_settings import (  # noqa: F401 - SAMPLERS and the rest are re-exported
    SAMPLERS,
    ask_seed,
    build_sampler,
    check_settings,
    redact_config,
    search_finished,
)
from sweep.search.sweeper_trials import BASELINE_DIR, claim, enqueue_grid, fail, log_report, read_outcome, reuse  # noqa: F401
from sweep.trial_record import EVAL_MODE, HEADLINE_METRICS
from training.common.atomic import file_lock
from training.common.errors import ConfigError, CotParetoError
from training.models.hardware import usable_cores

log = logging.getLogger(__name__)


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
        # joblib's n_jobs, or a SLURM array's parallelism: the trials asked together and launched at once.
        n_jobs = self.settings.get("n_jobs") or OmegaConf.select(self.config, "hydra.launcher.n_jobs") \
            or OmegaConf.select(self.config, "hydra.launcher.array_parallelism") or 1
        return max(1, usable_cores() if n_jobs == -1 else int(n_jobs))

    def _machine_share(self, batch: int) -> list[str]:
        """How the trials that run at once on this machine share it: the cores, and the GPUs in equal slots."""
        if getattr(self.launcher, "places_jobs_elsewhere", False):
            return []  # a SLURM job's trial takes what its allocation gives it, not a share of this machine
        at_once = max(1, int(self.settings["n_workers"])) * batch
        share = [f"++hardware.concurrent_trials={at_once}"] if at_once > 1 else []
        if OmegaConf.select(self.config, "hardware.num_threads") is None:  # else the user chose
            share.append(f"hardware.num_threads={max(1, usable_cores() // at_once)}")
        return share

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
        """Run the study. A user error (a bad setting, a storage that cannot be opened) is one line, status 2."""
        from sqlalchemy.exc import DBAPIError

        self._label = "the study storage"
        try:
            return self._sweep(arguments)
        except CotParetoError as err:
            message = str(err)
        except DBAPIError as err:  # the database went away mid-sweep: finished trials are in it, a rerun resumes
            message = f"hydra.sweeper.storage={self._label}: {first_line(err)}; rerun the command to resume"
        # Hydra prints an exception from a sweeper as a traceback and exits 1; SystemExit passes through it.
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        raise SystemExit(2)

    def _sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        assert self.config is not None
        check_settings(self.settings)
        space = build_space(self.params, prepare_overrides(arguments))
        if not space.distributions:
            raise ConfigError("the search space is empty: declare hydra.sweeper.params or pass choice()/interval() overrides")
        storage = storage_setting(self.settings["storage"], self.settings.get("storage_env"))
        sweep_dir = Path(self.config.hydra.sweep.dir)
        self._label = describe(storage, sweep_dir)
        redact_config(self.config, self.settings["storage"])
        try:
            sweep_dir.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        except OSError as err:
            raise ConfigError(f"hydra.sweep.dir={sweep_dir}: cannot write there: {err.strerror or err}") from None
        objectives = dict(self.settings["objectives"])
        with storage_errors(self._label):
            study = load_study(self.settings["study_name"], open_storage(storage, sweep_dir),
                               list(objectives.values()), list(objectives))
        n_trials = self.settings["n_trials"]
        if self.settings["sampler"] == "grid":
            with self._ask_lock(sweep_dir):
                grid_size = enqueue_grid(study, space)
            n_trials = grid_size if n_trials is None else n_trials
        batch_size = self._batch_size()
        log.info("study %s in %s (storage %s): %d trials wanted, %d finished, sampler %s, %d trial(s) at a time; "
                 "search space: %s", study.study_name, sweep_dir, self._label, n_trials,
                 finished(study.get_trials(deepcopy=False)), self.settings["sampler"], batch_size,
                 ", ".join(space.distributions))
        returns: list[Sequence[JobReturn]] = []
        if self.settings.get("baseline"):
            self._run_baseline(list(self.settings["baseline"]), space, sweep_dir, list(objectives))
        waiting_for: list[int] = []
        while True:
            with self._ask_lock(sweep_dir):
                recover_stale(study, float(self.settings["stale_after_seconds"]))
                trials = study.get_trials(deepcopy=False)
                room = n_trials - counted(trials)
                if room > 0 and search_finished(self.settings, trials, n_trials):
                    room = 0  # coordinate descent converged, or waits for other workers' trials
                others = running_elsewhere(trials, worker_id()) if room <= 0 else []
                if room <= 0 and not others:
                    break
                asked = self._ask(study, space, trials, min(room, batch_size)) if room > 0 else []
            if room <= 0:
                waiting_for = self._wait(others, waiting_for)
                continue
            returns.append(self._run_batch(study, asked, space, sweep_dir, list(objectives)))
            self._write_summary(study, sweep_dir)
        self._write_summary(study, sweep_dir)
        log_report(study, sweep_dir)
        return returns

    def _ask(self, study: optuna.Study, space: SearchSpace, trials: list[FrozenTrial], count: int) -> list[optuna.Trial]:
        """Up to ``count`` new trials for this worker; a point a finished trial had reuses its result instead."""
        study.sampler = build_sampler(self.settings["sampler"], dict(self.settings["sampler_kwargs"] or {}),
                                      ask_seed(int(self.settings["seed"]), len(trials)),
                                      self.settings.get("coordinate"), dict(self.settings["objectives"]))
        asked = []
        for _ in range(count):
            trial = study.ask(dict(space.distributions))
            twin = completed_twin(trials, trial.params) if self.settings["reuse_repeats"] else None
            if twin is not None:
                reuse(study, trial, twin)
                continue
            trial.set_user_attr(WORKER, worker_id())
            trial.set_user_attr(HEARTBEAT, time.time())
            asked.append(trial)
        return asked

    def _wait(self, others: list[FrozenTrial], waiting_for: list[int]) -> list[int]:
        """The budget is used up but other workers' trials still run: stay, so that one whose worker dies
        (a dead pid on this host, or a heartbeat older than stale_after_seconds) is retried here, now."""
        numbers = sorted(t.number for t in others)
        if numbers != waiting_for:
            log.info("no trial left to ask; waiting for trial(s) %s of other workers (%s): one whose worker stops "
                     "is retried here", ", ".join(map(str, numbers)),
                     ", ".join(sorted({str(t.user_attrs.get(WORKER)) for t in others})))
        time.sleep(min(2.0, float(self.settings["heartbeat_seconds"])))  # a dead pid here is seen within 2 s
        return numbers

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
                overrides = prepare_overrides(tried) + self._machine_share(len(asked)) \
                    + [f"hydra.sweep.subdir={subdir}"]
                trial.set_user_attr("overrides", overrides)
                self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            except Exception as err:  # noqa: BLE001 - a config that does not compose fails this trial only
                fail(study, trial, f"config does not compose: {type(err).__name__}: {err}")
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
                fail(study, trial, "interrupted (Ctrl-C); its parameters are queued for the next run")
                study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})
            self._write_summary(study, sweep_dir)
            raise
        for (trial, _), result in zip(jobs, results):
            values, error, summary = read_outcome(sweep_dir / f"trial_{trial.number:04d}", result, metrics)
            kept = ("level", *metrics, *HEADLINE_METRICS, "n_train", "train_seconds")
            # How the scores were measured (extractor, thinking mode) lives in the eval record: kept beside them.
            measured = {key: value for key, value in (summary.get("eval") or {}).items() if key in EVAL_MODE}
            trial.set_user_attr("metrics", {**{key: summary[key] for key in kept if key in summary}, **measured})
            if error is not None:
                fail(study, trial, error)
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
            + self._machine_share(1) + [f"hydra.sweep.subdir={BASELINE_DIR}"]
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

    def _write_summary(self, study: optuna.Study, sweep_dir: Path) -> None:
        # Under the lock, so the last write on this machine reflects every trial told before it.
        with self._ask_lock(sweep_dir):
            write_summary([row_from_trial(t) for t in study.get_trials(deepcopy=False)], sweep_dir / SUMMARY_CSV)
