"""GPUs of their own for trials that run at once on one machine: k trials on N GPUs get N/k each.

The sweeper tells each trial how many run at once on its machine (``hardware.concurrent_trials``: joblib's
``n_jobs`` times the workers of ``python -m sweep.search.workers``). A trial then claims one of the k slots,
the GPUs this process sees (``CUDA_VISIBLE_DEVICES`` where it is set, as SLURM sets it for a job's allocation,
else every GPU) cut into k equal runs, and narrows ``CUDA_VISIBLE_DEVICES`` to it before CUDA starts.

A slot is held by an OS file lock for the life of the process that claimed it: a process that runs several
trials in turn (a joblib worker, a sweep worker) keeps its slot, since CUDA, once started, cannot move to
other devices; a process that dies frees its slot. N not divisible by k is a config error, not an uneven split.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from training.common.errors import ConfigError

log = logging.getLogger(__name__)

VISIBLE = "CUDA_VISIBLE_DEVICES"
_held: tuple[tuple[str, ...], IO[str]] | None = None  # this process's slot and the open lock file that holds it


def visible_gpus(environ: Mapping[str, str], device_count: int) -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` (a scheduler's allocation) or ``0..count-1``."""
    listed = environ.get(VISIBLE)
    if listed is not None and listed.strip():
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    return [str(index) for index in range(device_count)]


def gpu_slots(gpus: Sequence[str], k: int) -> list[tuple[str, ...]]:
    """``gpus`` cut into ``k`` equal runs of adjacent devices (adjacent GPUs usually share the faster links)."""
    if k < 1:
        raise ConfigError(f"hardware.concurrent_trials must be at least 1, got {k}")
    if len(gpus) % k:
        raise ConfigError(f"{k} trials at once cannot have {len(gpus)} GPU(s) ({','.join(gpus)}) in equal shares: "
                          f"run a number of trials at once that divides {len(gpus)} (n_jobs x workers)")
    size = len(gpus) // k
    return [tuple(gpus[i * size:(i + 1) * size]) for i in range(k)]


def claim_slot(slots: Sequence[tuple[str, ...]], lock_dir: Path) -> tuple[str, ...]:
    """The slot this process holds: the one it claimed before, else the first no live process holds."""
    global _held
    if _held is not None and _held[0] in slots:
        return _held[0]
    lock_dir.mkdir(parents=True, exist_ok=True)
    for slot in slots:
        handle = (lock_dir / f"gpus-{'-'.join(slot)}.lock").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        if _held is not None:
            _held[1].close()  # a slot of another split (another k): this process's CUDA may not follow it
        _held = (slot, handle)
        return slot
    raise ConfigError(f"every GPU slot ({len(slots)}) is held by a running trial on this machine: more trials "
                      f"run at once than hardware.concurrent_trials={len(slots)} says")


def apply_gpu_slot(concurrent_trials: int | None, *, device_count: int | None = None,
                   environ: dict[str, str] | None = None, lock_dir: Path | None = None) -> list[str] | None:
    """Narrow ``CUDA_VISIBLE_DEVICES`` to this trial's slot when trials share the machine; return the GPUs it
    uses (None on a machine without one). ``device_count`` defaults to what the driver reports (through NVML,
    without starting CUDA); tests give it."""
    environ = os.environ if environ is None else environ
    if device_count is None:
        import torch

        device_count = torch.cuda.device_count()  # NVML's count: CUDA itself must not start before the slot is set
    gpus = visible_gpus(environ, device_count)
    if not gpus:
        return None
    k = int(concurrent_trials or 1)
    if k == 1:
        return gpus
    slot = claim_slot(gpu_slots(gpus, k), lock_dir or _default_lock_dir())
    if environ.get(VISIBLE) != ",".join(slot):
        if environ is os.environ and _cuda_started():
            raise ConfigError(f"CUDA started in this process before its GPU slot ({','.join(slot)}) was set: "
                              "run trials that share a machine in processes of their own")
        environ[VISIBLE] = ",".join(slot)
        log.info("hardware: %d trials at once on %d GPUs: this one uses GPU(s) %s", k, len(gpus), ",".join(slot))
    return list(slot)


def _cuda_started() -> bool:
    import torch

    return torch.cuda.is_initialized()


def _default_lock_dir() -> Path:
    from training.models.loading import cache_root

    return cache_root() / "gpu_slots" / socket.gethostname()
