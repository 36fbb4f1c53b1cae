"""Whether a CPU trains faster in bf16 than in fp32: its flags say whether it can, a short timing says whether it does.

Flags alone are not enough. A CPU without AVX512_BF16 or AMX still runs bf16 matmuls,
emulated, and one of our machines did so at 0.52x fp32; one with AVX512_BF16 ran them at
3.3x. So ``hardware.precision=auto`` on CPU picks bf16 only where torch reports a native
bf16 instruction set *and* a bf16 matmul of a shape the train stage runs measures at least
:data:`MIN_SPEEDUP` times fp32. The timing takes about 0.2 s; its answer is kept for the
process and on disk (keyed by CPU model, flags, torch version and thread count), so every
trial of a sweep on one machine makes the same choice and the stage cache keys agree.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import platform
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)

# bf16 training gains about half of the matmul speed-up (3.3x matmul gave 1.7-2x training here): below 1.5x the
# gain would not pay for bf16's coarser rounding.
MIN_SPEEDUP = 1.5
# SmolLM2-135M's MLP up-projection for a batch of 8 x 128 tokens: a shape the train stage spends its time in.
SHAPE = (1024, 576, 1536)
REPEATS = 5


def native_bf16_flags() -> list[str]:
    """The native bf16 instruction sets torch reports for this CPU (AVX512_BF16, AMX), empty where none."""
    import torch

    checks = {"avx512_bf16": "_is_avx512_bf16_supported", "amx": "_is_amx_tile_supported"}
    return [flag for flag, name in checks.items() if getattr(torch.cpu, name, lambda: False)()]


def matmul_gflops(dtype, threads: int, shape: tuple[int, int, int] = SHAPE, repeats: int = REPEATS) -> float:
    """Best-of-``repeats`` GFLOP/s of an (m x k) @ (k x n) matmul in ``dtype`` on ``threads`` threads.

    Best, not mean: another process on the machine can only slow a repeat down, never speed it up.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        m, k, n = shape
        a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
        torch.mm(a, b)  # warm-up: first-call kernel selection and page faults
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return 2 * m * k * n / best / 1e9


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            first = handle.read().split("\n\n")[0]  # the first processor's block
        fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in first.splitlines())}
        return " ".join(fields.get(key, "?") for key in ("model name", "cpu family", "model", "stepping"))
    except OSError:  # not Linux
        return platform.processor() or platform.machine()


@functools.cache
def measured_bf16_speedup(threads: int) -> float:
    """bf16 / fp32 matmul rate on this CPU with ``threads`` threads, measured once per machine and kept on disk."""
    import torch

    from training.common.jsonl import write_json
    from training.models.loading import cache_root

    key = {"cpu": _cpu_model(), "flags": native_bf16_flags(), "torch": torch.__version__, "threads": threads,
           "shape": list(SHAPE)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_root() / "hardware" / f"cpu-bf16-{digest}.json"
    try:
        return float(json.loads(path.read_text())["speedup"])
    except (OSError, ValueError, KeyError):
        pass
    fp32, bf16 = matmul_gflops(torch.float32, threads), matmul_gflops(torch.bfloat16, threads)
    speedup = bf16 / fp32
    log.info("hardware: bf16 matmul %.0f GFLOP/s, fp32 %.0f GFLOP/s (%.2fx) on %d threads", bf16, fp32, speedup,
             threads)
    try:  # atomic: a concurrent reader sees the whole file or none
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {**key, "fp32_gflops": round(fp32, 1), "bf16_gflops": round(bf16, 1),
                          "speedup": round(speedup, 3)})
    except OSError as err:  # a read-only cache costs a re-measurement per process, nothing else
        log.warning("hardware: cannot record the bf16 timing in %s: %s", path, err)
    return round(speedup, 3)


def choose_cpu_precision(flags: Sequence[str], speedup: float | None) -> tuple[str, str]:
    """(precision, why) for ``hardware.precision=auto`` on CPU, from the native flags and the measured speed-up."""
    if not flags:
        return "fp32", "cpu has no native bf16 (neither avx512_bf16 nor amx); fp32"
    have = "cpu has " + ", ".join(flags)
    if speedup is None:
        return "fp32", f"{have} but bf16 speed was not measured; fp32"
    if speedup >= MIN_SPEEDUP:
        return "bf16", f"{have}; bf16 matmul measured {speedup:.2f}x fp32"
    return "fp32", f"{have} but bf16 matmul measured only {speedup:.2f}x fp32 (below {MIN_SPEEDUP}x); fp32"
