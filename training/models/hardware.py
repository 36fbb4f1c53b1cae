"""Where a trial computes and in which precision: the ``hardware`` config group made concrete.

``cpu`` computes in fp32, ``turing`` in fp16 (no bf16 units, no FlashAttention 2),
``a100`` in bf16, ``auto`` picks by looking at the machine: bf16 on a GPU that has it,
else fp16; on CPU bf16 where the CPU does bf16 natively and a timing confirms it is
faster (:mod:`training.models.cpu_precision`), else fp32. ``Hardware.precision_reason`` says
why, and goes into metrics.json. Asking for a GPU that
is not there is a config error, not a silent CPU run. ``num_processes`` > 1 trains
data-parallel, one process per GPU (``training.sft.distributed``); on CPU the processes
share ``num_threads`` between them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from training.common.errors import ConfigError
from training.config.schema import HardwareSettings
from training.config.settings import read_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hardware:
    name: str
    device: str  # cpu | cuda
    precision: str  # fp32 | fp16 | bf16
    attn_implementation: str | None
    num_threads: int
    num_processes: int = 1  # data-parallel training processes (one per GPU on cuda)
    precision_reason: str = ""  # why this precision: the config asked for it, or what auto detection found

    @property
    def dtype(self):
        import torch

        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.precision]


def usable_cores() -> int:
    """Cores this process may run on (respects taskset/cgroup affinity, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_hardware(cfg: Mapping[str, Any], *, cuda_available: bool | None = None,
                     bf16_supported: bool | None = None, device_count: int | None = None,
                     cpu_bf16_flags: Sequence[str] | None = None, cpu_bf16_speedup: float | None = None) -> Hardware:
    """Turn ``cfg.hardware`` into a concrete device and precision, checking the machine can do it.

    The flags default to what torch sees (``bf16_supported`` is the GPU's; ``cpu_bf16_flags`` the CPU's native
    bf16 instruction sets, ``cpu_bf16_speedup`` its measured bf16/fp32 matmul rate); tests pass them to check
    every branch.
    """
    if cuda_available is None or bf16_supported is None:
        import torch

        cuda_available = torch.cuda.is_available() if cuda_available is None else cuda_available
        bf16_supported = (cuda_available and torch.cuda.is_bf16_supported()) if bf16_supported is None else bf16_supported
    settings = read_settings(HardwareSettings, cfg, "hardware")  # the values; the machine is looked at below
    name, device, precision = str(cfg.get("name", "?")), settings.device, settings.precision
    if device == "auto":
        device = "cuda" if cuda_available else "cpu"
    if device == "cuda" and not cuda_available:
        raise ConfigError(f"hardware={name} needs a CUDA GPU and torch sees none; use hardware=cpu or hardware=auto")
    num_threads = settings.num_threads or usable_cores()
    reason = f"hardware.precision={precision} in the config"
    if precision == "auto" and device == "cuda":
        precision, reason = ("bf16", "gpu supports bf16") if bf16_supported else ("fp16", "gpu has no bf16; fp16")
    elif precision == "auto":
        precision, reason = _auto_cpu_precision(num_threads, cpu_bf16_flags, cpu_bf16_speedup)
    if precision == "bf16" and device == "cuda" and not bf16_supported:
        raise ConfigError(f"hardware={name} asks for bf16 but this GPU has no bf16 support; use hardware=turing (fp16)")
    if precision == "fp16" and device == "cpu":
        # torch's fp16 matmuls on CPU are slow or missing, and HF Trainer would silently run fp32 anyway.
        raise ConfigError(f"hardware {name}: fp16 is a GPU precision; use precision fp32 on CPU")
    num_processes = _num_processes(settings.num_processes or 1, name, device, device_count)
    return Hardware(name, device, precision, settings.attn_implementation or None, num_threads, num_processes,
                    reason)


def _auto_cpu_precision(threads: int, flags: Sequence[str] | None, speedup: float | None) -> tuple[str, str]:
    from training.models.cpu_precision import choose_cpu_precision, measured_bf16_speedup, native_bf16_flags

    flags = native_bf16_flags() if flags is None else list(flags)
    if flags and speedup is None:  # no native bf16: nothing to time, emulated bf16 is slower than fp32
        speedup = measured_bf16_speedup(threads)
    return choose_cpu_precision(flags, speedup)


def _num_processes(number: int, name: str, device: str, device_count: int | None) -> int:
    if device == "cuda" and number > 1:
        if device_count is None:
            import torch

            device_count = torch.cuda.device_count()
        if number > device_count:
            raise ConfigError(f"hardware={name} asks for {number} training processes (one per GPU) but torch sees "
                              f"{device_count} GPU(s); set hardware.num_processes={device_count} or fewer")
    return number


def threads_per_process(hardware: Hardware) -> int:
    """Each data-parallel worker's share of ``num_threads`` (at least 1), so the workers never oversubscribe cores."""
    return max(1, hardware.num_threads // hardware.num_processes)


def apply_threads(hardware: Hardware) -> None:
    """Set torch's CPU thread pool deliberately: oversubscribed cores make CPU training many times slower."""
    import torch

    if torch.get_num_threads() != hardware.num_threads:
        torch.set_num_threads(hardware.num_threads)
    log.info("hardware: %s, %s on %s (%s), %d CPU threads", hardware.name, hardware.precision, hardware.device,
             hardware.precision_reason, hardware.num_threads)
