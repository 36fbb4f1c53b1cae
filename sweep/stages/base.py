"""What a stage declares, what the pipeline hands it, and the one place where stages meet the stage cache.

A stage is a :class:`Stage`: its name, the inputs it reads (:class:`Input`), the files it writes into the
run dir, the config groups its cache key covers, and one ``run(ctx, inputs)`` that returns its result. The
pipeline loops over the declared stages and calls :func:`run_stage` for each; a new stage (a second SFT
phase, a self-distillation round) is one module that declares a ``STAGE`` and one entry in
``sweep.stages.STAGES``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from training.caching.stage_cache import cache_dir, content_digest, run_cached
from training.common.errors import ConfigError, DataError
from training.config.schema import read_group
from training.data.levels import Level
from training.data.problems import Splits
from training.models.hardware import Hardware
from training.models.loading import plain_values


@dataclass
class TrialContext:
    """What one trial's stages share: its config, run dir and level, plus what earlier steps made.

    ``results`` holds each finished stage's result by name; stages read it, only the pipeline writes it.
    ``hardware`` and ``tracker`` are set by the pipeline before the first model stage. ``settings`` holds the
    typed settings ``check_config`` read, by group; stages read their groups through :meth:`group`.
    """

    cfg: DictConfig
    run_dir: Path
    level: Level
    stages: list[str]
    splits: Splits | None = None
    hardware: Hardware | None = None
    tracker: Any = None  # sweep.tracking.Tracker
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def group(self, name: str) -> Any:
        """The typed settings of config group ``name`` (read through its schema if the check did not)."""
        if name not in self.settings:
            self.settings[name] = read_group(name, self.cfg[name])
        return self.settings[name]

    @functools.cached_property
    def quantization(self) -> str:
        """``nf4`` or ``none``: what the student's weights are during training (bitsandbytes may not run here)."""
        from training.sft.trainer import resolve_quant_config

        return "nf4" if resolve_quant_config(self.cfg.train, self.hardware) is not None else "none"


@dataclass(frozen=True)
class Input:
    """Something a stage reads. ``resolve`` finds it (a path, or rows in memory); ``digest`` gives its content
    hash for the cache key (None: not part of any key)."""

    name: str
    resolve: Callable[[TrialContext, str], Any]
    digest: Callable[[Any], str] | None = None


def file_input(name: str, file: str, producer: str, override: str) -> Input:
    """A file made by ``producer`` earlier in this trial, or given by path as ``+<override>=PATH`` when the
    trial does not run ``producer``. Its key digest is the file's bytes."""

    def resolve(ctx: TrialContext, stage: str) -> Path:
        if producer in ctx.stages:
            return ctx.run_dir / file
        group, key = override.split(".")
        if ctx.cfg[group].get(key):
            return Path(ctx.cfg[group][key])
        raise ConfigError(f"stage {stage!r} needs {producer} output: add {producer!r} to stages or set +{override}=PATH")

    return Input(name, resolve, _file_digest)


def _file_digest(path: Path) -> str:
    if not path.is_file():  # a missing file given by path is the user's to fix
        raise DataError(f"{path}: no such file")
    return content_digest(path)


@dataclass(frozen=True)
class Stage:
    """One step of a trial. ``settings`` maps each config group it reads to the schema it reads it with (None:
    the teacher's, by its kind), so that ``check_config`` checks them before any stage starts. ``cache_key``
    lists the config groups its output depends on besides its inputs' content; None means the stage is never
    cached (evaluation: it is the measurement)."""

    name: str
    run: Callable[[TrialContext, dict[str, Any]], dict[str, Any]]
    record: Callable[[dict[str, Any]], dict[str, Any]]  # the TrialRecord fields its result fills
    settings: Mapping[str, type | None] = field(default_factory=dict)
    inputs: tuple[Input, ...] = ()
    outputs: tuple[str, ...] = ()
    cache_key: tuple[str, ...] | None = None
    # The key's settings less those that cannot change the output (how the work is done; features left off), so
    # that raising a teacher's concurrency or adding a setting that is off by default keeps cached work valid.
    key_settings: Callable[[dict[str, Any]], dict[str, Any]] = lambda settings: settings
    key_extra: Callable[[TrialContext], dict[str, Any]] = lambda ctx: {}
    cacheable: Callable[[dict[str, Any]], bool] = lambda result: True
    restored: Callable[[TrialContext, dict[str, Any]], dict[str, Any]] | None = None  # after a cache hit
    finish: Callable[[TrialContext, Any], None] | None = None  # once the trial's stages are over, if this one ran
    needs_model: bool = False


def cache_parts(cfg: DictConfig, stage: Stage, digests: Mapping[str, str], **extra: Any) -> dict[str, Any]:
    """``stage``'s cache key: its config groups, resolved, plus the content digests of what it reads.

    Upstream settings alone would let a filter run on a teacher outage's short traces be restored after
    the teacher recovers; the digest of ``traces.jsonl`` tells them apart.
    """
    parts = stage.key_settings({key: plain_values(cfg[key]) for key in stage.cache_key or ()})
    return {**parts, "inputs": dict(digests), **extra}


def stage_cache(cfg: DictConfig) -> Path | None:
    """The stage cache's root, or None when ``cache.enabled`` is off."""
    if not (cfg.get("cache") and cfg.cache.get("enabled")):
        return None
    return cache_dir(cfg.cache.get("dir"))


def run_stage(stage: Stage, ctx: TrialContext, complete_inputs: bool = True) -> dict[str, Any]:
    """Resolve ``stage``'s inputs, then restore its outputs from the cache or run it; return its result.

    ``complete_inputs=False`` (traces with failed teacher requests upstream) keeps the result out of the cache.
    """
    inputs = {item.name: item.resolve(ctx, stage.name) for item in stage.inputs}
    if stage.cache_key is None:
        return stage.run(ctx, inputs)
    digests = {item.name: item.digest(inputs[item.name]) for item in stage.inputs if item.digest}
    parts = cache_parts(ctx.cfg, stage, digests, **stage.key_extra(ctx))
    result = run_cached(stage_cache(ctx.cfg), stage.name, parts, ctx.run_dir, stage.outputs,
                        lambda: stage.run(ctx, inputs), cacheable=lambda out: complete_inputs and stage.cacheable(out))
    if result.get("cache") == "hit" and stage.restored is not None:
        result = stage.restored(ctx, result)
    return result
