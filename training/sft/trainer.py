"""The training recipe: QLoRA SFT of a student on a level's filtered traces.

QLoRA is LoRA plus a quantization config: :func:`build_quant_config` returns the
NF4 ``BitsAndBytesConfig`` (or None for plain LoRA) and everything else is the
same code path. Loss falls on the assistant completion only, because the rows are
TRL's conversational prompt/completion format.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from training.common.errors import ConfigError, TrainingError
from training.config.schema import LR_SCHEDULERS, QuantSettings, TrainSettings  # noqa: F401 (re-exported)
from training.config.settings import read_setting, read_settings
from training.data.thinking import mix_no_think, thinking_switch
from training.grading.completions import THINK_CLOSE, THINK_OPEN
from training.models.hardware import Hardware
from training.models.lm_head import supports_masked_head, use_masked_lm_head
from training.sft.early_stopping import (
    by_length,
    split_validation,
    stopping_callbacks,
    validation_options,
    validation_summary,
)
from training.sft.fingerprint import register_cheap_fingerprint

log = logging.getLogger(__name__)


def _lora_settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    settings = read_settings(TrainSettings, cfg, "train")
    return {"r": settings.lora_r, "lora_alpha": settings.lora_alpha, "lora_dropout": settings.lora_dropout,
            "target_modules": settings.target_modules}


def _trainer_settings(settings: TrainSettings) -> dict[str, Any]:
    """The SFTConfig values of the ``train`` group's typed settings."""
    return {
        "num_train_epochs": settings.epochs,
        "per_device_train_batch_size": settings.batch_size,
        "gradient_accumulation_steps": settings.grad_accum,
        "learning_rate": settings.learning_rate,
        "lr_scheduler_type": settings.lr_scheduler,
        "warmup_steps": _steps_or_fraction(settings.warmup),
        "weight_decay": settings.weight_decay,
        "max_grad_norm": settings.max_grad_norm,
        "max_length": settings.max_length,
        "logging_steps": settings.logging_steps,
        "activation_checkpointing": settings.gradient_checkpointing,
        # TRL's prompt/completion rows: loss on the completion only, or (false) on prompt and completion alike.
        "completion_only_loss": settings.completion_only_loss,
        "group_by_length": settings.group_by_length,
        "seed": settings.seed,
    }


def build_quant_config(cfg: Mapping[str, Any], compute_dtype):
    """NF4 with double quantization (the QLoRA recipe), computing in ``compute_dtype``; None for plain LoRA."""
    settings = read_settings(QuantSettings, cfg, "train")
    if settings.quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=settings.double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_quant_storage=compute_dtype,
    )


def build_peft_config(cfg: Mapping[str, Any]):
    from peft import LoraConfig

    return LoraConfig(**_lora_settings(cfg), bias="none", task_type="CAUSAL_LM")


def build_sft_config(cfg: Mapping[str, Any], hardware: Hardware, output_dir: Path, report_to: Sequence[str] = ()):
    from trl import SFTConfig

    train = read_settings(TrainSettings, cfg, "train")
    settings = _trainer_settings(train)
    # Evaluation and checkpoints of the validation split (early stopping); none without one.
    saving = {"save_strategy": "no",  # the adapter is saved once, by us, with its model card
              **validation_options(train)}
    return SFTConfig(
        output_dir=str(output_dir),
        **{key: value for key, value in settings.items() if key != "group_by_length"},
        **saving,
        **run_options(settings, hardware, report_to),
        **ddp_options(hardware),
    )


def run_options(settings: Mapping[str, Any], hardware: Hardware, report_to: Sequence[str] = ()) -> dict[str, Any]:
    """The ``TrainingArguments`` every training run of ours sets beside the train group (``_trainer_settings``):
    the SFT recipe's and the latent level's phases (:mod:`training.latent.phase_a`) alike."""
    return dict(
        data_seed=settings["seed"],
        logging_nan_inf_filter=False,  # a NaN loss must reach our callback, not be averaged away
        # Batches of rows of similar length (shuffled mega-batches sorted by length, drawn from the seeded RNG, so
        # the order is fixed by the seed): on the demo's 128 level-4 rows padding fell from 13.7 % to 5.7 %.
        train_sampling_strategy="group_by_length" if settings["group_by_length"] else "random",
        use_cpu=hardware.device == "cpu",
        # On CPU too this is autocast (accelerate): matmuls in bf16, while prepare_model_for_kbit_training keeps
        # norms, embeddings and so the residual stream in fp32, and the NF4 weights dequantise to bf16.
        bf16=hardware.precision == "bf16",
        fp16=hardware.precision == "fp16",
        report_to=list(report_to) or "none",
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def ddp_options(hardware: Hardware) -> dict[str, Any]:
    """DDP settings for a data-parallel run (``hardware.num_processes`` > 1 under torchrun); none otherwise."""
    if hardware.num_processes == 1:
        return {}
    return {
        # The Trainer gets a PeftModel, not a PreTrainedModel, so transformers would default this to True: an extra
        # autograd-graph walk every step, and an error ("marked ready twice") with reentrant gradient checkpointing.
        # Every LoRA weight is used in every forward, so there is nothing unused to find.
        "ddp_find_unused_parameters": False,
        # On CPU accelerate would pick MPI whenever torch is built with it; gloo is what every CPU build has.
        # On cuda None lets accelerate pick NCCL.
        "ddp_backend": "gloo" if hardware.device == "cpu" else None,
    }


def _warmup(value: Any) -> float | int:
    """``train.warmup`` as transformers 5 reads it (see :func:`_steps_or_fraction`)."""
    return _steps_or_fraction(read_setting(TrainSettings, "warmup", value, "train"))


def _steps_or_fraction(number: float) -> float | int:
    """transformers 5 reads an integer as steps and a float below 1 as a fraction of all steps."""
    return int(number) if number >= 1 else number


@functools.cache
def bitsandbytes_problem(device: str) -> str | None:
    """Why NF4 cannot run on ``device`` here, or None when a 4-bit matmul works (checked once per process)."""
    try:
        import bitsandbytes as bnb
        import torch

        layer = bnb.nn.Linear4bit(64, 64, compute_dtype=torch.float32, quant_type="nf4").to(device)
        layer(torch.ones(1, 64, device=device))
    except Exception as err:  # any failure means "cannot run": import, missing kernels, driver
        return f"{type(err).__name__}: {err}"
    return None


def resolve_quant_config(cfg: Mapping[str, Any], hardware: Hardware):
    """The quantization config to train with, honouring ``allow_unquantized_fallback`` where NF4 cannot run."""
    quant = build_quant_config(cfg, hardware.dtype)
    if quant is None:
        return None
    problem = bitsandbytes_problem(hardware.device)
    if problem is None:
        return quant
    if read_settings(QuantSettings, cfg, "train").allow_unquantized_fallback:
        log.warning("train: bitsandbytes cannot run NF4 on %s (%s); training plain LoRA on %s weights instead",
                    hardware.device, problem, hardware.precision)
        return None
    raise ConfigError(f"bitsandbytes cannot run NF4 on {hardware.device} ({problem}); "
                      "set train.quantization=none or train.allow_unquantized_fallback=true")


def _finite_loss_callback():
    from transformers import TrainerCallback

    class StopOnNonFiniteLoss(TrainerCallback):
        """Fail the trial at the first logged NaN/inf loss instead of training on garbage."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                raise TrainingError(f"training loss became {loss} at step {state.global_step}; "
                                    "lower train.learning_rate or use a wider precision")

    return StopOnNonFiniteLoss()


def train_adapter(rows: Sequence[Mapping[str, Any]], model, tokenizer, cfg: Mapping[str, Any], hardware: Hardware,
                  work_dir: Path, *, chat_template_kwargs: Mapping[str, Any] | None = None,
                  think_tags: tuple[str, str] = (THINK_OPEN, THINK_CLOSE),
                  report_to: Sequence[str] = ()) -> tuple[Any, dict[str, Any]]:
    """LoRA-train ``model`` (already quantised or not) on prompt/completion ``rows``; return the PEFT model.

    With ``train.val_fraction`` > 0 a seeded share of the rows' problems is held out and validated on, and
    training may stop early (:mod:`training.sft.early_stopping`); the summary then says how. With
    ``train.no_think_fraction`` > 0 that seeded share of the training rows (and of the validation rows) is
    trained in no-think form (:mod:`training.data.thinking`).
    """
    from datasets import Dataset
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed
    from trl import SFTTrainer

    if not rows:
        raise TrainingError("no training rows: the filter kept no trace (see filter_report.json)")
    settings = read_settings(TrainSettings, cfg, "train")
    rows, val_rows = split_validation(rows, settings.val_fraction, settings.seed)
    no_think = {}
    if settings.no_think_fraction > 0:
        switch = thinking_switch(tokenizer, chat_template_kwargs)
        rows, val_rows = (mix_no_think(part, settings.no_think_fraction, settings.seed, switch, *think_tags)
                          for part in (rows, val_rows))
        no_think = {"n_no_think": sum(r["thinking"] == "off" for r in rows), "no_think_form": switch.how}
        log.info("train: %d of %d rows in no-think form (%s)", no_think["n_no_think"], len(rows), switch.how)
    args = build_sft_config(cfg, hardware, work_dir, report_to)
    # LoRA's A matrices are drawn at get_peft_model, before the Trainer seeds anything: seed here, or a
    # trial's result depends on what ran before it in the process (a multirun's earlier jobs).
    set_seed(args.seed)
    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.activation_checkpointing)
    model = get_peft_model(model, build_peft_config(cfg))
    register_cheap_fingerprint(tokenizer)  # TRL's tokenizing map would hash the whole tokenizer (1.2 s for Qwen3)
    train_set = Dataset.from_list(sft_records(rows, chat_template_kwargs))
    val_set = Dataset.from_list(sft_records(by_length(val_rows), chat_template_kwargs)) if val_rows else None
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_set, eval_dataset=val_set,
                         processing_class=tokenizer,
                         callbacks=[_finite_loss_callback(), *stopping_callbacks(settings)])
    if hardware.device == "cpu" and supports_masked_head(model.get_base_model()):
        use_masked_lm_head(model.get_base_model())  # TRL's fused head is a GPU kernel; its CPU fallback was half a step
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    if not math.isfinite(result.training_loss):
        raise TrainingError(f"training ended with loss {result.training_loss}")
    tokens = int(sum(len(x) for x in trainer.train_dataset["input_ids"])) * float(cfg["epochs"])
    if trainer.state.global_step < trainer.state.max_steps:  # stopped early: the share of the planned steps that ran
        tokens *= trainer.state.global_step / trainer.state.max_steps
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    trainable, total = model.get_nb_trainable_parameters()
    summary = {
        "train_seconds": round(seconds, 3),
        "train_loss": round(float(result.training_loss), 5),
        "final_loss": round(float(losses[-1]), 5) if losses else None,
        "steps": int(trainer.state.global_step),
        "train_tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
        "trainable_parameters": int(trainable),
        "total_parameters": int(total),
        "loss_history": [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e],
        # With a validation split only: a default trial's record keeps exactly the keys it had.
        **(validation_summary(trainer.state, len(val_rows)) if val_rows else {}),
        **no_think,
    }
    log.info("train: %d rows, %d steps in %.1fs (%.0f tokens/s), loss %.4f -> %s", len(rows), summary["steps"],
             seconds, summary["train_tokens_per_second"] or 0, summary["train_loss"], summary["final_loss"])
    if val_rows:
        log.info("train: validation loss %s; best %.4f at step %s%s", [e["loss"] for e in summary["val_loss_history"]],
                 summary["best_val_loss"], summary["best_step"], ", stopped early" if summary["stopped_early"] else "")
    return model, summary


def sft_records(rows: Sequence[Mapping[str, Any]],
                chat_template_kwargs: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """TRL's conversational prompt/completion rows, each with its chat template's kwargs if any: a row's own
    (a no-think row's), else ``chat_template_kwargs``. TRL reads them per row."""
    records = []
    for row in rows:
        kwargs = row.get("chat_template_kwargs", chat_template_kwargs)
        records.append({"prompt": row["prompt"], "completion": row["completion"],
                        **({"chat_template_kwargs": dict(kwargs)} if kwargs else {})})
    return records
