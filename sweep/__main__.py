# Run one trial: python -m sweep +level=4 [model=tiny-qwen3] [stages=[traces,filter,train,eval]] [adapter=none]
# A grid:        python -m sweep -m +level=1,2,3,4,5 train.lora_r=8,32
# A search:      python -m sweep -m +search=pareto
"""Hydra entry point. Thin on purpose: all work happens in :func:`sweep.pipeline.run_pipeline`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from sweep.cli import prepare_overrides
from sweep.pipeline import run_pipeline
from training.common.errors import CotParetoError

log = logging.getLogger("sweep")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    group = Path(hydra_cfg.sweep.dir).name if multirun else "runs"
    try:
        run_pipeline(cfg, run_dir, group)
    except CotParetoError as err:
        # A user error: one line, no traceback; metrics.json in the run dir records it too.
        log.error("%s", err)
        if multirun:
            return  # one failed trial must not end the sweep: the others still run
        sys.exit(2)
    except Exception:
        if not multirun:
            raise
        # A crash in one trial of a sweep: the traceback goes to this trial's log, the sweep goes on.
        log.exception("trial failed (recorded in %s)", run_dir / "metrics.json")
        return
    log.info("run dir: %s", run_dir)


if __name__ == "__main__":
    # A log file on a full disk must not print a traceback per log line: the error itself is reported once.
    logging.raiseExceptions = False
    try:
        sys.argv[1:] = prepare_overrides(sys.argv[1:])
    except CotParetoError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    main()
