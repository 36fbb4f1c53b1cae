"""Shared fixtures: real shipped data, the real Hydra config, run in one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from sweep.cli import CONF_DIR, prepare_overrides
from training.data import _package_file


def compose_config(*overrides: str) -> DictConfig:
    """The real config, composed the way ``python -m sweep`` composes it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=prepare_overrides(list(overrides)))


@pytest.fixture(scope="session")
def gsm8k_train_rows() -> list[dict]:
    cfg = compose_config("+level=4")
    path = _package_file(cfg.data, "train")
    with path.open() as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"
