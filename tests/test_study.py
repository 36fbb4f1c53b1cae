"""Study bookkeeping on a real Optuna journal storage: stale trials, retries, the budget, the summary CSV."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from sweep.search.study import (
    HEARTBEAT,
    HOST_ENV,
    INTERRUPTED,
    RETRY_OF,
    WORKER,
    counted,
    is_stale,
    load_study,
    open_storage,
    recover_stale,
    running_elsewhere,
    worker_id,
)
from sweep.search.summary_csv import read_summary, row_from_trial, write_summary
from training.common.errors import ConfigError

HOST = socket.gethostname()


@pytest.fixture
def study(tmp_path):
    return load_study("s", open_storage(None, tmp_path), ["maximize", "minimize"], ["accuracy", "mean_think_tokens"])


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _running(study, worker: str, beat: float) -> optuna.Trial:
    trial = study.ask({"level": optuna.distributions.CategoricalDistribution([1, 2, 3])})
    trial.set_user_attr(WORKER, worker)
    trial.set_user_attr(HEARTBEAT, beat)
    return trial


def test_staleness_by_dead_pid_here_or_old_heartbeat_elsewhere(study):
    now = time.time()
    _running(study, f"{HOST}:{_dead_pid()}", now)  # killed worker on this host: stale at once
    _running(study, f"{HOST}:{os.getpid()}", now)  # this live process: not stale
    _running(study, "other-host:1", now - 1000)  # silent for 1000 s elsewhere: stale
    _running(study, "other-host:2", now - 10)  # recent heartbeat elsewhere: alive
    stale = [is_stale(t, now, HOST, stale_after=300) for t in study.get_trials()]
    assert stale == [True, False, True, False]


def test_a_host_name_from_the_environment_keeps_pids_to_their_own_host(study, monkeypatch):
    """Two workers that share a host name but not a process table tell themselves apart with COT_PARETO_HOST."""
    dead = _dead_pid()
    _running(study, f"{HOST}:{dead}", time.time())  # a dead pid, but of the machine named HOST
    monkeypatch.setenv(HOST_ENV, "box-b")
    assert worker_id() == f"box-b:{os.getpid()}"
    assert recover_stale(study, stale_after=300) == []  # another host's pid says nothing here: its heartbeat is fresh
    assert recover_stale(study, stale_after=300, now=time.time() + 301) == [0]  # ... until it is stale_after old
    monkeypatch.setenv(HOST_ENV, HOST)
    mine = _running(study, worker_id(), time.time())
    assert [t.number for t in running_elsewhere(study.get_trials(), worker_id())] == []
    assert [t.number for t in running_elsewhere(study.get_trials(), "box-c:1")] == [mine.number]


def test_recovery_fails_stale_trials_and_queues_their_points(study):
    done = study.ask({"level": optuna.distributions.CategoricalDistribution([1, 2, 3])})
    study.tell(done, [0.5, 10.0])
    killed = _running(study, f"{HOST}:{_dead_pid()}", time.time())
    assert recover_stale(study, stale_after=300) == [killed.number]
    assert recover_stale(study, stale_after=300) == []  # idempotent: nothing left running
    trials = study.get_trials()
    failed = trials[killed.number]
    assert failed.state == TrialState.FAIL and failed.user_attrs[INTERRUPTED]
    assert "stopped mid-trial" in failed.user_attrs["error"]
    (queued,) = [t for t in trials if t.state == TrialState.WAITING]
    assert queued.user_attrs[RETRY_OF] == killed.number
    retry = study.ask({"level": optuna.distributions.CategoricalDistribution([1, 2, 3])})
    assert retry.params == killed.params  # the same point, asked again
    # The budget: the finished trial and the retry count, the interrupted one does not.
    assert counted(study.get_trials()) == 2


def test_a_study_keeps_its_objectives(tmp_path):
    storage = open_storage(str(tmp_path / "j.journal"), tmp_path)
    load_study("s", storage, ["maximize", "minimize"], ["accuracy", "mean_think_tokens"])
    again = load_study("s", storage, ["maximize", "minimize"], ["accuracy", "mean_think_tokens"])
    assert again.user_attrs["metrics"] == ["accuracy", "mean_think_tokens"]
    with pytest.raises(ConfigError, match="choose another hydra.sweeper.study_name"):
        load_study("s", storage, ["maximize"], ["accuracy"])
    with pytest.raises(ConfigError, match="direction"):
        load_study("t", storage, ["up"], ["accuracy"])


def test_sqlite_url_storage(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = load_study("s", open_storage(url, tmp_path), ["maximize", "minimize"], ["accuracy", "mean_think_tokens"])
    trial = study.ask()
    study.tell(trial, [1.0, 2.0])
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 1


def test_summary_rows_carry_state_params_metrics_and_errors(study, tmp_path):
    dist = {"level": optuna.distributions.CategoricalDistribution([1, 2, 3])}
    ok = study.ask(dist)
    ok.set_user_attr("metrics", {"level": ok.params["level"], "accuracy": 0.25, "accuracy_ci": [0.1, 0.5],
                                 "mean_think_tokens": 12.5})
    ok.set_user_attr("run_dir", "/runs/trial_0000")
    study.tell(ok, [0.25, 12.5])
    bad = study.ask(dist)
    bad.set_user_attr("error", "ConfigError: boom")
    study.tell(bad, state=TrialState.FAIL)
    path = write_summary([row_from_trial(t) for t in study.get_trials()], tmp_path / "sweep_summary.csv")
    rows = read_summary(path)
    assert [(r["number"], r["state"]) for r in rows] == [("0", "COMPLETE"), ("1", "FAIL")]
    assert rows[0]["accuracy"] == "0.25" and rows[0]["accuracy_ci_high"] == "0.5"
    assert rows[0]["param.level"] == str(ok.params["level"]) and rows[0]["run_dir"] == "/runs/trial_0000"
    assert rows[1]["error"] == "ConfigError: boom" and rows[1]["accuracy"] == ""
    assert float(rows[0]["wall_seconds"]) >= 0
