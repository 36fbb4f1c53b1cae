"""Every setting a trial's stages will use, checked before any of them starts.

A bad value used to surface where it was first read: ``train.lora_r=0`` after the student had loaded,
``eval.extractor=bogus`` after the whole evaluation had run. :func:`check_config` reads each config group a
stage will use through its schema (:mod:`training.config.schema`, the one place each rule is written; the
stages read their settings through the same schemas), all at once, in well under a second: no model is
loaded and no file written. Three checks span more than one group and stay here: ``eval.n_shots`` against the
level's exemplars, the adapter folder an eval-only run loads, and what the latent level's evaluation needs
(an adapter trained at it, thinking on, no exemplars).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sweep.stages import PLAN, resolve_stages
from training.config.schema import teacher_schema
from training.config.settings import as_int, read_settings
from training.data.levels import build_prompt, level_from_config
from training.evaluation.latent import check_latent_eval
from training.models.student import read_adapter_config

# The order groups are checked in: the teacher comes last, as its settings interpolate others (think tags, the
# self teacher's model and sampling) and a bad value is best named where the user set it. A group only a new
# stage reads goes before the teacher.
ORDER = ("data", "model", "hardware", "train", "eval", "sampling", "filter")


def stage_settings(stages: Sequence[str]) -> dict[str, type | None]:
    """The config groups ``stages`` read, each with the schema to read it by (the most specific one a stage
    declares: ``train`` in full for the train stage, its quantization alone for an eval-only trial)."""
    wanted: dict[str, type | None] = {}
    for stage in PLAN:
        if stage.name not in stages:
            continue
        for group, schema in stage.settings.items():
            known = wanted.get(group)
            if group not in wanted or (schema is not None and known is not None and issubclass(schema, known)):
                wanted[group] = schema
    rank = {group: i for i, group in enumerate(ORDER)}
    return dict(sorted(wanted.items(), key=lambda item: (item[0] == "teacher", rank.get(item[0], len(ORDER)))))


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
    for group, schema in stage_settings(stages).items():
        settings[group] = read_settings(schema or teacher_schema(cfg[group]), cfg[group], group)
    if "eval" in stages:
        # More exemplars than the level has is build_prompt's own check; a throwaway prompt runs it now.
        level = level_from_config(cfg.get("level"))
        build_prompt(level, "", None, settings["eval"].n_shots)
        if "train" not in stages and adapter not in ("auto", "none"):
            read_adapter_config(Path(adapter))
        check_latent_eval(level, settings["eval"].thinking, settings["eval"].n_shots, adapter, "train" in stages)
    return settings
