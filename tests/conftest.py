"""Shared fixtures: real shipped data, the real Hydra config, run in one process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sweep.cli import compose_config
from training.caching.stage_cache import STAGE_CACHE_ENV
from training.data.problems import _package_file

__all__ = ["compose_config"]


@pytest.fixture(scope="session")
def gsm8k_train_rows() -> list[dict]:
    cfg = compose_config("+level=4", "data=gsm8k")
    path = _package_file(cfg.data, "train")
    with path.open() as handle:
        return [json.loads(line) for line in handle]


# The modules that take longest, first: `make test` runs the suite on several workers (pytest-xdist, one module
# per worker at a time), and a long module started last would leave one worker idle while it runs.
HEAVY_FIRST = ("faults/test_postgres.py", "test_sweeps.py", "test_submitit.py", "test_train_eval.py", "test_config.py",
               "test_cli.py", "faults/test_bad_inputs.py", "test_distributed.py", "test_latent_eval.py",
               "test_latent_warmup.py", "test_pipeline.py", "test_data.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def weight(item: pytest.Item) -> int:
        path = item.path.as_posix()
        return next((i for i, name in enumerate(HEAVY_FIRST) if path.endswith(f"tests/{name}")), len(HEAVY_FIRST))

    items.sort(key=weight)  # stable: each module keeps its tests' order


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker runs on cores of its own (and so do the trials it starts: affinity is
    inherited), so that the workers' torch threads do not outnumber the cores. Trials size their threads
    from the cores they may use (training.models.hardware.usable_cores)."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not worker or not count or not hasattr(os, "sched_setaffinity"):
        return
    cores, index, n = sorted(os.sched_getaffinity(0)), int(worker.removeprefix("gw")), int(count)
    if len(cores) >= n:
        os.sched_setaffinity(0, cores[index * len(cores) // n:(index + 1) * len(cores) // n])


@pytest.fixture(scope="session", autouse=True)
def tiny_model_built() -> None:
    """The tiny student is built (once per machine, in the model cache) before any test: a subprocess test that
    checks a run prints one error line must not also print the build's log, whichever test happens to run first."""
    from training.models.loading import model_path

    model_path(compose_config("+level=4", "model=tiny-qwen3").model)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture(scope="session", autouse=True)
def session_stage_cache(tmp_path_factory: pytest.TempPathFactory):
    """Module- and session-scoped fixtures, set up before any per-test cache, never touch the user's cache either."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(STAGE_CACHE_ENV, str(tmp_path_factory.mktemp("session-stage-cache")))
        yield


@pytest.fixture(autouse=True)
def fresh_stage_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test starts with an empty stage cache (subprocesses inherit it), so no test sees another's traces."""
    path = tmp_path / "stage-cache"
    monkeypatch.setenv(STAGE_CACHE_ENV, str(path))
    return path


@pytest.fixture(scope="module")
def wandb_logged():
    """Every dict the trials of a test module log to W&B: a spy on ``Run.log`` (the offline .wandb file once, under
    load, still lacked the last keys when read; see tests/test_distributed.py)."""
    from wandb.sdk.wandb_run import Run

    entries, log = [], Run.log

    def spy(run, data, *args, **kwargs):
        entries.append(data)
        return log(run, data, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Run, "log", spy)
        yield entries
