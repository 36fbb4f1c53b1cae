"""Shared fixtures: real shipped data, the real Hydra config, run in one process."""

from __future__ import annotations

import json
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
