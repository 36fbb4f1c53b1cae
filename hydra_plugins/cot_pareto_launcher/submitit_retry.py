"""Hydra's submitit launchers, SLURM and its local stand-in, with what a sweep needs from a cluster: a job that ends
without a result (pre-empted, past its time limit, killed, its node lost) is submitted again, and a trial whose
``retries`` are used up is recorded as failed in its run dir, so the sweep goes on and a rerun resumes it.

Selected with ``hydra/launcher=slurm`` (``conf/hydra/launcher/slurm.yaml``, one job per trial) or
``hydra/launcher=slurm_local`` (the same settings, run on this machine by submitit's local executor, which
ignores the SLURM-only ones). A retried trial runs
again in the same run dir; its finished stages come back from the stage cache, so it redoes only the stage it was
cut off in. Needs the ``slurm`` extra (``pip install -e '.[slurm]'``); without it these classes are not defined and
``sweep.cli`` says which extra to install.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf, open_dict

from sweep.run_record import RUNNING, read_metrics, write_metrics

log = logging.getLogger(__name__)

try:
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
except ImportError:  # the slurm extra is not installed
    BaseSubmititLauncher = None


def run_dir_of(config: Any, overrides: Sequence[str], job_num: int, hydra_context: Any) -> Path:
    """The run dir Hydra gives job ``job_num`` with ``overrides`` (its sweep dir and subdir, resolved)."""
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config.hydra.job):
        sweep_config.hydra.job.num = job_num
    return Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)


def record_lost_job(run_dir: Path, reason: str) -> None:
    """Mark the trial in ``run_dir`` failed with ``reason``, unless its job got to write how it ended."""
    metrics = read_metrics(run_dir)
    if metrics.get("status") != RUNNING:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    write_metrics(run_dir, {**metrics, "status": "failed", "error": reason, "run_dir": str(run_dir)})


if BaseSubmititLauncher is not None:

    class _RetryingLauncher(BaseSubmititLauncher):
        def __init__(self, retries: int = 2, **params: Any) -> None:
            super().__init__(**params)
            self.retries = int(retries)

        def _executor(self):
            """The executor ``BaseSubmititLauncher.launch`` builds, from the same parameters, except that the
            settings beyond submitit's shared ones are always SLURM's (``slurm_partition``): the local executor
            ignores them, so ``slurm_local`` takes a SLURM command line as it is."""
            import submitit

            init = {"folder": self.params["submitit_folder"]}
            if "max_num_timeout" in self.params:
                init[f"{self._EXECUTOR}_max_num_timeout"] = self.params["max_num_timeout"]
            executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
            base = set(OmegaConf.structured(BaseQueueConf).keys())
            executor.update_parameters(**{key if key in base else f"slurm_{key}": value
                                          for key, value in self.params.items()
                                          if key not in ("submitit_folder", "max_num_timeout")})
            return executor

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            from hydra.core.singleton import Singleton
            from hydra.core.utils import filter_overrides

            assert self.config is not None and job_overrides
            executor = self._executor()
            Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
            params = []
            for number, overrides in enumerate(job_overrides, start=initial_job_idx):
                log.info("\t#%d : %s", number, " ".join(filter_overrides(overrides)))
                params.append((list(overrides), "hydra.sweep.dir", number, f"job_id_for_{number}",
                               Singleton.get_state()))
            jobs = executor.map_array(self, *zip(*params))
            log.info("submitit %s: %d job(s) %s", self._EXECUTOR, len(jobs), ", ".join(job.job_id for job in jobs))
            # In order: a job found dead is submitted again while the later ones go on running.
            return [self._result(executor, job, job_params) for job, job_params in zip(jobs, params)]

        def _result(self, executor, job, params: tuple) -> JobReturn:
            from submitit.core.utils import FailedJobError, UncompletedJobError

            overrides, number = params[0], params[2]
            for attempt in range(self.retries + 1):
                if self.result_wait_s is not None:
                    job._results_timeout_s = self.result_wait_s  # noqa: SLF001 - see LocalLauncher
                try:
                    return job.results()[0]
                except FailedJobError as err:  # the job ran and raised outside the trial: running it again would too
                    lines = [line for line in str(err).splitlines() if line.strip() and not line.startswith("-")]
                    log.error("trial #%d: job %s failed: %s", number, job.job_id, lines[-1] if lines else err)
                    return JobReturn(overrides=overrides, status=JobStatus.FAILED,
                                     _return_value=RuntimeError(f"job {job.job_id} failed; see {job.paths.stderr}"))
                except UncompletedJobError as err:
                    reason = f"job {job.job_id} ended without a result (state {job.state})"
                    detail = str(err).strip().splitlines()[-1:] or [""]
                    if attempt == self.retries:
                        break
                    log.warning("trial #%d: %s; submitting it again (retry %d of %d): %s", number, reason,
                                attempt + 1, self.retries, detail[0])
                    job = executor.submit(self, *params)
                    log.info("trial #%d: resubmitted as job %s", number, job.job_id)
            reason = f"{reason}, {self.retries + 1} time(s); rerun the sweep to try it again"
            log.error("trial #%d failed: %s", number, reason)
            run_dir = run_dir_of(self.config, overrides, number, self.hydra_context)
            record_lost_job(run_dir, reason)
            # Like a trial that fails inside its job: the run dir says how it ended, the sweep goes on.
            return JobReturn(overrides=overrides, working_dir=str(run_dir), status=JobStatus.COMPLETED)

    class SlurmLauncher(_RetryingLauncher):
        _EXECUTOR = "slurm"
        places_jobs_elsewhere = True  # the jobs' cores are SLURM's to give, not this machine's to share out
        result_wait_s = None  # submitit's wait for a result file a shared filesystem has not shown yet

    class LocalLauncher(_RetryingLauncher):
        _EXECUTOR = "local"
        places_jobs_elsewhere = False
        # A local job's result is on this disk before its process ends: one that has none after the process
        # is gone never will, and is retried at once instead of after submitit's 15 s wait for a slow filesystem.
        result_wait_s = 0
