"""Train a LoRA adapter on a loaded student and save it whole: the one training step of a trial or a torchrun rank."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from training.common.atomic import replace_atomically
from training.models.hardware import Hardware
from training.models.student import Student
from training.sft.trainer import train_adapter

log = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"  # in the run dir: what the train stage makes and the eval stage loads
TRAINER_DIR = "trainer"  # the HF Trainer's output dir (its checkpoints, if any)


def train_and_save(student: Student, rows: Sequence[Mapping[str, Any]], model_cfg: Mapping[str, Any],
                   train_cfg: Mapping[str, Any], hardware: Hardware, run_dir: Path,
                   report_to: Sequence[str] = (), save: bool = True) -> dict[str, Any]:
    """Train a LoRA adapter on ``rows`` and save it (weights and tokenizer) to ``run_dir/adapter``.

    With a validation split and ``train.load_best_model_at_end``, the adapter saved is the best-validated one
    (:mod:`training.sft.early_stopping`). ``save=False`` is for the ranks other than 0 of a data-parallel run:
    they hold the same weights, and one writer per folder keeps the adapter whole.
    """
    model, summary = train_adapter(rows, student.model, student.tokenizer, train_cfg, hardware, run_dir / TRAINER_DIR,
                                   chat_template_kwargs=model_cfg.get("chat_template_kwargs"),
                                   think_tags=(model_cfg["think"]["open"], model_cfg["think"]["close"]),
                                   report_to=report_to)
    adapter_dir = run_dir / ADAPTER_DIR
    if save:
        def save_to(folder: Path) -> None:
            model.save_pretrained(folder)
            student.tokenizer.save_pretrained(folder)

        # Saved under a temp name and renamed: a save that fails (a full disk) leaves no half adapter that a
        # later eval-only run would load.
        replace_atomically(adapter_dir, save_to)
        log.info("train: adapter saved to %s", adapter_dir)
    student.model, student.adapter = model, str(adapter_dir)
    # n_train: the rows trained on; a validation split (train.val_fraction) is counted apart, as n_val.
    summary.update(n_train=len(rows) - summary.get("n_val", 0), adapter=str(adapter_dir))
    return summary
