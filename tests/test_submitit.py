"""Trials as submitit jobs (``hydra/launcher=slurm_local``: the SLURM launcher's local stand-in), end to end.

Each job is a process of its own, as a SLURM job would be; the sweeps are started as users start them. A grid and a
``+search=smoke`` study complete; a job killed mid-trial (its trial process and the job's controller, as SLURM
ends a pre-empted job) is submitted again and its trial completes, while the finished trial is left alone; and a
grid's summary and report are those of the same grid under Hydra's basic launcher.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from analysis.__main__ import main as analysis_main
from hydra_plugins.cot_pareto_launcher.submitit_retry import record_lost_job
from sweep.run_record import RESERVED_BYTES, read_metrics, reserve_metrics
from sweep.search.summary_csv import read_summary
from tests.test_sweeps import FAST, REPO, _run, _trials

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the slurm extra (hydra-submitit-launcher)")

LOCAL = "hydra/launcher=slurm_local"
GRID = ["+level=4,5", "model=tiny-qwen3", "data.n_train=4", "data.n_eval=4", "train.batch_size=4",
        "sampling.max_new_tokens=8", "hardware.num_threads=1", *FAST]
# What may differ between two runs of one grid: when and how fast it ran, and where.
VARYING = {"seconds", "train_seconds", "eval_seconds", "seconds_per_problem", "problems_per_second", "run_dir",
           "peak_memory_mb", "peak_rss_mb", "started", "finished", "datetime_start", "datetime_complete", "duration"}


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _running_job(sweep_dir: Path) -> int | None:
    """The pid of the local job that runs now (a local job's id is its controller's pid)."""
    for folder in (sweep_dir / ".submitit").glob("[0-9]*"):
        if folder.name.isdigit() and Path(f"/proc/{folder.name}").exists():
            return int(folder.name)
    return None


def _steady(value):
    """``value`` (parsed JSON) without the keys that say when and how fast it ran."""
    if isinstance(value, dict):
        return {key: _steady(item) for key, item in value.items() if key not in VARYING and "seconds" not in key}
    if isinstance(value, list):
        return [_steady(item) for item in value]
    return value


def _comparable(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key not in VARYING and not key.endswith("seconds")}
            for row in rows]


def test_a_grid_of_jobs_gives_the_basic_launchers_summary_and_report(tmp_path):
    jobs, basic = tmp_path / "jobs" / "grid", tmp_path / "basic" / "grid"  # one name: the report names its series by it
    result = _run([*GRID, LOCAL, f"hydra.sweep.dir={jobs}"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert len(list((jobs / ".submitit").glob("[0-9]*"))) == 2  # one job per trial
    # The basic launcher on the same grid: its stages come from the cache the jobs filled; eval runs again.
    result = _run([*GRID, f"hydra.sweep.dir={basic}"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = {name: read_summary(root / "sweep_summary.csv") for name, root in (("jobs", jobs), ("basic", basic))}
    assert [(r["number"], r["state"], r["param.level"]) for r in rows["jobs"]] == [("0", "COMPLETE", "4"),
                                                                                     ("1", "COMPLETE", "5")]
    assert _comparable(rows["jobs"]) == _comparable(rows["basic"])
    for root in (jobs, basic):
        assert analysis_main(["report", str(root)]) == 0
    reports = [_steady(json.loads((root / "report" / "report.json").read_text().replace(str(root), "SWEEP")))
               for root in (jobs, basic)]
    assert reports[0] == reports[1]


def test_a_job_killed_mid_trial_is_submitted_again_and_the_study_completes(tmp_path):
    sweep_dir = tmp_path / "search"
    # A SLURM command line, run here: slurm_local takes the SLURM settings and ignores them.
    args = ["+search=smoke", LOCAL, "hydra.launcher.partition=gpu", "hydra.launcher.mem_gb=32",
            f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.n_trials=2", *FAST]
    log = tmp_path / "sweep.out"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sweep", "-m", *args], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while not (sweep_dir / "trial_0001" / ".hydra").is_dir():  # trial 0 is done and trial 1's job has started
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)
    finished_first = (sweep_dir / "trial_0000" / "metrics.json").stat().st_mtime_ns
    job = _running_job(sweep_dir)
    assert job is not None
    for pid in [*_children(job), job]:  # the trial, then its job's controller: nothing of the job is left
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the controller saw its trial die and exited first
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    output = log.read_text()
    assert "ended without a result" in output and "submitting it again (retry 1 of 2)" in output
    trials = _trials(sweep_dir)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]  # the same trial, retried
    assert json.loads((sweep_dir / "trial_0001" / "metrics.json").read_text())["status"] == "completed"
    assert (sweep_dir / "trial_0000" / "metrics.json").stat().st_mtime_ns == finished_first  # not run again
    assert len(list((sweep_dir / ".submitit").glob("[0-9]*"))) == 3  # two trials, one of them twice
    assert [r["state"] for r in read_summary(sweep_dir / "sweep_summary.csv")] == ["COMPLETE", "COMPLETE"]


def test_a_trial_whose_retries_are_used_up_is_recorded_failed_and_a_finished_one_is_left_alone(tmp_path):
    reserved, finished, never = tmp_path / "reserved", tmp_path / "finished", tmp_path / "never"
    reserved.mkdir()
    reserve_metrics(reserved, {"status": "running", "level": "4"})
    assert (reserved / "metrics.json").stat().st_size == RESERVED_BYTES
    finished.mkdir()
    (finished / "metrics.json").write_text(json.dumps({"status": "completed", "accuracy": 0.5}))
    for run_dir in (reserved, finished, never):
        record_lost_job(run_dir, "job 123 ended without a result (state FINISHED), 3 time(s)")
    assert read_metrics(reserved) == {"status": "failed", "level": "4", "run_dir": str(reserved),
                                      "error": "job 123 ended without a result (state FINISHED), 3 time(s)"}
    assert read_metrics(finished) == {"status": "completed", "accuracy": 0.5}
    assert read_metrics(never)["status"] == "failed"  # a job lost before its trial wrote anything


def test_every_setting_of_the_slurm_config_reaches_sbatch():
    """Without a cluster (submitit's SLURM executor wants srun) each key of hydra/launcher=slurm must still be one
    submitit turns into an sbatch option, or one the launcher itself reads: a misspelt key would otherwise be
    refused only on the cluster."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from submitit.slurm.slurm import SlurmExecutor

    from sweep.cli import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["+level='4'", "hydra/launcher=slurm",
                                                       "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert launcher["_target_"].endswith("submitit_retry.SlurmLauncher") and launcher["partition"] == "gpu"
    own = {"_target_", "submitit_folder", "max_num_timeout", "retries"}
    valid = set(SlurmExecutor._valid_parameters()) | set(SlurmExecutor._equivalence_dict())
    assert sorted(set(launcher) - own - valid) == []
