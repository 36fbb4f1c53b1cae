# Several worker processes on one study. Run: python -m sweep.search.workers 2 +search=pareto [overrides...]
"""Start N copies of ``python -m sweep -m ARGS`` that share one Optuna study, and wait for them.

Each copy is told ``hydra.sweeper.n_workers=N`` so its trials take 1/N of the cores. The
copies coordinate through the study's storage alone, so the same command started by hand
on another machine (with a shared ``hydra.sweeper.storage``) joins the same search. Each
worker's output lines are prefixed with ``[wK]``; the exit status is the worst worker's.

A user error stops every worker with the same ``error: ...`` line: it is printed once, unprefixed,
so a bad setting reads as one line here as it does with ``python -m sweep -m``.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Sequence


def worker_command(args: Sequence[str], n_workers: int) -> list[str]:
    return [sys.executable, "-m", "sweep", "-m", *args, f"hydra.sweeper.n_workers={n_workers}"]


ERROR_PREFIX = "error: "


def _relay(index: int, stream, errors: dict[int, str]) -> None:
    for line in stream:
        if line.startswith(ERROR_PREFIX):  # a worker's last line: held back, printed once for all workers
            errors[index] = line.rstrip("\n")
            continue
        sys.stdout.write(f"[w{index}] {line}")
        sys.stdout.flush()


def main(argv: Sequence[str]) -> int:
    if not argv or not argv[0].isdigit() or int(argv[0]) < 1:
        print("usage: python -m sweep.search.workers N +search=pareto [overrides...]", file=sys.stderr)
        return 2
    n_workers, args = int(argv[0]), list(argv[1:])
    procs = [subprocess.Popen(worker_command(args, n_workers), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, bufsize=1) for _ in range(n_workers)]
    errors: dict[int, str] = {}
    relays = [threading.Thread(target=_relay, args=(i, p.stdout, errors), daemon=True) for i, p in enumerate(procs)]
    for relay in relays:
        relay.start()
    try:
        codes = [proc.wait() for proc in procs]
    except KeyboardInterrupt:  # the workers got the same Ctrl-C: let them mark their trials, then report
        codes = [proc.wait() for proc in procs]
    for relay in relays:
        relay.join()
    for line in dict.fromkeys(errors[index] for index in sorted(errors)):
        print(line, file=sys.stderr)
    for index, code in enumerate(codes):
        if code and index not in errors:  # an error line already says why
            print(f"worker {index} exited with status {code}", file=sys.stderr)
    return max(codes, key=abs)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
