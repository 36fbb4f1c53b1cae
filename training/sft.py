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

from training.errors import ConfigError, TrainingError
from training.hardware import Hardware
from training.lm_head import supports_masked_head, use_masked_lm_head
from training.settings import as_bool, as_choice, as_float, as_int

log = logging.getLogger(__name__)

QUANTIZATIONS = ("nf4", "none")
# transformers' SchedulerType values, listed here so the check needs no transformers import (5 s);
# a test keeps the two in step.
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
                 "warmup_stable_decay", "greedy")


def check_quant_settings(cfg: Mapping[str, Any]) -> str:
    """The quantization settings every model stage reads (the student is loaded with them); the kind."""
    as_bool(cfg.get("double_quant", True), "train.double_quant")
    as_bool(cfg.get("allow_unquantized_fallback", False), "train.allow_unquantized_fallback")
    return as_choice(cfg.get("quantization", "nf4"), "train.quantization", QUANTIZATIONS)


def _lora_settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    targets = cfg.get("target_modules") or "all-linear"
    if not isinstance(targets, str):
        targets = list(targets) if not isinstance(targets, (int, float, bool)) else [targets]
        if not targets or not all(isinstance(name, str) and name for name in targets):
            raise ConfigError(f"train.target_modules must be all-linear or a list of module names, got {targets!r}")
    return {
        "r": as_int(cfg.get("lora_r"), "train.lora_r", 1),
        "lora_alpha": as_float(cfg.get("lora_alpha"), "train.lora_alpha", low=0, low_open=True),
        "lora_dropout": as_float(cfg.get("lora_dropout"), "train.lora_dropout", low=0, high=1, high_open=True),
        "target_modules": targets,
    }


def _trainer_settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The SFTConfig values of the ``train`` group, each read through its check."""
    seed = as_int(cfg.get("seed"), "train.seed", 0)
    return {
        # transformers reads a fractional epoch count as part of a last epoch.
        "num_train_epochs": as_float(cfg.get("epochs"), "train.epochs", low=0, low_open=True),
        "per_device_train_batch_size": as_int(cfg.get("batch_size"), "train.batch_size", 1),
        "gradient_accumulation_steps": as_int(cfg.get("grad_accum"), "train.grad_accum", 1),
        "learning_rate": as_float(cfg.get("learning_rate"), "train.learning_rate", low=0, low_open=True),
        "lr_scheduler_type": as_choice(cfg.get("lr_scheduler", "linear"), "train.lr_scheduler", LR_SCHEDULERS),
        "warmup_steps": _warmup(cfg.get("warmup", 0)),
        "weight_decay": as_float(cfg.get("weight_decay", 0.0), "train.weight_decay", low=0),
        "max_grad_norm": as_float(cfg.get("max_grad_norm", 1.0), "train.max_grad_norm", low=0),  # 0: no clipping
        "max_length": as_int(cfg.get("max_length"), "train.max_length", 1),
        "logging_steps": as_int(cfg.get("logging_steps", 1), "train.logging_steps", 1),
        "activation_checkpointing": as_bool(cfg.get("gradient_checkpointing", False), "train.gradient_checkpointing"),
        # TRL's prompt/completion rows: loss on the completion only, or (false) on prompt and completion alike.
        "completion_only_loss": as_bool(cfg.get("completion_only_loss", True), "train.completion_only_loss"),
        "group_by_length": as_bool(cfg.get("group_by_length", True), "train.group_by_length"),
        "seed": seed,
    }


def check_train_settings(cfg: Mapping[str, Any]) -> None:
    """Every ``train`` setting, before a model is loaded: the same reads the builders below make."""
    check_quant_settings(cfg)
    _lora_settings(cfg)
    _trainer_settings(cfg)


def build_quant_config(cfg: Mapping[str, Any], compute_dtype):
    """NF4 with double quantization (the QLoRA recipe), computing in ``compute_dtype``; None for plain LoRA."""
    if check_quant_settings(cfg) == "none":
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=cfg.get("double_quant", True),
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_quant_storage=compute_dtype,
    )


def build_peft_config(cfg: Mapping[str, Any]):
    from peft import LoraConfig

    return LoraConfig(**_lora_settings(cfg), bias="none", task_type="CAUSAL_LM")


def build_sft_config(cfg: Mapping[str, Any], hardware: Hardware, output_dir: Path, report_to: Sequence[str] = ()):
    from trl import SFTConfig

    settings = _trainer_settings(cfg)
    return SFTConfig(
        output_dir=str(output_dir),
        **{key: value for key, value in settings.items() if key != "group_by_length"},
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
        save_strategy="no",  # the adapter is saved once, by us, with its model card
        report_to=list(report_to) or "none",
        dataloader_num_workers=0,
        disable_tqdm=False,
        **ddp_options(hardware),
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
    """transformers 5 reads an integer as steps and a float below 1 as a fraction of all steps."""
    number = as_float(value or 0, "train.warmup", low=0,
                      allowed="a number >= 0 (steps, or a fraction of all steps below 1)")
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
    if cfg.get("allow_unquantized_fallback"):
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
                  report_to: Sequence[str] = ()) -> tuple[Any, dict[str, Any]]:
    """LoRA-train ``model`` (already quantised or not) on prompt/completion ``rows``; return the PEFT model."""
    from datasets import Dataset
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed
    from trl import SFTTrainer

    if not rows:
        raise TrainingError("no training rows: the filter kept no trace (see filter_report.json)")
    records = [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]
    if chat_template_kwargs:
        records = [{**r, "chat_template_kwargs": dict(chat_template_kwargs)} for r in records]
    args = build_sft_config(cfg, hardware, work_dir, report_to)
    # LoRA's A matrices are drawn at get_peft_model, before the Trainer seeds anything: seed here, or a
    # trial's result depends on what ran before it in the process (a multirun's earlier jobs).
    set_seed(args.seed)
    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.activation_checkpointing)
    model = get_peft_model(model, build_peft_config(cfg))
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(records), processing_class=tokenizer,
                         callbacks=[_finite_loss_callback()])
    if hardware.device == "cpu" and supports_masked_head(model.get_base_model()):
        use_masked_lm_head(model.get_base_model())  # TRL's fused head is a GPU kernel; its CPU fallback was half a step
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    if not math.isfinite(result.training_loss):
        raise TrainingError(f"training ended with loss {result.training_loss}")
    tokens = int(sum(len(x) for x in trainer.train_dataset["input_ids"])) * float(cfg["epochs"])
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
    }
    log.info("train: %d rows, %d steps in %.1fs (%.0f tokens/s), loss %.4f -> %s", len(rows), summary["steps"],
             seconds, summary["train_tokens_per_second"] or 0, summary["train_loss"], summary["final_loss"])
    return model, summary
