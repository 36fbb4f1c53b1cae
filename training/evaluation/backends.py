"""Which engine generates the evaluation answers: transformers (everywhere) or vLLM (fast, CUDA only).

``eval.backend``: ``transformers``, ``vllm``, or ``auto`` (vLLM when it is installed and
the trial runs on a GPU, else transformers). The log names the backend used and why,
so a slow evaluation is never a mystery. Both backends take the same chat prompts and
return the same :class:`~training.evaluation.generation.Generated` rows, so grading, metrics and
``eval_samples.jsonl`` do not depend on the backend.

vLLM serves the base model in the trial's precision with the trial's LoRA adapter
attached per request; it does not load the NF4 weights the adapter was trained on,
so its scores can differ slightly from a transformers evaluation of the NF4 student.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from training.common.errors import ConfigError
from training.config.schema import EvalSettings
from training.config.settings import read_setting
from training.evaluation.generation import Generated, generation_kwargs

log = logging.getLogger(__name__)


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def choose_backend(requested: str, device: str, *, vllm_available: bool | None = None) -> tuple[str, str]:
    """``(backend, why)`` for ``eval.backend=requested`` on ``device``; ConfigError for an impossible request."""
    read_setting(EvalSettings, "backend", requested, "eval")
    available = vllm_installed() if vllm_available is None else vllm_available
    if requested == "vllm":
        if not available:
            raise ConfigError("eval.backend=vllm but vLLM is not installed (pip install vllm, on a CUDA machine); "
                              "use eval.backend=auto or transformers")
        if device != "cuda":
            raise ConfigError(f"eval.backend=vllm needs a CUDA GPU; this trial runs on {device}")
        return "vllm", "requested"
    if requested == "transformers":
        return "transformers", "requested"
    if not available:
        return "transformers", "vLLM is not installed"
    if device != "cuda":
        return "transformers", f"vLLM needs a CUDA GPU and this trial runs on {device}"
    return "vllm", "vLLM is installed and the trial runs on a GPU"


def vllm_sampling_kwargs(sampling: Mapping[str, Any], stop_token_id: int, seed: int) -> dict[str, Any]:
    """``vllm.SamplingParams`` arguments equivalent to the ``sampling`` group, validated the same way."""
    checked = generation_kwargs(sampling)
    kwargs: dict[str, Any] = {
        "max_tokens": checked["max_new_tokens"],
        "repetition_penalty": checked["repetition_penalty"],
        "presence_penalty": float(sampling.get("presence_penalty", 0.0)),
        "stop_token_ids": [stop_token_id],
        "seed": seed,
        "skip_special_tokens": True,
    }
    if not checked["do_sample"]:
        return {**kwargs, "temperature": 0.0}  # vLLM's greedy decoding
    return {**kwargs, "temperature": checked["temperature"], "top_p": checked["top_p"],
            "top_k": checked["top_k"] or -1}  # -1: no top-k cut


def start_vllm(model: str, *, precision: str, seed: int, lora_rank: int | None = None,
               engine_args: Mapping[str, Any] | None = None):
    """A vLLM engine for ``model`` (LoRA requests enabled up to ``lora_rank``, when given), started once per
    evaluation: both thinking modes of ``eval.thinking=both`` use it. The log says how long it took to start."""
    from vllm import LLM

    dtype = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}[precision]
    lora = {"enable_lora": True, "max_lora_rank": max(lora_rank, 8)} if lora_rank else {}
    began = time.perf_counter()
    engine = LLM(model=model, tokenizer=model, dtype=dtype, seed=seed, **lora, **dict(engine_args or {}))
    log.info("eval: vLLM engine started in %.1f s (%s, %s)", time.perf_counter() - began, model, precision)
    return engine


def vllm_generate(engine, adapter_dir: str | None, prompts: Sequence[list[dict[str, str]]],
                  sampling: Mapping[str, Any], *, stop_token_id: int, seed: int,
                  chat_template_kwargs: Mapping[str, Any] | None = None) -> tuple[list[Generated], float]:
    """Complete each chat prompt with ``engine`` (the base model plus ``adapter_dir`` as a LoRA request)."""
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    params = SamplingParams(**vllm_sampling_kwargs(sampling, stop_token_id, seed))
    lora = LoRARequest("trial-adapter", 1, adapter_dir) if adapter_dir else None
    start = time.perf_counter()
    outputs = engine.chat([list(p) for p in prompts], params, use_tqdm=True, lora_request=lora,
                          chat_template_kwargs=dict(chat_template_kwargs or {}))
    seconds = time.perf_counter() - start
    results = []
    for out in outputs:
        completion = out.outputs[0]
        ids = list(completion.token_ids)
        stopped = completion.finish_reason == "stop"
        results.append(Generated(text=completion.text, completion_tokens=len(ids), stopped=stopped))
    return results, seconds
