"""Peak resident memory of one trial, even when a multirun process runs many trials.

A process's peak RSS only grows, so the peak of the second trial in a Hydra multirun
would include the first's. On Linux, writing ``5`` to ``/proc/self/clear_refs`` resets
the peak (``VmHWM`` in ``/proc/self/status``) to the current RSS: the trial resets it
when it starts and reads it when it ends. Elsewhere ``resource.getrusage`` gives the
process-wide peak, and the metrics say so. Memory of child processes (data-parallel
training workers) is not included.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from pathlib import Path

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


def release_process_memory() -> None:
    """Free what the last trial left behind before the next one loads a model.

    A trial's model, trainer and optimizer sit in reference cycles (modules and their hooks, the trainer and its
    callbacks), which plain reference counting never frees: without a collection here a multirun's next job
    loads its model while the previous one is still in memory. glibc then keeps the freed pages in its heap;
    ``malloc_trim`` hands them back, so RSS follows what the process holds.
    """
    from training.models.loading import release_memory

    release_memory()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc
        return None


def reset_peak_rss() -> str:
    """Start a new peak; return how the peak will be measured (``trial`` or ``process``)."""
    try:
        CLEAR_REFS.write_text("5")
        return "trial"
    except OSError:  # not Linux, or /proc not writable
        return "process"


def _status_kib(field: str) -> int | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])  # "VmHWM:   123456 kB"
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss(scope: str) -> dict[str, object]:
    """``{"peak_rss_mb": ..., "peak_rss_scope": ...}``: the trial's peak where it was reset, else the process's."""
    kib = _status_kib("VmHWM") if scope == "trial" else None
    if kib is None:
        import resource
        import sys

        raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kib = raw // 1024 if sys.platform == "darwin" else raw  # bytes on macOS, KiB on Linux
        scope = "process (getrusage)"
    else:
        scope = "trial (VmHWM after clear_refs)"
    return {"peak_rss_mb": round(kib / 1024, 1), "peak_rss_scope": scope}
