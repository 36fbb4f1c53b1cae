"""The Optuna study behind a search: its storage, its trial budget, and trials whose worker died.

Several workers (processes, or machines sharing a database) run whole trials of one study.
Each running trial carries its worker (``host:pid``) and a heartbeat timestamp as user
attributes. A RUNNING trial is *stale* when its worker is a dead process on this host or
its heartbeat is older than ``stale_after`` seconds; a worker marks stale trials FAIL
(``interrupted``) and enqueues their parameters again before each ask, and a worker whose
budget is used up waits while other workers' trials run, so a killed worker costs a re-run
of one trial, in the same run, and no finished trial is repeated.

Samplers over a categorical space propose points they have already tried; a trial's
seed is fixed, so running such a point again would reproduce its result. The sweeper
tells the repeat the earlier trial's values instead (``repeat_of``) and runs nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from sweep.search.storage import JOURNAL_FILE, open_storage  # noqa: F401 - re-exported: callers open studies from here
from training.common.errors import ConfigError

log = logging.getLogger(__name__)

WORKER, HEARTBEAT, INTERRUPTED, RETRY_OF, ERROR = "worker", "heartbeat", "interrupted", "retry_of", "error"
HOST_ENV = "COT_PARETO_HOST"
REPEAT_OF = "repeat_of"  # a trial whose parameters a finished trial already had: its result is reused
DIRECTIONS = ("maximize", "minimize")


def host_name() -> str:
    """This machine's name in worker ids: ``$COT_PARETO_HOST`` when set, else the host name.

    Workers that share a host name but not a process table (containers run with the host's network
    or UTS namespace) must set it, each to its own value: a pid is only checked on its own host.
    Tests set it to run two "hosts" on one machine.
    """
    return os.environ.get(HOST_ENV) or socket.gethostname()


def worker_id() -> str:
    return f"{host_name()}:{os.getpid()}"


def load_study(name: str, storage, directions: Sequence[str], metrics: Sequence[str], attempts: int = 5) -> optuna.Study:
    """Create the study or join it; an existing study must optimise the same metrics the same way."""
    for direction in directions:
        if direction not in DIRECTIONS:
            raise ConfigError(f"objective direction {direction!r} is not one of {', '.join(DIRECTIONS)}")
    for attempt in range(attempts):
        try:
            study = optuna.create_study(study_name=name, storage=storage, directions=list(directions),
                                        load_if_exists=True)
            break
        except Exception as err:  # noqa: BLE001 - SQLite races on table creation when workers start together
            if attempt == attempts - 1 or isinstance(err, ValueError):
                raise
            time.sleep(0.5 * (attempt + 1))
    recorded = study.user_attrs.get("metrics")
    if recorded is None:
        study.set_user_attr("metrics", list(metrics))
    elif list(recorded) != list(metrics) or [d.name.lower() for d in study.directions] != list(directions):
        raise ConfigError(f"study {name!r} optimises {recorded} "
                          f"({', '.join(d.name.lower() for d in study.directions)}), not {list(metrics)} "
                          f"({', '.join(directions)}): choose another hydra.sweeper.study_name")
    return study


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def parse_worker(worker: str) -> tuple[str, int | None]:
    """``worker_id()``'s ``host:pid`` back into (host, pid); pid None when it is not one."""
    host, _, pid = worker.rpartition(":")
    return host, int(pid) if pid.isdigit() else None


def is_stale(trial: FrozenTrial, now: float, host: str, stale_after: float, pid_alive=pid_alive) -> bool:
    """Whether a RUNNING trial's worker is gone (a dead pid on this host, or a heartbeat too old)."""
    if trial.state != TrialState.RUNNING:
        return False
    trial_host, pid = parse_worker(str(trial.user_attrs.get(WORKER, "")))
    if trial_host == host and pid is not None and not pid_alive(pid):
        return True
    beat = trial.user_attrs.get(HEARTBEAT)
    started = trial.datetime_start.timestamp() if trial.datetime_start else now
    return now - float(beat if beat is not None else started) > stale_after


def recover_stale(study: optuna.Study, stale_after: float, now: float | None = None) -> list[int]:
    """Mark stale RUNNING trials FAIL (interrupted) and enqueue their points again; their numbers."""
    now = time.time() if now is None else now
    host = host_name()
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_stale(trial, now, host, stale_after):
            continue
        storage = study._storage  # noqa: SLF001 - Optuna has no public API to finish another worker's trial
        try:
            storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)  # noqa: SLF001
            storage.set_trial_user_attr(trial._trial_id, ERROR, f"interrupted: worker {trial.user_attrs.get(WORKER)} "
                                                               "stopped mid-trial")  # noqa: SLF001
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)  # noqa: SLF001
        except UpdateFinishedTrialError:
            continue  # another worker recovered it first
        study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})
        log.warning("trial %d was left running by %s: marked failed, its parameters queued again",
                    trial.number, trial.user_attrs.get(WORKER))
        recovered.append(trial.number)
    return recovered


def running_elsewhere(trials: Sequence[FrozenTrial], me: str) -> list[FrozenTrial]:
    """RUNNING trials of other workers: a worker that has used up the budget waits for them before it exits,
    so that one of them whose worker dies is retried in this run, not left for a rerun."""
    return [t for t in trials if t.state == TrialState.RUNNING and t.user_attrs.get(WORKER) != me]


def completed_twin(trials: Sequence[FrozenTrial], params: dict[str, Any]) -> FrozenTrial | None:
    """A COMPLETE trial with exactly ``params``, whose result a repeat can reuse."""
    return next((t for t in trials if t.state == TrialState.COMPLETE and t.params == params), None)


def counted(trials: Sequence[FrozenTrial]) -> int:
    """Trials that use up the budget: running or finished, except interrupted ones (their points are
    queued again). Queued (WAITING) trials count once a worker takes them."""
    return sum(1 for t in trials if t.state != TrialState.WAITING and not t.user_attrs.get(INTERRUPTED))


def finished(trials: Sequence[FrozenTrial]) -> int:
    return sum(1 for t in trials if t.state.is_finished() and not t.user_attrs.get(INTERRUPTED))


class Heartbeat:
    """Refresh ``heartbeat`` on running trials from a background thread while they run."""

    def __init__(self, trials: Sequence[optuna.Trial], interval: float) -> None:
        self.trials, self.interval = list(trials), interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="optuna-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for trial in self.trials:
                try:
                    trial.set_user_attr(HEARTBEAT, time.time())
                except Exception:  # noqa: BLE001 - a missed beat only makes a trial look stale later
                    log.debug("heartbeat for trial %d failed", trial.number, exc_info=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
