"""Early stopping on a validation loss (the Atem recipe), through the HF Trainer's own mechanisms.

``train.val_fraction`` > 0 holds out a seeded share of the training *problems* (all traces of a problem go to
the same side, so no problem is both trained on and validated on; the eval problems are never touched). The
Trainer evaluates that split's loss every ``train.eval_steps`` optimizer steps and at the last step
(``eval_strategy="steps"``); transformers' ``EarlyStoppingCallback`` stops after ``early_stopping_patience``
evaluations without an improvement above ``early_stopping_threshold``; with ``load_best_model_at_end`` the
Trainer keeps the best-validated adapter (``save_strategy="best"``: a checkpoint only at a new best) and loads
it back at the end, so that is the adapter the trial saves. With ``val_fraction`` 0 none of this is built:
the Trainer's arguments and the train summary are those of a run without it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from training.common.errors import TrainingError
from training.config.schema import TrainSettings


def split_validation(rows: Sequence[Mapping[str, Any]], fraction: float,
                     seed: int) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """``rows`` split into (train, validation), in their order: round(``fraction`` x problems) problems, drawn
    with ``seed``, go to validation. Rows are grouped by their ``id`` (a file without ids: one row, one problem)."""
    if fraction <= 0:
        return list(rows), []
    problems = list(dict.fromkeys(row.get("id", index) for index, row in enumerate(rows)))
    if len(problems) < 2:
        raise TrainingError(f"train.val_fraction={fraction} needs at least 2 training problems to split, got "
                            f"{len(problems)}; set train.val_fraction=0")
    n_val = min(max(1, int(fraction * len(problems) + 0.5)), len(problems) - 1)  # half up, and both sides non-empty
    held_out = set(random.Random(seed).sample(problems, n_val))
    train, val = [], []
    for index, row in enumerate(rows):
        (val if row.get("id", index) in held_out else train).append(row)
    return train, val


def by_length(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The validation rows, shortest first: the evaluation batches them in order, and rows of similar length pad
    less (the training batches are grouped by length the same way, by the Trainer's sampler)."""
    return sorted(rows, key=lambda row: len(str(row["prompt"])) + len(str(row["completion"])))


def validation_options(settings: TrainSettings) -> dict[str, Any]:
    """The SFTConfig values that evaluate the validation split; {} when there is none."""
    if settings.val_fraction == 0:
        return {}
    best = settings.load_best_model_at_end
    return {
        "eval_strategy": "steps",
        "eval_steps": settings.eval_steps,
        "per_device_eval_batch_size": settings.batch_size,
        "prediction_loss_only": True,  # the loss is all early stopping reads: no logits or labels gathered
        "metric_for_best_model": "eval_loss",
        "greater_is_better": False,
        "load_best_model_at_end": best,
        # "best": a checkpoint (<run dir>/trainer/checkpoint-<step>) only when the validation loss improves, the
        # adapter weights alone (no optimizer state: nothing resumes from it), the best one kept. Without
        # load_best_model_at_end nothing needs saving.
        "save_strategy": "best" if best else "no",
        "save_only_model": best,
        "save_total_limit": 1 if best else None,
    }


def stopping_callbacks(settings: TrainSettings) -> list[Any]:
    """transformers' EarlyStoppingCallback when a patience is set; none otherwise."""
    if settings.val_fraction == 0 or settings.early_stopping_patience is None:
        return []
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(early_stopping_patience=settings.early_stopping_patience,
                                  early_stopping_threshold=settings.early_stopping_threshold)]


def validation_summary(state: Any, n_val: int) -> dict[str, Any]:
    """What the train summary keeps of a validated run (``state``: the Trainer's TrainerState): the curve, the
    best step and its loss (the first minimum, as the Trainer picks it), and whether training stopped before its
    planned last step."""
    curve = [(int(entry["step"]), float(entry["eval_loss"])) for entry in state.log_history if "eval_loss" in entry]
    best = min(curve, key=lambda entry: entry[1]) if curve else (None, None)  # min keeps the first of equals
    return {"n_val": n_val, "val_loss_history": [{"step": step, "loss": round(loss, 5)} for step, loss in curve],
            "best_step": best[0], "best_val_loss": None if best[1] is None else round(best[1], 5),
            "stopped_early": int(state.global_step) < int(state.max_steps)}

