"""Every setting a trial's stages will use, checked before any of them starts.

A bad value used to surface where it was first read: ``train.lora_r=0`` after the student had loaded,
``eval.extractor=bogus`` after the whole evaluation had run. :func:`check_config` reads each config group a
stage will use through its schema (:mod:`training.config.schema`, the one place each rule is written; the
stages read their settings through the same schemas), all at once, in well under a second: no model is
loaded and no file written. Two checks span more than one group and stay here: ``eval.n_shots`` against the
level's exemplars, and the adapter folder an eval-only run loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sweep.stages import resolve_stages
from training.config.schema import (
    DataSettings,
    EvalSettings,
    FilterSettings,
    HardwareSettings,
    ModelSettings,
    QuantSettings,
    SamplingSettings,
    TrainSettings,
    teacher_schema,
)
from training.config.settings import as_int, read_settings
from training.data.levels import build_prompt, level_from_config
from training.models.student import read_adapter_config

# Which stages read each group: a group is checked when one of them runs (None: the teacher's kind decides).
# The teacher comes last: its settings interpolate others (think tags, the self teacher's model and sampling),
# and a bad value is best named where the user set it.
READERS = (
    ("data", DataSettings, ("traces", "eval")),
    ("model", ModelSettings, ("filter", "train", "eval")),  # the filter counts think tokens with its tokenizer
    ("hardware", HardwareSettings, ("train", "eval")),
    ("train", QuantSettings, ("eval",)),  # the student is loaded with them, for eval alone too
    ("train", TrainSettings, ("train",)),
    ("eval", EvalSettings, ("eval",)),
    ("sampling", SamplingSettings, ("eval",)),
    ("filter", FilterSettings, ("filter",)),
    ("teacher", None, ("traces",)),
)


def check_config(cfg: DictConfig, stages: Sequence[str] | None = None) -> dict[str, Any]:
    """The typed settings of every group the stages read, by group name; ConfigError (or DataError, for an
    adapter folder's file) naming the first bad setting.

    ``stages`` is the resolved stage list; None resolves ``cfg.stages``. A group is checked when one of the
    stages reads it, so ``stages=[traces]`` is not refused for a train setting it never uses.
    """
    adapter = str(cfg.get("adapter", "auto"))
    stages = resolve_stages(cfg.get("stages"), adapter) if stages is None else list(stages)
    as_int(cfg.get("seed", 0), "seed", 0)
    settings: dict[str, Any] = {}
    for group, schema, readers in READERS:
        if any(stage in stages for stage in readers):
            settings[group] = read_settings(schema or teacher_schema(cfg[group]), cfg[group], group)
    if "eval" in stages:
        # More exemplars than the level has is build_prompt's own check; a throwaway prompt runs it now.
        build_prompt(level_from_config(cfg.get("level")), "", None, settings["eval"].n_shots)
        if "train" not in stages and adapter not in ("auto", "none"):
            read_adapter_config(Path(adapter))
    return settings
