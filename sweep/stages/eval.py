"""Stage ``eval``: the student, with the trial's adapter (or none: the baseline), answers the eval problems.

Reads: the eval problems (``data``), and the adapter: ``adapter/`` from ``train``, else ``adapter=PATH``,
or none with ``adapter=none``. Writes: ``eval_samples.jsonl`` (one row per problem) and ``eval_results.json``;
with ``eval.thinking=both`` also ``no_think/``, a run dir of the same trial evaluated with thinking off.
Never cached: it is the measurement. Its result is the trial's headline metrics.

At the latent level (``level.latent``) the student reasons in a span of reserved symbols: generation constrains
the span (:mod:`training.latent.decoding`), its markers are the think tags, its tokens are counted with the
adapter's tokenizer, and the vLLM backend serves the adapter merged into the base (``<run dir>/merged/``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sweep.run_record import NO_THINK_DIR, write_metrics
from sweep.stages.base import Input, Stage, TrialContext
from sweep.trial_record import COMPLETED, TrialRecord
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
from training.evaluation.backends import choose_backend, start_vllm, vllm_generate
from training.evaluation.evaluate import evaluate
from training.evaluation.inference import InferenceModel, inference_model
from training.evaluation.latent import MERGED_DIR, latent_vocab, save_merged
from training.latent.decoding import span_decoding, vllm_generate_latent
from training.latent.vocabulary import AbstractVocab
from training.models.loading import release_memory, stop_token_id
from training.models.student import Student, attach_adapter, load_student, read_adapter_config, student_for_engine
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


def run(ctx: TrialContext, inputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Evaluate in each thinking mode of ``eval.thinking``; write each mode's per-problem samples and aggregate
    results (the no-think ones of ``both`` in :data:`NO_THINK_DIR`); log them to the trial's W&B run.

    Returns the metrics by mode ("on", "off"); the model is loaded once for both.
    """
    cfg, hardware, problems = ctx.cfg, ctx.hardware, inputs["problems"]
    model_cfg, settings, sampling_cfg, seed = cfg.model, ctx.group("eval"), cfg.sampling, int(cfg.seed)
    backend, why = choose_backend(settings.backend, hardware.device)
    log.info("eval: backend %s (%s)", backend, why)
    if backend == "vllm":  # vLLM loads its own weights: the transformers copy is never loaded
        student = student_for_engine(model_cfg, inputs["adapter"])
    else:
        student = load_student(model_cfg, cfg.train, hardware)
        if inputs["adapter"] is not None:
            attach_adapter(student, inputs["adapter"])
    latent = ctx.level.latent
    vocab = latent_vocab(student.tokenizer, latent, inputs["adapter"]) if latent else None
    # A latent span's symbols are one token each in the adapter's tokenizer only (the base's splits <z07> up).
    counter = TokenCounter(inputs["adapter"] if latent else student.path)
    generator, runner, began = None, InferenceModel(None, "vLLM"), time.perf_counter()
    if backend == "vllm":
        generator = (_vllm_latent_generator(ctx, student, vocab, settings.vllm_engine_args) if latent else
                     _vllm_generator(student, model_cfg, settings.vllm_engine_args, sampling_cfg, hardware, seed))
    else:
        runner = inference_model(student.model, hardware.device, hardware.precision)
        log.info("eval: generating with %s", runner.note)
    setup_seconds = time.perf_counter() - began
    by_mode = {}
    decoding, processors = sampling_cfg, None
    if latent:  # the span sampled at its own temperature, the answer as the trial's sampling says
        decoding, processors = span_decoding(vocab, latent.max_abstract_tokens, latent.span_temperature, sampling_cfg)
    for mode in modes(settings.thinking):
        rows, metrics = evaluate(
            runner.model, student.tokenizer, problems, ctx.level, counter, generator=generator,
            autocast=runner.autocast, share_prefix=settings.share_prefix, regroup_after=settings.regroup_after,
            sampling=decoding, batch_size=settings.batch_size, stop_token_id=stop_token_id(student.tokenizer,
                                                                                                 model_cfg),
            system=cfg.prompt.get("system"), n_shots=settings.n_shots, extractor=settings.extractor,
            open_tag=model_cfg["think"]["open"], close_tag=model_cfg["think"]["close"],
            chat_template_kwargs=model_cfg.get("chat_template_kwargs"), seed=seed, thinking=mode,
            logits_processors=processors,
        )
        metrics.update(level=ctx.level.id, adapter=student.adapter, quantization=student.quantization,
                       backend=backend, eval_compute=runner.note, eval_setup_seconds=round(setup_seconds, 3))
        out_dir = ctx.run_dir / NO_THINK_DIR if settings.thinking == "both" and mode == "off" else ctx.run_dir
        out_dir.mkdir(exist_ok=True)
        write_jsonl(out_dir / EVAL_SAMPLES_FILE, rows)
        write_json(out_dir / EVAL_RESULTS_FILE, {**metrics, "sampling": dict(sampling_cfg), "model": model_cfg["name"]})
        log.info("eval: %s%s accuracy %.3f [%.3f, %.3f] (strict %.3f), think tokens mean %.1f, format "
                 "errors %.1f%%, %.0f generated tokens/s (prefill %.0f, decode %.0f)", ctx.level.tag,
                 " no-think" if mode == "off" else "",
                 metrics["accuracy"], *metrics["accuracy_ci"], metrics["accuracy_strict"],
                 metrics["mean_think_tokens"], 100 * metrics["format_error_rate"],
                 metrics["eval_tokens_per_second"] or 0, metrics.get("eval_prefill_tokens_per_second") or 0,
                 metrics.get("eval_decode_tokens_per_second") or 0)
        if latent:
            log.info("eval: latent spans %.1f symbols on average, %.1f%% closed at the cap of %d",
                     metrics["mean_span_symbols"], 100 * metrics["span_at_cap_rate"], latent.max_abstract_tokens)
        prefix = "eval" if out_dir == ctx.run_dir else NO_THINK_DIR
        ctx.tracker.log_metrics({**metrics, "n_train": ctx.results.get("train", {}).get("n_train", 0)}, prefix)
        ctx.tracker.log_samples(rows, settings.log_samples, prefix)
        by_mode[mode] = metrics
    runner.model = student.model = None  # the dense copy and the student live for this evaluation only
    release_memory()
    if len(by_mode) == 2:
        by_mode["on"]["no_think_run"] = NO_THINK_DIR  # where the same adapter's no-think record is
    return by_mode


def modes(thinking: str) -> tuple[str, ...]:
    """The thinking modes ``eval.thinking`` evaluates, the headline one first."""
    return ("on", "off") if thinking == "both" else (thinking,)


def record(by_mode: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The trial's headline evaluation: thinking on when it ran, else off."""
    return {"eval": by_mode.get("on") or by_mode["off"]}


def write_no_think_record(ctx: TrialContext, trial: TrialRecord) -> None:
    """With ``eval.thinking=both``: ``no_think/`` becomes a run dir of its own, the same trial evaluated with
    thinking off. Its ``metrics.json`` and ``.hydra/`` (the trial's config with ``eval.thinking=off``) make it a
    point that analysis reads like any other, with the same eval problems for the paired tests."""
    off = ctx.results["eval"].get("off")
    if off is None or "on" not in ctx.results["eval"]:
        return
    sub = ctx.run_dir / NO_THINK_DIR
    hydra_dir = ctx.run_dir / ".hydra"
    if hydra_dir.is_dir():
        (sub / ".hydra").mkdir(parents=True, exist_ok=True)
        config = OmegaConf.load(hydra_dir / "config.yaml")
        OmegaConf.update(config, "eval.thinking", "off")
        OmegaConf.save(config, sub / ".hydra" / "config.yaml")
        overrides = OmegaConf.load(hydra_dir / "overrides.yaml") if (hydra_dir / "overrides.yaml").is_file() else []
        lines = [line for line in overrides if not str(line).startswith("eval.thinking=")] + ["eval.thinking=off"]
        OmegaConf.save(OmegaConf.create(lines), sub / ".hydra" / "overrides.yaml")
    copy = dataclasses.replace(trial, run_dir=str(sub), status=COMPLETED, eval=off)
    write_metrics(sub, copy.to_json())


def _vllm_generator(student: Student, model_cfg, engine_args, sampling_cfg, hardware, seed: int):
    """Generation by vLLM: the base weights plus the student's adapter as a LoRA request, one engine for every
    thinking mode."""
    adapter = None if student.adapter == "none" else student.adapter
    engine = start_vllm(student.path, precision=hardware.precision, seed=seed, engine_args=engine_args,
                        lora_rank=int(read_adapter_config(Path(adapter))["r"]) if adapter else None)
    stop_id = stop_token_id(student.tokenizer, model_cfg)

    def generator(prompts, chat_template_kwargs):
        return vllm_generate(engine, adapter, prompts, sampling_cfg, stop_token_id=stop_id, seed=seed,
                             chat_template_kwargs=chat_template_kwargs)

    return generator


def _vllm_latent_generator(ctx: TrialContext, student: Student, vocab: AbstractVocab, engine_args):
    """The latent level's two-stage vLLM decode (the span, then the answer) of the adapter merged into a
    full-precision base, saved in ``<run dir>/merged/`` with the extended tokenizer. Not run where it was written
    (vLLM is not installed there); only the merged folder and the sampling arguments are tested."""
    cfg, hardware, latent = ctx.cfg, ctx.hardware, ctx.level.latent
    stop_id = stop_token_id(student.tokenizer, cfg.model)
    merged = save_merged(cfg.model, Path(student.adapter), ctx.run_dir / MERGED_DIR, dtype=hardware.dtype,
                         device=hardware.device)
    release_memory()  # the merge's copy, before vLLM takes the GPU memory
    engine = start_vllm(str(merged), precision=hardware.precision, seed=int(cfg.seed), engine_args=engine_args)

    def generator(prompts, chat_template_kwargs):
        return vllm_generate_latent(engine, student.tokenizer, prompts, cfg.sampling, vocab,
                                    max_abstract_tokens=latent.max_abstract_tokens,
                                    span_temperature=latent.span_temperature, stop_token_id=stop_id,
                                    seed=int(cfg.seed), chat_template_kwargs=chat_template_kwargs)

    return generator


STAGE = Stage(
    name="eval", run=run, record=record, finish=write_no_think_record,
    # The student is loaded with the train group's quantization settings, for an eval alone too.
    settings={"data": DataSettings, "model": ModelSettings, "hardware": HardwareSettings, "train": QuantSettings,
              "eval": EvalSettings, "sampling": SamplingSettings},
    inputs=(Input("problems", lambda ctx, stage: ctx.splits.eval), Input("adapter", adapter_source)),
    outputs=(EVAL_SAMPLES_FILE, EVAL_RESULTS_FILE), needs_model=True,
)
