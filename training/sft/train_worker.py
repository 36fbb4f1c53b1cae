"""One data-parallel training worker, started by torchrun from :mod:`training.sft.distributed`.

Usage (what the trial runs): ``python -m torch.distributed.run --standalone --nproc-per-node N
-m training.sft.train_worker <run_dir>/train_job/job.json``.

Each rank loads the student on its own device (NF4 needs ``device_map={"": local_rank}``) and
runs the single-process trial's ``train_and_save``; the HF Trainer reads torchrun's RANK and
WORLD_SIZE and wraps the model in DDP. Rank 0 alone writes the adapter and the summary. A rank
that fails leaves its error in a file: the trial re-raises a user-fixable one (a NaN loss, a bad
setting) as is, and names a crash's exception above the log tail.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from training.common.errors import CotParetoError
from training.common.jsonl import read_jsonl, write_json
from training.models.hardware import Hardware, apply_threads, threads_per_process
from training.sft.distributed import JOB_DIR, SUMMARY_FILE, error_file

log = logging.getLogger(__name__)


def rank_hardware(hardware: Hardware, local_rank: int) -> Hardware:
    """This rank's device (``cuda:<local_rank>``; CPU ranks share the CPU) and its share of the threads."""
    device = f"cuda:{local_rank}" if hardware.device == "cuda" else hardware.device
    return dataclasses.replace(hardware, device=device, num_threads=threads_per_process(hardware))


def batch_sizes(train_cfg: dict[str, Any], world_size: int) -> dict[str, int]:
    per_device = int(train_cfg["batch_size"])
    return {"world_size": world_size, "per_device_batch_size": per_device,
            "global_batch_size": per_device * world_size * int(train_cfg["grad_accum"])}


def run_job(job: dict[str, Any], rank: int, local_rank: int, world_size: int) -> None:
    from training.models.student import load_student
    from training.sft.lora_adapter import train_and_save

    run_dir = Path(job["run_dir"])
    rows = read_jsonl(job["rows"])  # before any model loads: a bad file fails in a second
    hardware = rank_hardware(Hardware(**job["hardware"]), local_rank)
    apply_threads(hardware)
    if hardware.device.startswith("cuda"):
        import torch

        # Before loading: bitsandbytes and accelerate check the model sits on the rank's current device.
        torch.cuda.set_device(local_rank)
    student = load_student(job["model"], job["train"], hardware)
    # report_to=(): the trial's W&B run lives in the parent, which logs the loss history it gets back.
    summary = train_and_save(student, rows, job["model"], job["train"], hardware, run_dir, report_to=(), save=rank == 0)
    if rank == 0:  # after the adapter is saved: the summary's presence means the adapter is whole
        summary.update(batch_sizes(job["train"], world_size), quantization=student.quantization)
        write_json(run_dir / JOB_DIR / SUMMARY_FILE, summary)


def main(argv: list[str]) -> int:
    rank, local_rank = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    logging.basicConfig(level=logging.INFO, format=f"[rank {rank}] %(asctime)s %(levelname)s %(name)s: %(message)s")
    job_path = Path(argv[0])
    try:
        run_job(json.loads(job_path.read_text()), rank, local_rank, world_size)
    except Exception as err:
        # The trial quotes this file first: torchrun's own failure report would push the error out of the log tail.
        write_json(error_file(job_path.parent, rank), {"type": type(err).__name__, "message": str(err),
                                                       "user_error": isinstance(err, CotParetoError)})
        if not isinstance(err, CotParetoError):
            raise  # a crash: its traceback belongs in the log
        log.error("%s: %s", type(err).__name__, err)
        return 1
    finally:
        _leave_process_group()
    return 0


def _leave_process_group() -> None:
    """Destroy the process group the Trainer made, so NCCL/gloo shut down cleanly rather than warn at exit."""
    if "torch" not in sys.modules:  # failed before torch loaded: no group, and no need to pay the import
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
