"""Sweeps end to end on the tiny model, as users start them: separate processes, real Optuna storage.

``+search=smoke`` is the real search config, shrunk to the tiny model and four problems.
W&B is disabled here only to save time; tests/test_train_eval.py checks the W&B record. Two worker processes
sharing one study (the cores split between them, one summary) run on PostgreSQL in tests/faults/test_postgres.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from analysis.trials import load_trials
from sweep.search.study import INTERRUPTED, REPEAT_OF, RETRY_OF
from sweep.search.summary_csv import read_summary
from training.models.hardware import usable_cores

REPO = Path(__file__).resolve().parent.parent
STUDY = "smoke-tiny-qwen3-svamp"
FAST = ["wandb.mode=disabled"]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _run(args: list[str], module: str = "sweep") -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", module, *(["-m"] if module == "sweep" else []), *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


def _trials(sweep_dir: Path) -> list[optuna.trial.FrozenTrial]:
    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    return optuna.load_study(study_name=STUDY, storage=storage).trials


def test_a_killed_worker_resumes_without_repeating_finished_trials(tmp_path):
    sweep_dir = tmp_path / "search"
    args = ["+search=smoke", f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.n_trials=2", *FAST]
    proc = subprocess.Popen([sys.executable, "-m", "sweep", "-m", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (sweep_dir / "trial_0001").is_dir():  # trial 0 is done and trial 1 has started
        assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended before trial 1 started"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_first = (sweep_dir / "trial_0000" / "metrics.json").stat().st_mtime_ns

    result = _run(args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    trials = _trials(sweep_dir)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    (killed,) = [t for t in trials if t.state == TrialState.FAIL]
    assert len(complete) == 2 and killed.number == 1 and killed.user_attrs[INTERRUPTED]
    (retry,) = [t for t in trials if t.user_attrs.get(RETRY_OF) == 1]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert (sweep_dir / "trial_0000" / "metrics.json").stat().st_mtime_ns == finished_first  # not run again
    assert "trial 0 (" not in result.stderr + result.stdout
    assert len(read_summary(sweep_dir / "sweep_summary.csv")) == 3


def test_ctrl_c_marks_the_running_trial_and_queues_its_point(tmp_path):
    sweep_dir = tmp_path / "search"
    args = ["+search=smoke", f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.n_trials=2", *FAST]
    # SIGINT back to its default in the child: a runner started in the background (nohup, `cmd &` in a
    # non-interactive shell) passes SIGINT on as ignored, and Python then never raises KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, "-m", "sweep", "-m", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while not (sweep_dir / "trial_0000" / ".hydra").is_dir():  # trial 0 is running
        assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended before trial 0 started"
        time.sleep(0.1)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, output[-3000:]
    assert "interrupted (Ctrl-C)" in output
    trials = {t.number: t for t in _trials(sweep_dir)}
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs[INTERRUPTED]
    assert trials[1].state == TrialState.WAITING and trials[1].user_attrs[RETRY_OF] == 0
    assert trials[1].system_attrs["fixed_params"] == trials[0].params  # how Optuna keeps a queued point
    assert read_json(sweep_dir / "trial_0000" / "metrics.json")["status"] == "failed"
    rows = read_summary(sweep_dir / "sweep_summary.csv")
    assert [r["state"] for r in rows] == ["FAIL", "WAITING"]


def test_failing_trials_are_recorded_and_the_others_finish(tmp_path):
    sweep_dir = tmp_path / "search"
    # A grid of 4: a sampling preset that does not exist (fails to compose) and max_new_tokens=0 (fails in
    # the trial, before any training), next to one good point. Run by the joblib launcher, two at a time.
    # The bad preset sits in the search space config: on the command line it would stop the sweep at once.
    result = _run(["+search=smoke", f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.sampler=grid",
                   "hydra.sweeper.n_trials=null", "+level=4", "train.lora_r=2",
                   "+hydra.sweeper.params.sampling='choice(greedy,nosuch)'",
                   "sampling.max_new_tokens=choice(8,0)", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *FAST])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    trials = _trials(sweep_dir)
    assert len(trials) == 4
    threads = max(1, usable_cores() // 2)  # two trials at a time share the cores
    composed = [t for t in trials if t.params["sampling"] == "greedy"]
    assert all(f"hardware.num_threads={threads}" in t.user_attrs["overrides"] for t in composed)
    assert all(any("nosuch" in line for line in t.user_attrs["overrides"]) for t in trials if t not in composed)
    (good,) = [t for t in trials if t.state == TrialState.COMPLETE]
    assert good.params == {"sampling": "greedy", "sampling.max_new_tokens": 8}
    failed = {(t.params["sampling"], t.params["sampling.max_new_tokens"]): t.user_attrs["error"]
              for t in trials if t.state == TrialState.FAIL}
    assert all("config does not compose" in failed[("nosuch", n)] and "nosuch" in failed[("nosuch", n)] for n in (8, 0))
    assert "max_new_tokens must be at least 1" in failed[("greedy", 0)]
    (bad_run,) = [t for t in trials if t.params == {"sampling": "greedy", "sampling.max_new_tokens": 0}]
    assert read_json(Path(bad_run.user_attrs["run_dir"]) / "metrics.json")["status"] == "failed"
    rows = {int(r["number"]): r for r in read_summary(sweep_dir / "sweep_summary.csv")}
    assert sorted(r["state"] for r in rows.values()) == ["COMPLETE", "FAIL", "FAIL", "FAIL"]
    assert all(r["error"] for r in rows.values() if r["state"] == "FAIL")


def test_a_repeated_point_reuses_the_finished_trial_and_the_baseline_runs_once(tmp_path):
    sweep_dir = tmp_path / "search"
    # A one-point space: every trial after the first proposes what trial 0 ran. The baseline's own
    # +level=1 replaces the fixed +level=4 for its run only.
    args = ["+search=smoke", f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.n_trials=3", "+level=4",
            "train.lora_r=choice(2)", "hydra.sweeper.baseline=['+level=1','adapter=none']", *FAST]
    result = _run(args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    trials = sorted(_trials(sweep_dir), key=lambda t: t.number)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert [t.user_attrs.get(REPEAT_OF) for t in trials] == [None, 0, 0]
    assert trials[1].values == trials[2].values == trials[0].values
    assert sorted(p.name for p in sweep_dir.glob("trial_*")) == ["trial_0000"]  # nothing else ran
    assert "trial 2 repeats trial 0's parameters" in result.stdout + result.stderr
    rows = read_summary(sweep_dir / "sweep_summary.csv")
    assert [r["repeat_of"] for r in rows] == ["", "0", "0"] and rows[2]["run_dir"] == rows[0]["run_dir"]
    baseline = read_json(sweep_dir / "baseline" / "metrics.json")
    assert (baseline["status"], baseline["adapter"], baseline["level"], baseline["n_train"]) == ("completed", "none", 1, 0)
    collection = load_trials(str(sweep_dir))  # the analysis finds the baseline beside the trials
    assert [t.name for t in collection.trials if t.baseline] == ["baseline"]
    again = _run(args)
    assert again.returncode == 0 and "baseline (" not in again.stdout + again.stderr  # done once per study


def test_grid_over_two_ranks_reuses_the_traces(tmp_path):
    sweep_dir = tmp_path / "grid"
    result = _run(["+level=4", "train.lora_r=2,4", "model=tiny-qwen3", "data.n_train=4", "data.n_eval=4",
                   "train.batch_size=4", "sampling.max_new_tokens=8", f"hydra.sweep.dir={sweep_dir}", *FAST])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    first, second = sorted(sweep_dir.glob("[0-9]_L4"))
    assert read_json(first / "metrics.json")["traces"]["cache"] == "miss"
    traces = read_json(second / "metrics.json")["traces"]
    assert traces["cache"] == "hit" and traces["seconds"] < 1
    assert "traces: cache hit" in (second / "sweep.log").read_text()
    rows = read_summary(sweep_dir / "sweep_summary.csv")
    assert [(r["number"], r["state"], r["param.train.lora_r"]) for r in rows] == [("0", "COMPLETE", "2"),
                                                                                  ("1", "COMPLETE", "4")]
