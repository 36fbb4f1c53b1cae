"""The two model stages, ``train`` and ``eval``, as plain functions over a loaded student.

The student is loaded once per trial and shared: ``train`` wraps it in a LoRA
adapter, ``eval`` generates with whatever it holds (the fresh adapter, one loaded
from a folder, or none for the baseline).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.atomic import replace_atomically
from training.data import Problem
from training.errors import ConfigError, DataError
from training.eval_backends import choose_backend, vllm_generate
from training.eval_model import InferenceModel, inference_model
from training.evaluate import evaluate
from training.hardware import Hardware
from training.jsonl import write_json, write_jsonl
from training.levels import Level
from training.models import load_model, load_tokenizer, model_path, release_memory, stop_token_id
from training.sft import resolve_quant_config, train_adapter
from training.tokens import TokenCounter

log = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
TRAINER_DIR = "trainer"
EVAL_SAMPLES_FILE = "eval_samples.jsonl"
EVAL_RESULTS_FILE = "eval_results.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")  # what PEFT's save_pretrained writes


@dataclass
class Student:
    model: Any
    tokenizer: Any
    path: str  # the folder the base weights came from
    quantization: str  # "nf4" or "none": what the weights actually are
    adapter: str = "none"  # "none", or the folder of the adapter the model now carries


def load_student(model_cfg: Mapping[str, Any], train_cfg: Mapping[str, Any], hardware: Hardware) -> Student:
    """The base model, NF4-quantised when ``train.quantization`` asks for it (and bitsandbytes can)."""
    path = model_path(model_cfg)
    tokenizer = load_tokenizer(model_cfg, path)
    quant = resolve_quant_config(train_cfg, hardware)
    model = load_model(model_cfg, dtype=hardware.dtype, device=hardware.device, quantization_config=quant,
                       attn_implementation=hardware.attn_implementation, path=path)
    log.info("model: %s from %s (%s weights, %s compute)", model_cfg["name"], path,
             "nf4" if quant is not None else hardware.precision, hardware.precision)
    return Student(model, tokenizer, path, "nf4" if quant is not None else "none")


def read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    """``adapter_dir``'s ``adapter_config.json``, checked for what loading it needs; cheap (no model).

    PEFT would otherwise fail deep inside layer construction (a string rank) or with a JSON traceback.
    """
    import json

    path = Path(adapter_dir) / "adapter_config.json"
    if not path.is_file():
        raise ConfigError(f"no LoRA adapter at {adapter_dir} (adapter_config.json missing)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; is this an adapter folder?") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: malformed JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(config, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(config).__name__}")
    if config.get("peft_type") != "LORA":
        raise DataError(f"{path}: peft_type must be \"LORA\", got {config.get('peft_type')!r}")
    rank, alpha, targets = config.get("r"), config.get("lora_alpha", 8), config.get("target_modules")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise DataError(f"{path}: \"r\" must be an integer >= 1, got {rank!r}")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or alpha <= 0:
        raise DataError(f"{path}: \"lora_alpha\" must be a number > 0, got {alpha!r}")
    if not (targets is None or isinstance(targets, str)
            or (isinstance(targets, list) and all(isinstance(name, str) for name in targets))):
        raise DataError(f"{path}: \"target_modules\" must be a string or a list of module names, got {targets!r}")
    if not any((path.parent / name).is_file() for name in ADAPTER_WEIGHTS):
        # PEFT would take the folder for a hub repo id and say so, which points the user the wrong way.
        raise DataError(f"{path.parent}: no adapter weights ({' or '.join(ADAPTER_WEIGHTS)} missing)")
    return config


def attach_adapter(student: Student, adapter_dir: Path) -> None:
    from peft import PeftModel
    from safetensors import SafetensorError

    read_adapter_config(adapter_dir)
    try:
        student.model = PeftModel.from_pretrained(student.model, str(adapter_dir))
    except (ValueError, TypeError, KeyError, RuntimeError, OSError, SafetensorError) as err:
        # Corrupt weights, or weights made for another base model (shape mismatch): the wrong folder, not a bug.
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise DataError(f"cannot load the LoRA adapter {adapter_dir} onto {student.path}: "
                        f"{type(err).__name__}: {reason}") from None
    student.adapter = str(adapter_dir)
    log.info("model: loaded adapter %s", adapter_dir)


def train_stage(student: Student, rows: Sequence[Mapping[str, Any]], model_cfg: Mapping[str, Any],
                train_cfg: Mapping[str, Any], hardware: Hardware, run_dir: Path,
                report_to: Sequence[str] = (), save: bool = True) -> dict[str, Any]:
    """Train a LoRA adapter on ``rows`` and save it (weights and tokenizer) to ``run_dir/adapter``.

    ``save=False`` is for the ranks other than 0 of a data-parallel run: they hold the same weights, and one
    writer per folder keeps the adapter whole.
    """
    model, summary = train_adapter(rows, student.model, student.tokenizer, train_cfg, hardware, run_dir / TRAINER_DIR,
                                   chat_template_kwargs=model_cfg.get("chat_template_kwargs"), report_to=report_to)
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
    summary.update(n_train=len(rows), adapter=str(adapter_dir))
    return summary


def eval_stage(student: Student, problems: Sequence[Problem], level: Level, model_cfg: Mapping[str, Any],
               eval_cfg: Mapping[str, Any], sampling_cfg: Mapping[str, Any], run_dir: Path, *,
               system: str | None, seed: int, hardware: Hardware | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Evaluate the student on ``problems``; write ``eval_samples.jsonl`` and ``eval_results.json``."""
    counter = TokenCounter(student.path)
    backend, why = choose_backend(str(eval_cfg.get("backend", "auto")), hardware.device if hardware else "cpu")
    log.info("eval: backend %s (%s)", backend, why)
    generator = _vllm_generator(student, model_cfg, eval_cfg, sampling_cfg, hardware, seed) if backend == "vllm" else None
    runner, began = InferenceModel(None, "vLLM"), time.perf_counter()
    if generator is None:
        runner = inference_model(student.model, hardware.device if hardware else "cpu",
                                 hardware.precision if hardware else "fp32")
        log.info("eval: generating with %s", runner.note)
    setup_seconds = time.perf_counter() - began
    rows, metrics = evaluate(
        runner.model, student.tokenizer, problems, level, counter, generator=generator, autocast=runner.autocast,
        share_prefix=bool(eval_cfg.get("share_prefix", True)), regroup_after=int(eval_cfg.get("regroup_after", 32)),
        sampling=sampling_cfg, batch_size=int(eval_cfg["batch_size"]),
        stop_token_id=stop_token_id(student.tokenizer, model_cfg), system=system,
        n_shots=int(eval_cfg.get("n_shots", 0)), extractor=str(eval_cfg.get("extractor", "flexible")),
        open_tag=model_cfg["think"]["open"], close_tag=model_cfg["think"]["close"],
        chat_template_kwargs=model_cfg.get("chat_template_kwargs"), seed=seed,
    )
    if runner.model is not student.model:
        runner.model = None  # the dense copy lives for this evaluation only
        release_memory()
    metrics.update(level=level.id, adapter=student.adapter, quantization=student.quantization, backend=backend,
                   eval_compute=runner.note, eval_setup_seconds=round(setup_seconds, 3))
    write_jsonl(run_dir / EVAL_SAMPLES_FILE, rows)
    write_json(run_dir / EVAL_RESULTS_FILE, {**metrics, "sampling": dict(sampling_cfg), "model": model_cfg["name"]})
    log.info("eval: %s accuracy %.3f [%.3f, %.3f] (strict %.3f), think tokens mean %.1f, format errors %.1f%%, "
             "%.0f generated tokens/s (prefill %.0f, decode %.0f)", level.tag, metrics["accuracy"], *metrics["accuracy_ci"],
             metrics["accuracy_strict"], metrics["mean_think_tokens"], 100 * metrics["format_error_rate"],
             metrics["eval_tokens_per_second"] or 0, metrics.get("eval_prefill_tokens_per_second") or 0,
             metrics.get("eval_decode_tokens_per_second") or 0)
    return rows, metrics


def _vllm_generator(student: Student, model_cfg: Mapping[str, Any], eval_cfg: Mapping[str, Any],
                    sampling_cfg: Mapping[str, Any], hardware: Hardware, seed: int):
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
                             engine_args=eval_cfg.get("vllm_engine_args"))

    return generator
