"""One W&B run per trial: offline unless the user has a key, always closed, failed or not.

``wandb.mode``: ``auto`` (online when ``WANDB_API_KEY`` is set, offline otherwise),
``online``, ``offline`` or ``disabled``. A ``WANDB_MODE`` in the environment wins,
as W&B users expect. Offline runs land in ``<run dir>/wandb`` and upload later
with ``wandb sync``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from training.common.errors import ConfigError

log = logging.getLogger(__name__)

MODES = ("auto", "online", "offline", "disabled")
SAMPLE_COLUMNS = ("id", "gold", "extracted", "correct", "think_tokens", "completion_tokens", "output")


def resolve_mode(requested: str, environ: Mapping[str, str] = os.environ, explicit: bool = False) -> str:
    """The W&B mode to run in. ``explicit``: ``requested`` came from a command-line flag, which beats a
    ``WANDB_MODE`` in the environment unless it is ``auto`` (a trial's config value does not: the
    data-parallel workers are silenced through ``WANDB_MODE=disabled``)."""
    if requested not in MODES:
        raise ConfigError(f"wandb.mode={requested!r} is not one of {', '.join(MODES)}")
    if environ.get("WANDB_MODE") and not (explicit and requested != "auto"):
        return environ["WANDB_MODE"]
    if requested == "auto":
        return "online" if environ.get("WANDB_API_KEY") else "offline"
    return requested


def run_name(cfg: DictConfig) -> str:
    """``L4-smollm2-135m-r16`` for a trained adapter, ``L4-smollm2-135m-base`` for the baseline; ``latent-...`` at
    the latent level."""
    level = "latent" if OmegaConf.select(cfg, "level.latent", default=None) is not None \
        else f"L{OmegaConf.select(cfg, 'level.id', default='none')}"
    model = OmegaConf.select(cfg, "model.name", default="model")
    if str(cfg.get("adapter", "auto")) == "none":
        return f"{level}-{model}-base"
    return f"{level}-{model}-r{OmegaConf.select(cfg, 'train.lora_r', default='?')}"


class Tracker:
    """What a trial logs; a no-op when W&B is disabled."""

    def __init__(self, run: Any) -> None:
        self.run = run

    @property
    def report_to(self) -> list[str]:
        """For the HF Trainer: it then logs the training loss into this same run."""
        return ["wandb"] if self.run is not None else []

    def log_train_history(self, history: Sequence[Mapping[str, Any]],
                          val_history: Sequence[Mapping[str, Any]] = (), prefix: str = "train") -> None:
        """A loss curve trained elsewhere (data-parallel workers, or the trial that filled the stage cache), and its
        validation curve if it had one (early stopping), under the names the HF Trainer logs in process."""
        if self.run is None:
            return
        for entry in history:
            self.run.log({f"{prefix}/loss": entry["loss"], f"{prefix}/global_step": entry["step"]})
        for entry in val_history:
            self.run.log({"eval/loss": entry["loss"], f"{prefix}/global_step": entry["step"]})

    def log_metrics(self, metrics: Mapping[str, Any], prefix: str = "eval") -> None:
        """Charts under ``prefix/``; the summary under the plain names for ``eval`` (the trial's headline
        evaluation), else under ``prefix/`` too (the no-think evaluation of ``eval.thinking=both``)."""
        if self.run is None:
            return
        scalars = {f"{prefix}/{k}": v for k, v in metrics.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}
        self.run.log(scalars)
        self.run.summary.update({(k if prefix == "eval" else f"{prefix}/{k}"): v for k, v in metrics.items()
                                 if isinstance(v, int | float | str | list)})

    def log_samples(self, rows: Sequence[Mapping[str, Any]], limit: int, prefix: str = "eval") -> None:
        if self.run is None or not rows:
            return
        import wandb

        table = wandb.Table(columns=list(SAMPLE_COLUMNS))
        for row in rows[:limit]:
            table.add_data(*[row.get(col) for col in SAMPLE_COLUMNS])
        self.run.log({f"{prefix}/samples": table})


@contextmanager
def wandb_run(cfg: DictConfig, run_dir: Path, group: str) -> Iterator[Tracker]:
    """Open the trial's W&B run; finish it with exit code 1 if the trial raises."""
    wcfg = cfg.get("wandb") or {}
    mode = resolve_mode(str(wcfg.get("mode", "auto")))
    if mode == "disabled":
        yield Tracker(None)
        return
    import wandb

    run = wandb.init(
        project=str(wcfg.get("project") or "cot-pareto"),
        entity=wcfg.get("entity") or None,
        group=str(wcfg.get("group") or group),
        name=run_name(cfg),
        tags=list(wcfg.get("tags") or []),
        config=OmegaConf.to_container(cfg, resolve=True),
        dir=str(run_dir),
        mode=mode,
        reinit="finish_previous",  # one process may run many trials (Hydra's basic launcher)
        settings=wandb.Settings(silent=True),  # our log says where the run is; keep the console to one line per event
    )
    log.info("wandb: %s run %s in %s", mode, run.name, run_dir / "wandb")
    try:
        yield Tracker(run)
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.finish()
