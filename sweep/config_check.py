"""Every setting a trial's stages will use, checked before any of them starts.

A bad value used to surface where it was first read: ``train.lora_r=0`` after the student had loaded,
``eval.extractor=bogus`` after the whole evaluation had run. :func:`check_config` runs the same checks
the stages themselves run (each rule lives beside the code that reads the setting: ``check_*_settings``
in ``training``), all at once, in well under a second: no model is loaded and no file written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from sweep.stages import MODEL_STAGES, resolve_stages
from training.data import check_data_settings
from training.evaluate import check_eval_settings
from training.filtering import check_filter_settings
from training.generation import generation_kwargs
from training.hardware import check_hardware_settings
from training.levels import build_prompt, level_from_config
from training.student import read_adapter_config
from training.settings import as_int
from training.sft import check_quant_settings, check_train_settings


def check_config(cfg: DictConfig, stages: Sequence[str] | None = None) -> None:
    """Raise ConfigError (or DataError, for an adapter folder's file) naming the first bad setting.

    ``stages`` is the resolved stage list; None resolves ``cfg.stages``. A group is checked when one of the
    stages reads it, so ``stages=[traces]`` is not refused for a train setting it never uses.
    """
    adapter = str(cfg.get("adapter", "auto"))
    stages = resolve_stages(cfg.get("stages"), adapter) if stages is None else list(stages)
    as_int(cfg.get("seed", 0), "seed", 0)
    if "traces" in stages or "eval" in stages:
        check_data_settings(cfg.data)
    if "filter" in stages:
        check_filter_settings(cfg.filter)
    if any(stage in MODEL_STAGES for stage in stages):
        check_hardware_settings(cfg.hardware)
        check_quant_settings(cfg.train)  # the student is loaded with them, for eval alone too
    if "train" in stages:
        check_train_settings(cfg.train)
    if "eval" in stages:
        check_eval_settings(cfg.eval)
        generation_kwargs(cfg.sampling)
        # More exemplars than the level has is build_prompt's own check; a throwaway prompt runs it now.
        build_prompt(level_from_config(cfg.get("level")), "", None, int(cfg.eval.get("n_shots", 0)))
        if "train" not in stages and adapter not in ("auto", "none"):
            read_adapter_config(Path(adapter))
