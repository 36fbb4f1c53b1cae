"""A full disk: one line naming the path, a metrics.json that says failed, no half artifact, and a stage
cache that cannot be written costs a warning, never a trial.

The full disk is a real 3 MB tmpfs (the tiny model's adapter folder, with its tokenizer, takes about 12 MB).
Mounting one needs root, as on the CI machine; elsewhere these tests skip and say why.
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest

from sweep.pipeline import run_pipeline
from sweep.run_record import read_metrics, reserve_metrics, write_metrics
from tests.conftest import compose_config
from tests.faults.common import run_module

TRIAL = ("+level=4", "model=tiny-qwen3", "hardware=cpu", "wandb.mode=offline", "data.n_train=8", "data.n_eval=2",
         "train.batch_size=4", "stages=[traces,filter,train]")


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a 3 MB tmpfs here (needs root): {result.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def leftovers(root: Path) -> list[str]:
    """Temp files and folders of an interrupted write."""
    return [str(path) for path in root.rglob("*") if path.name.endswith((".tmp", ".partial", ".old"))
            or path.name.startswith(".adapter-")]


def test_a_full_run_dir_is_one_line_and_leaves_no_half_adapter(small_disk, tmp_path):
    run = small_disk / "run"
    result = run_module("sweep", *TRIAL, f"hydra.run.dir={run}", f"cache.dir={tmp_path / 'cache'}", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output and "Logging error" not in output
    errors = [line for line in output.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1, output
    assert errors[0].endswith(f"no space left on device writing {run / 'adapter'}: free some space or point the run "
                              "dir (hydra.run.dir / hydra.sweep.dir) or the stage cache (cache.dir) elsewhere")
    metrics = read_metrics(run)
    assert metrics["status"] == "failed" and metrics["error"].startswith("StorageError: no space left on device")
    assert not (run / "adapter").exists() and leftovers(run) == []


def fill(disk: Path) -> None:
    """Fill ``disk`` to the last byte."""
    with (disk / "filler").open("wb", buffering=0) as filler:
        with pytest.raises(OSError):
            while True:
                filler.write(b"\0" * 4096)


def test_a_full_stage_cache_warns_and_the_trial_completes(small_disk, tmp_path, caplog):
    # The same store path serves every stage (traces, filter, an adapter): the data stages show it without a model.
    caplog.set_level(logging.WARNING, logger="training.caching.stage_cache")
    cache = small_disk / "cache"
    fill(small_disk)
    summary = run_pipeline(compose_config(*TRIAL, "stages=[traces,filter]", f"cache.dir={cache}"), tmp_path / "run")
    assert summary["status"] == "completed" and summary["filter"]["kept_problems"] == 8
    for stage in ("traces", "filter"):
        assert f"{stage}: could not store cache entry" in caplog.text
    assert caplog.text.count("the trial goes on without it") == 2
    assert list(cache.glob("*/*/summary.json")) == [] and leftovers(cache) == []
    assert [path.name for path in cache.glob("*/*") if not path.name.endswith(".lock")] == []


def test_the_failed_record_fits_in_the_space_reserved_at_the_start(small_disk):
    run = small_disk / "run"
    run.mkdir()
    reserve_metrics(run, {"status": "running", "run_dir": str(run)})
    assert read_metrics(run)["status"] == "running"
    fill(small_disk)
    record = {"status": "failed", "error": "StorageError: no space left on device " + "x" * 9000, "run_dir": str(run),
              "data": {"rows": list(range(2000))}}  # too big for the reservation: it is cut, not lost
    write_metrics(run, record)
    written = json.loads((run / "metrics.json").read_text())
    assert written["status"] == "failed" and written["error"].startswith("StorageError: no space left on device")
    assert written["error"].endswith(" ...") and "data" not in written
    assert leftovers(run) == []
