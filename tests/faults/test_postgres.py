"""Searches on a real PostgreSQL server (tests/faults/postgres.py): two workers, a kill -9, two hosts.

Each test runs the real entry points with a real password and checks that no file under the sweep dirs
or the stage cache holds it, whichever of its three forms the URL takes: in the URL on the command line,
libpq's PGPASSWORD, or the whole URL in an environment variable (hydra.sweeper.storage_env).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.search.study import HEARTBEAT, HOST_ENV, INTERRUPTED, REPEAT_OF, RETRY_OF, WORKER, host_name
from sweep.search.summary_csv import read_summary
from tests.faults.common import REPO, assert_no_secret, run_module
from tests.faults.postgres import postgres  # noqa: F401 - the session's server, a fixture
from training.caching.stage_cache import SUMMARY_FILE
from training.models.hardware import usable_cores

STUDY = "smoke-tiny-qwen3-svamp"
SMOKE = ["+search=smoke", "wandb.mode=disabled"]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _trials(url: str) -> list[FrozenTrial]:
    return sorted(optuna.load_study(study_name=STUDY, storage=url).trials, key=lambda t: t.number)


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """``python -m sweep -m args`` as one worker of ``python -m sweep.search.workers`` runs it, its output in ``log``."""
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "sweep", "-m", *args], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO), **env})


def _until(what: str, check: Callable[[], object], procs: list[subprocess.Popen], timeout: float = 180) -> object:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert all(proc.poll() is None for proc in procs), f"a worker exited before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return found


def _running_trial(url: str, worker: str, sweep_dir: Path) -> FrozenTrial | None:
    """``worker``'s RUNNING trial once its job has started (its run dir has .hydra)."""
    try:
        trials = _trials(url)
    except KeyError:  # the study is not created yet
        return None
    return next((t for t in trials if t.state == TrialState.RUNNING and t.user_attrs.get(WORKER) == worker
                 and (sweep_dir / f"trial_{t.number:04d}" / ".hydra").is_dir()), None)


def _finished_outputs(*sweep_dirs: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for sweep_dir in sweep_dirs for path in sweep_dir.glob("trial_*/metrics.json")
            if '"completed"' in path.read_text()}


def _assert_cache_entries_whole(cache: Path) -> None:
    """A worker killed mid-stage leaves no entry that a later trial would take for a finished one."""
    partial = [entry for entry in cache.glob("*/*") if entry.is_dir() and not entry.name.startswith(".")
               and not (entry / SUMMARY_FILE).is_file()]
    assert not partial, partial


def _check_retried(trials: list[FrozenTrial], killed: int, survivor: str, n_trials: int) -> FrozenTrial:
    """The killed trial is FAIL (interrupted) and its point ran again, once, by ``survivor``; nothing is lost."""
    assert trials[killed].state == TrialState.FAIL and trials[killed].user_attrs[INTERRUPTED]
    assert "stopped mid-trial" in trials[killed].user_attrs["error"]
    (retry,) = [t for t in trials if t.user_attrs.get(RETRY_OF) == killed]
    assert retry.state == TrialState.COMPLETE and retry.params == trials[killed].params
    assert retry.user_attrs[WORKER] == survivor and REPEAT_OF not in retry.user_attrs  # it ran, not reused
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n_trials  # finished trials lost: 0
    ran = [t for t in complete if REPEAT_OF not in t.user_attrs]  # a repeated proposal reuses a result, runs nothing
    assert len({t.user_attrs["run_dir"] for t in ran}) == len(ran)  # finished points repeated: 0
    return retry


def test_two_workers_share_a_study_and_its_password_stays_out_of_every_file(postgres, tmp_path, fresh_stage_cache):
    url = postgres.create_database("two_workers")
    sweep_dir = tmp_path / "search"
    # The password in the URL on the command line, W&B on (offline): its record holds the command line.
    result = run_module("sweep.search.workers", "2", "+search=smoke", "wandb.mode=offline", f"hydra.sweep.dir={sweep_dir}",
                        f"hydra.sweeper.storage={url}", "hydra.sweeper.n_trials=3", cwd=REPO,
                        env={"WANDB_MODE": "offline"})  # a WANDB_MODE around the tests would win over the config
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    trials = _trials(url)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert len({t.user_attrs[WORKER] for t in trials}) == 2  # both processes ran trials
    threads = max(1, usable_cores() // 2)  # the cores split between the two workers
    assert all(f"hardware.num_threads={threads}" in t.user_attrs["overrides"] for t in trials)
    # Two trials at once on this machine: each would get half its GPUs (none here, so the record says none).
    assert all("++hardware.concurrent_trials=2" in t.user_attrs["overrides"] for t in trials)
    assert all(read_json(Path(t.user_attrs["run_dir"]) / "metrics.json")["hardware"]["gpus"] is None for t in trials)
    rows = read_summary(sweep_dir / "sweep_summary.csv")
    assert sorted(int(r["number"]) for r in rows) == [0, 1, 2]
    assert {r["state"] for r in rows} == {"COMPLETE"} and all(Path(r["run_dir"]).is_dir() for r in rows)
    assert all(any(sweep_dir.glob(f"trial_{t.number:04d}/wandb/offline-run-*")) for t in trials)
    shown = url.replace(postgres.password, "***")
    assert f"storage: {shown}" in (sweep_dir / "multirun.yaml").read_text()
    assert f"storage: {shown}" in (sweep_dir / "trial_0000" / ".hydra" / "hydra.yaml").read_text()
    assert postgres.password not in output
    assert postgres.password not in repr([(t.user_attrs, t.system_attrs) for t in trials])
    assert_no_secret(postgres.password, sweep_dir, fresh_stage_cache)


def test_a_killed_worker_trial_is_retried_by_its_sibling_in_the_same_run(postgres, tmp_path, fresh_stage_cache):
    full = postgres.create_database("kill")  # what this test reads the study with
    url = postgres.url("kill", password=False)  # what the workers get: the password comes from libpq's PGPASSWORD
    env = {"PGPASSWORD": postgres.password}
    sweep_dir = tmp_path / "search"
    # A heartbeat timeout of 10 minutes: within this test only the dead pid can make the trial stale.
    args = [*SMOKE, f"hydra.sweep.dir={sweep_dir}", f"hydra.sweeper.storage={url}", "hydra.sweeper.n_trials=2",
            "hydra.sweeper.n_workers=2", "hydra.sweeper.heartbeat_seconds=1", "hydra.sweeper.stale_after_seconds=600"]
    doomed = _spawn(args, tmp_path / "doomed.log", env)
    survivor = None
    try:
        trial = _until("the first worker's trial", lambda: _running_trial(full, f"{host_name()}:{doomed.pid}", sweep_dir),
                       [doomed])
        os.kill(doomed.pid, signal.SIGSTOP)  # held mid-trial until the survivor has done all it can ask
        survivor = _spawn(args, tmp_path / "survivor.log", env)
        log = tmp_path / "survivor.log"
        _until("the survivor to wait", lambda: f"waiting for trial(s) {trial.number} " in log.read_text(), [survivor])
        finished = _finished_outputs(sweep_dir)
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        assert survivor.wait(timeout=180) == 0, log.read_text()[-3000:]
    finally:
        for proc in (doomed, survivor):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert f"trial {trial.number} was left running by {host_name()}:{doomed.pid}" in log.read_text()
    retry = _check_retried(_trials(full), trial.number, f"{host_name()}:{survivor.pid}", n_trials=2)
    assert (sweep_dir / f"trial_{retry.number:04d}" / "metrics.json").is_file()
    assert {path: path.stat().st_mtime_ns for path in finished} == finished  # not run again
    _assert_cache_entries_whole(fresh_stage_cache)
    assert_no_secret(postgres.password, sweep_dir, fresh_stage_cache, tmp_path / "survivor.log")


def test_a_trial_of_a_dead_host_is_retried_after_the_heartbeat_timeout(postgres, tmp_path, fresh_stage_cache):
    # Two hosts: two sweep dirs (no shared ask lock) on one storage, host names set by COT_PARETO_HOST; the
    # whole URL, password and all, in an environment variable.
    env = {"COT_TEST_STORAGE": postgres.create_database("hosts")}
    url, stale_after = env["COT_TEST_STORAGE"], 5.0

    def args(sweep_dir: Path) -> list[str]:
        return [*SMOKE, f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.storage_env=COT_TEST_STORAGE",
                "hydra.sweeper.n_trials=2", "hydra.sweeper.n_workers=2", "hydra.sweeper.heartbeat_seconds=1",
                f"hydra.sweeper.stale_after_seconds={stale_after}"]

    sweep_a, sweep_b = tmp_path / "host-a", tmp_path / "host-b"
    gone = _spawn(args(sweep_b), tmp_path / "b.log", {**env, HOST_ENV: "host-b"})
    try:
        trial = _until("host-b's trial", lambda: _running_trial(url, f"host-b:{gone.pid}", sweep_b), [gone])
    finally:
        gone.kill()  # the host is gone: no process here can tell, only its heartbeat stops
        gone.wait()
    result = run_module("sweep", "-m", *args(sweep_a), cwd=REPO, env={**env, HOST_ENV: "host-a"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert f"trial {trial.number} was left running by host-b:{gone.pid}" in output
    trials = _trials(url)
    killed = trials[trial.number]
    (retry,) = [t for t in trials if t.user_attrs.get(RETRY_OF) == trial.number]
    assert retry.user_attrs[WORKER].startswith("host-a:")
    _check_retried(trials, trial.number, retry.user_attrs[WORKER], n_trials=2)
    # Retried only once its heartbeat was stale_after_seconds old, though host-b's dead pid is a dead pid here.
    assert retry.datetime_start.timestamp() - float(killed.user_attrs[HEARTBEAT]) >= stale_after
    assert (sweep_a / f"trial_{retry.number:04d}" / "metrics.json").is_file()
    _assert_cache_entries_whole(fresh_stage_cache)
    assert postgres.password not in output
    assert_no_secret(postgres.password, sweep_a, sweep_b, fresh_stage_cache)
