"""Data-parallel training of one trial: the trial launches torchrun workers, waits, and reads back the adapter.

The sweep stays one process per trial. For ``hardware.num_processes`` > 1 the trial writes a
job file (the resolved model, train and hardware settings, the rows file, the run dir) and
runs ``python -m torch.distributed.run --standalone --nproc-per-node N -m training.sft.train_worker
JOB``. Every worker loads the student on its own device and runs the same ``train_and_save`` as a
single-process trial; the HF Trainer sees torchrun's environment and wraps the model in DDP.
Rank 0 saves the adapter into ``<run_dir>/adapter`` and its summary into the job folder, which
this side returns; the trial then loads the student and attaches that adapter for eval.

Why torchrun rather than ``accelerate launch``: torchrun's only inputs are the flags built
here, while ``accelerate launch`` also reads the user's ``accelerate config`` file, which could
silently change the precision or process count behind the trial's config. ``--standalone``
rendezvouses on a free port, so trials running side by side never collide on 29500, and
torchrun's agent stops every worker when one fails, so no rank is left waiting on a collective.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training.common import errors
from training.common.jsonl import write_json
from training.models.hardware import Hardware, threads_per_process

log = logging.getLogger(__name__)

WORKER_MODULE = "training.sft.train_worker"
JOB_DIR = "train_job"  # in the run dir: job.json in, summary.json (rank 0) and error-rank<N>.json out
JOB_FILE = "job.json"
SUMMARY_FILE = "summary.json"
LAUNCH_LOG = "train_launch.log"  # in the run dir: every worker's output, and torchrun's
TAIL_LINES = 40


def error_file(job_dir: Path, rank: int) -> Path:
    return job_dir / f"error-rank{rank}.json"


def launch_command(job_path: Path, num_processes: int) -> list[str]:
    # sys.executable: the workers run in this trial's interpreter and virtualenv, whatever is on PATH.
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={num_processes}",
            "-m", WORKER_MODULE, str(job_path)]


def worker_env(hardware: Hardware, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The workers' environment: their share of the CPU threads, and no W&B of their own."""
    return {
        **environ,
        # torchrun would set 1 when unset; each worker gets its share of num_threads instead.
        "OMP_NUM_THREADS": str(threads_per_process(hardware)),
        # The trial's W&B run is open in this process and logs the returned loss history; a worker must not start one.
        "WANDB_MODE": "disabled",
        "PYTHONUNBUFFERED": "1",  # a crashed worker's last lines reach the log
    }


def build_job(rows_path: Path, model_cfg: Mapping[str, Any], train_cfg: Mapping[str, Any], hardware: Hardware,
              run_dir: Path, base_path: str) -> dict[str, Any]:
    """The job file's content: plain, resolved values only (workers never see Hydra).

    The workers load ``base_path``, the base-model folder the trial resolved (a converted GGUF, a built tiny
    model), as a local ``hub`` folder: the very weights the trial evaluates, and no worker converts its own copy.
    """
    model = {**model_cfg, "source": "hub", "path": str(base_path)}
    return {"model": model, "train": dict(train_cfg), "hardware": dataclasses.asdict(hardware),
            "rows": str(Path(rows_path).resolve()), "run_dir": str(Path(run_dir).resolve())}


def train_distributed(rows_path: Path, model_cfg: Mapping[str, Any], train_cfg: Mapping[str, Any],
                      hardware: Hardware, run_dir: Path, *, base_path: str) -> dict[str, Any]:
    """Train the adapter in ``hardware.num_processes`` torchrun workers; return rank 0's train summary."""
    job_dir = run_dir / JOB_DIR
    job_dir.mkdir(parents=True, exist_ok=True)
    for stale in [job_dir / SUMMARY_FILE, *job_dir.glob("error-rank*.json")]:  # a rerun in the same run dir
        stale.unlink(missing_ok=True)
    write_json(job_dir / JOB_FILE, build_job(rows_path, model_cfg, train_cfg, hardware, run_dir, base_path))
    log_path = run_dir / LAUNCH_LOG
    log.info("train: data-parallel in %d processes (%d CPU threads each), output in %s", hardware.num_processes,
             threads_per_process(hardware), log_path)
    code = _run_teed(launch_command(job_dir / JOB_FILE, hardware.num_processes), worker_env(hardware), log_path)
    if code != 0:
        raise _failure(job_dir, log_path, code)
    if not (job_dir / SUMMARY_FILE).is_file():
        raise errors.TrainingError(f"data-parallel training exited cleanly but rank 0 wrote no summary; "
                                   f"see {log_path}:\n{log_tail(log_path)}")
    return json.loads((job_dir / SUMMARY_FILE).read_text())


def _run_teed(command: list[str], env: dict[str, str], log_path: Path) -> int:
    """Run ``command``, copying its output to ``log_path`` and to our stderr, where a user watches progress."""
    with log_path.open("wb") as log_file, subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                                           stderr=subprocess.STDOUT) as proc:
        try:
            for chunk in iter(lambda: proc.stdout.read1(1 << 16), b""):
                log_file.write(chunk)
                sys.stderr.write(chunk.decode(errors="replace"))
            return proc.wait()
        except BaseException:  # Ctrl-C or a broken stderr: take the workers down with us, never orphan a GPU job
            proc.terminate()  # torchrun forwards SIGTERM to its workers
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of a log, progress bars' carriage returns read as line ends."""
    text = path.read_bytes()[-64_000:].decode(errors="replace").replace("\r", "\n")
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def _failure(job_dir: Path, log_path: Path, code: int) -> errors.CotParetoError:
    """The error to raise: a worker's user-fixable error as it was raised (a NaN loss, a bad setting), else a
    TrainingError naming the failed worker's exception, if it got to record one, above the log's tail."""
    # The first report written is the cause: a rank whose peer died then fails too, on a broken collective.
    reports = sorted(job_dir.glob("error-rank*.json"), key=lambda path: path.stat().st_mtime_ns)
    report = json.loads(reports[0].read_text()) if reports else None
    if report and report.get("user_error"):
        kind = getattr(errors, str(report["type"]), None)
        kind = kind if isinstance(kind, type) and issubclass(kind, errors.CotParetoError) else errors.TrainingError
        return kind(str(report["message"]))
    cause = f"worker {reports[0].stem.removeprefix('error-')} raised {report['type']}: {report['message']}; " \
        if report else ""
    return errors.TrainingError(f"data-parallel training failed (torchrun exit code {code}): {cause}"
                                f"last lines of {log_path}:\n{log_tail(log_path)}")
