"""One Phase A run (bottleneck SFT, seed card 004): a PEFT model trained on rows of :mod:`training.latent.bottleneck`.

The HF ``Trainer``, not TRL's ``SFTTrainer``: TRL's collators build 2-D padding masks (or padding-free position
ids) and its metrics count tokens from a 2-D ``attention_mask``, so a custom 4-D mask has no way through. The
train group's settings (learning rate, batch size, epochs, seed, ...) are read as the SFT recipe reads them.

The loss projects only the positions whose next label counts (``logits_to_keep`` with a boolean mask): a Phase A
row has a few answer tokens after a long verbal CoT, and the LM head over every position would cost more than
the rest of the step on CPU (see :mod:`training.models.lm_head`). It is the model's own cross-entropy, summed over
the counted tokens and divided by the Trainer's count of them, so gradient accumulation weighs tokens alike.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from training.common.errors import TrainingError
from training.config.schema import TrainSettings
from training.config.settings import read_settings
from training.latent.bottleneck import IGNORE, PHASE_A_BLOCKED, BottleneckCollator
from training.models.hardware import Hardware
from training.sft.trainer import _finite_loss_callback, _trainer_settings, run_options

log = logging.getLogger(__name__)

_NOT_TRAINER_ARGS = ("max_length", "completion_only_loss", "group_by_length")  # SFTConfig's, or read here


def labelled_loss(model, batch: Mapping[str, Any], num_items_in_batch=None):
    """Mean cross-entropy of the labelled tokens (over ``num_items_in_batch`` when given), projecting only the
    positions that predict them."""
    import torch

    labels = batch["labels"]
    predicting = torch.zeros_like(labels, dtype=torch.bool)
    predicting[:, :-1] = labels[:, 1:] != IGNORE
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    logits = model(**inputs, logits_to_keep=predicting, use_cache=False).logits
    targets = labels[:, 1:][predicting[:, :-1]].to(logits.device)
    total = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else targets.numel()
    return total / torch.as_tensor(count, device=total.device).clamp(min=1)


def training_arguments(cfg: Mapping[str, Any], hardware: Hardware, output_dir: Path, report_to: Sequence[str] = ()):
    """The train group as ``TrainingArguments``: the SFT recipe's values and CPU choices, no checkpoints."""
    from transformers import TrainingArguments

    settings = _trainer_settings(read_settings(TrainSettings, cfg, "train"))
    return TrainingArguments(
        output_dir=str(output_dir),
        **{key: value for key, value in settings.items() if key not in _NOT_TRAINER_ARGS},
        save_strategy="no",  # the caller saves the adapter
        remove_unused_columns=False,  # the collator needs each row's segments, which the model never sees
        **run_options(settings, hardware, report_to),
    )


def _trainer_class():
    from transformers import Trainer

    class BottleneckTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = labelled_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and self.model_accepts_loss_kwargs \
                    and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # the count is over every process; DDP averages
            return (loss, None) if return_outputs else loss

    return BottleneckTrainer


def train_phase_a(rows: Sequence[Mapping[str, Any]], model, tokenizer, cfg: Mapping[str, Any], hardware: Hardware,
                  work_dir: Path, *, blocked: Sequence[tuple[str, str]] = PHASE_A_BLOCKED,
                  report_to: Sequence[str] = ()) -> dict[str, Any]:
    """Train the PEFT ``model`` in place on bottleneck ``rows`` (``build_row``'s) with the train group ``cfg``.

    Rows longer than ``train.max_length`` are left out (cutting one would cut its answer), and counted.
    ``blocked=()`` trains with plain causal attention (Phase B's rows). Returns the run's summary.
    """
    from transformers import set_seed

    settings = read_settings(TrainSettings, cfg, "train")
    kept = [dict(row) for row in rows if len(row["input_ids"]) <= settings.max_length]
    if not kept:
        raise TrainingError(f"no bottleneck row fits train.max_length={settings.max_length} "
                            f"(of {len(rows)} rows)" if rows else "no bottleneck rows to train on")
    if len(kept) < len(rows):
        log.warning("phase A: %d of %d rows are longer than train.max_length=%d and left out",
                    len(rows) - len(kept), len(rows), settings.max_length)
    args = training_arguments(cfg, hardware, work_dir, report_to)
    set_seed(args.seed)
    attention = model.config._attn_implementation
    collator = BottleneckCollator(tokenizer.pad_token_id, attention, blocked=blocked)
    trainer = _trainer_class()(model=model, args=args, train_dataset=kept, data_collator=collator,
                               callbacks=[_finite_loss_callback()])
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    if not math.isfinite(result.training_loss):
        raise TrainingError(f"phase A ended with loss {result.training_loss}")
    history = [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e]
    trainable, total = model.get_nb_trainable_parameters()
    tokens = sum(len(row["input_ids"]) for row in kept) * float(settings.epochs)
    summary = {
        "train_seconds": round(seconds, 3),
        "train_loss": round(float(result.training_loss), 5),
        "final_loss": round(float(history[-1]["loss"]), 5) if history else None,
        "steps": int(trainer.state.global_step),
        "train_tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
        "trainable_parameters": int(trainable),
        "total_parameters": int(total),
        "loss_history": history,
        "n_rows": len(kept),
        "n_too_long": len(rows) - len(kept),
        "attention": attention,
    }
    log.info("phase A: %d rows, %d steps in %.1fs, loss %.4f -> %s (%s attention)", len(kept), summary["steps"],
             seconds, summary["train_loss"], summary["final_loss"], attention)
    return summary
