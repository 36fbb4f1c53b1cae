"""The stages of a trial, in execution order; each module declares one :class:`~sweep.stages.base.Stage`.

A new stage is one module with a ``STAGE`` and one entry in :data:`STAGES`.
"""

from __future__ import annotations

import logging
from typing import Any

from sweep.stages import eval as eval_stage
from sweep.stages import filter as filter_stage
from sweep.stages import traces as traces_stage
from sweep.stages import train as train_stage
from sweep.stages.base import Stage
from training.common.errors import ConfigError

log = logging.getLogger(__name__)

PLAN: tuple[Stage, ...] = (traces_stage.STAGE, filter_stage.STAGE, train_stage.STAGE, eval_stage.STAGE)
STAGES = tuple(stage.name for stage in PLAN)  # the names ``stages=[...]`` accepts
MODEL_STAGES = tuple(stage.name for stage in PLAN if stage.needs_model)


def resolve_stages(requested: Any, adapter: str = "auto") -> list[str]:
    """The stages to run, in execution order; ``adapter=none`` (the baseline) drops ``train``."""
    names = [requested] if isinstance(requested, str) else list(requested or [])
    for name in names:
        if name not in STAGES:
            raise ConfigError(f"unknown stage {name!r} in stages={names} (valid: {', '.join(STAGES)})")
    if not names:
        raise ConfigError(f"stages is empty; list any of {', '.join(STAGES)}")
    if adapter == "none" and "train" in names:
        log.info("adapter=none: evaluating the base model, so the train stage is skipped")
        names = [name for name in names if name != "train"]
    return [name for name in STAGES if name in names]
