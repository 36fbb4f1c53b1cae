"""Hydra callbacks. Configured in ``conf/config.yaml`` under ``hydra.callbacks``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sweep.search.summary_csv import SUMMARY_CSV, rows_from_sweep_dir, state_counts, write_summary

log = logging.getLogger(__name__)


class GridSummary(Callback):
    """After a grid multirun (Hydra's basic sweeper), write ``sweep_summary.csv`` from its run dirs.

    The Optuna sweeper writes its own summary from the study, which also knows trials that
    never got a run dir; this callback leaves that file alone.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if "pareto_sweeper" in str(config.hydra.sweeper.get("_target_", "")):
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = rows_from_sweep_dir(sweep_dir)
        if rows:
            path = write_summary(rows, sweep_dir / SUMMARY_CSV)
            log.info("sweep summary: %s (%s); plots and report: python -m analysis report %s", path,
                     ", ".join(f"{n} {s.lower()}" for s, n in state_counts(rows).items()), sweep_dir)
