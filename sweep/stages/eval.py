"""Stage ``eval``: the student, with the trial's adapter (or none: the baseline), answers the eval problems.

Reads: the eval problems (``data``), and the adapter: ``adapter/`` from ``train``, else ``adapter=PATH``,
or none with ``adapter=none``. Writes: ``eval_samples.jsonl`` (one row per problem) and ``eval_results.json``.
Never cached: it is the measurement. Its result is the trial's headline metrics.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from sweep.stages.base import Input, Stage, TrialContext
from training.common.errors import ConfigError
from training.common.jsonl import write_json, write_jsonl
from training.config.schema import (
    DataSettings,
    EvalSettings,
    HardwareSettings,
    ModelSettings,
    QuantSettings,
    SamplingSettings,
)
from training.evaluation.backends import choose_backend, vllm_generate
from training.evaluation.evaluate import evaluate
from training.evaluation.inference import InferenceModel, inference_model
from training.models.loading import release_memory, stop_token_id
from training.models.student import Student, attach_adapter, load_student, read_adapter_config
from training.models.tokens import TokenCounter
from training.sft.lora_adapter import ADAPTER_DIR

log = logging.getLogger(__name__)

EVAL_SAMPLES_FILE = "eval_samples.jsonl"
EVAL_RESULTS_FILE = "eval_results.json"


def adapter_source(ctx: TrialContext, stage: str) -> Path | None:
    """The adapter to evaluate: this trial's own, a folder given as ``adapter=PATH``, or None for the base model."""
    adapter = str(ctx.cfg.get("adapter", "auto"))
    if "train" in ctx.stages:
        return ctx.run_dir / ADAPTER_DIR
    if adapter == "none":
        return None
    if adapter == "auto":
        path = ctx.run_dir / ADAPTER_DIR
        if not path.is_dir():
            raise ConfigError(f"stage {stage!r} has no adapter: add 'train' to stages, set adapter=PATH, "
                              f"or adapter=none for the base model ({path} does not exist)")
        return path
    return Path(adapter)


def run(ctx: TrialContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """Evaluate; write the per-problem samples and the aggregate results; log both to the trial's W&B run."""
    cfg, hardware, problems = ctx.cfg, ctx.hardware, inputs["problems"]
    model_cfg, settings, sampling_cfg, seed = cfg.model, ctx.group("eval"), cfg.sampling, int(cfg.seed)
    student = load_student(model_cfg, cfg.train, hardware)
    if inputs["adapter"] is not None:
        attach_adapter(student, inputs["adapter"])
    counter = TokenCounter(student.path)
    backend, why = choose_backend(settings.backend, hardware.device)
    log.info("eval: backend %s (%s)", backend, why)
    generator = (_vllm_generator(student, model_cfg, settings.vllm_engine_args, sampling_cfg, hardware, seed)
                 if backend == "vllm" else None)
    runner, began = InferenceModel(None, "vLLM"), time.perf_counter()
    if generator is None:
        runner = inference_model(student.model, hardware.device, hardware.precision)
        log.info("eval: generating with %s", runner.note)
    setup_seconds = time.perf_counter() - began
    rows, metrics = evaluate(
        runner.model, student.tokenizer, problems, ctx.level, counter, generator=generator, autocast=runner.autocast,
        share_prefix=settings.share_prefix, regroup_after=settings.regroup_after, sampling=sampling_cfg,
        batch_size=settings.batch_size, stop_token_id=stop_token_id(student.tokenizer, model_cfg),
        system=cfg.prompt.get("system"), n_shots=settings.n_shots, extractor=settings.extractor,
        open_tag=model_cfg["think"]["open"], close_tag=model_cfg["think"]["close"],
        chat_template_kwargs=model_cfg.get("chat_template_kwargs"), seed=seed,
    )
    runner.model = student.model = None  # the dense copy and the student live for this evaluation only
    release_memory()
    metrics.update(level=ctx.level.id, adapter=student.adapter, quantization=student.quantization, backend=backend,
                   eval_compute=runner.note, eval_setup_seconds=round(setup_seconds, 3))
    write_jsonl(ctx.run_dir / EVAL_SAMPLES_FILE, rows)
    write_json(ctx.run_dir / EVAL_RESULTS_FILE, {**metrics, "sampling": dict(sampling_cfg), "model": model_cfg["name"]})
    log.info("eval: %s accuracy %.3f [%.3f, %.3f] (strict %.3f), think tokens mean %.1f, format errors %.1f%%, "
             "%.0f generated tokens/s (prefill %.0f, decode %.0f)", ctx.level.tag, metrics["accuracy"],
             *metrics["accuracy_ci"], metrics["accuracy_strict"], metrics["mean_think_tokens"],
             100 * metrics["format_error_rate"], metrics["eval_tokens_per_second"] or 0,
             metrics.get("eval_prefill_tokens_per_second") or 0, metrics.get("eval_decode_tokens_per_second") or 0)
    ctx.tracker.log_metrics({**metrics, "n_train": ctx.results.get("train", {}).get("n_train", 0)})
    ctx.tracker.log_samples(rows, settings.log_samples)
    return metrics


def _vllm_generator(student: Student, model_cfg, engine_args, sampling_cfg, hardware, seed: int):
    """Generation by vLLM: the base weights plus the student's adapter; the transformers copy is freed first."""
    adapter = None if student.adapter == "none" else student.adapter
    rank = read_adapter_config(Path(adapter))["r"] if adapter else 8
    stop_id = stop_token_id(student.tokenizer, model_cfg)
    student.model = None  # vLLM takes the GPU memory the transformers copy would hold
    release_memory()

    def generator(prompts):
        return vllm_generate(student.path, adapter, prompts, sampling_cfg, stop_token_id=stop_id,
                             precision=hardware.precision, seed=seed, lora_rank=int(rank),
                             chat_template_kwargs=model_cfg.get("chat_template_kwargs"),
                             engine_args=engine_args)

    return generator


STAGE = Stage(
    name="eval", run=run, record=lambda metrics: {"eval": metrics},
    # The student is loaded with the train group's quantization settings, for an eval alone too.
    settings={"data": DataSettings, "model": ModelSettings, "hardware": HardwareSettings, "train": QuantSettings,
              "eval": EvalSettings, "sampling": SamplingSettings},
    inputs=(Input("problems", lambda ctx, stage: ctx.splits.eval), Input("adapter", adapter_source)),
    outputs=(EVAL_SAMPLES_FILE, EVAL_RESULTS_FILE), needs_model=True,
)
