"""Batched chat generation: the ``sampling`` config group turned into ``generate`` calls.

Prompts are sorted by length before batching so that a batch pads little, then put
back in their original order. Padding is on the left, as decoder-only batching needs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from training.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generated:
    text: str
    completion_tokens: int  # generated tokens, the stop token included, padding excluded
    stopped: bool  # ended on the stop token (False: cut at max_new_tokens)


def generation_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``generate`` keyword arguments for the sampling settings in ``cfg``, validated."""
    max_new = int(cfg.get("max_new_tokens", 0))
    if max_new < 1:
        raise ConfigError(f"sampling.max_new_tokens must be at least 1, got {max_new}")
    rep = float(cfg.get("repetition_penalty", 1.0))
    if rep <= 0:
        raise ConfigError(f"sampling.repetition_penalty must be positive, got {rep}")
    kwargs: dict[str, Any] = {"max_new_tokens": max_new, "repetition_penalty": rep}
    if not cfg.get("do_sample"):
        # Explicit values so a model's own generation_config (often temperature 0.7) cannot leak in.
        return {**kwargs, "do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    temperature, top_p, top_k = float(cfg["temperature"]), float(cfg["top_p"]), int(cfg["top_k"])
    if temperature <= 0:
        raise ConfigError(f"sampling.temperature must be positive when sampling, got {temperature}")
    if not 0 < top_p <= 1:
        raise ConfigError(f"sampling.top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ConfigError(f"sampling.top_k must be >= 0 (0 turns it off), got {top_k}")
    return {**kwargs, "do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": top_k or None}


def presence_penalty_processor(penalty: float, prompt_length: int):
    """OpenAI-style presence penalty: lower once the logit of every token already generated.

    transformers has only the multiplicative ``repetition_penalty``, which also counts
    prompt tokens; this counts the completion only, as vLLM and OpenAI do.
    """
    import torch
    from transformers import LogitsProcessor

    class PresencePenalty(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            generated = input_ids[:, prompt_length:]
            if generated.shape[1] == 0:
                return scores
            seen = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, generated, True)
            return scores - penalty * seen.to(scores.dtype)

    return PresencePenalty()


def generate(model, tokenizer, prompts: Sequence[list[dict[str, str]]], sampling: Mapping[str, Any], *,
             batch_size: int, stop_token_id: int, chat_template_kwargs: Mapping[str, Any] | None = None,
             seed: int = 0, progress: bool = True, desc: str = "eval") -> tuple[list[Generated], float]:
    """Complete each chat prompt; return the generations in prompt order and the seconds spent generating."""
    import torch
    from tqdm.auto import tqdm
    from transformers import LogitsProcessorList, set_seed

    if batch_size < 1:
        raise ConfigError(f"eval.batch_size must be at least 1, got {batch_size}")
    kwargs = generation_kwargs(sampling)
    presence = float(sampling.get("presence_penalty", 0.0))
    template_kwargs = dict(chat_template_kwargs or {})
    encoded = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=True,
                                             **template_kwargs)["input_ids"] for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    results: list[Generated | None] = [None] * len(encoded)
    set_seed(seed)
    model.eval()
    device = next(model.parameters()).device
    seconds = 0.0
    bar = tqdm(total=len(order), desc=desc, unit="problem", disable=not progress)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = tokenizer.pad({"input_ids": [encoded[i] for i in chunk]}, padding=True, return_tensors="pt").to(device)
        width = batch["input_ids"].shape[1]
        processors = LogitsProcessorList([presence_penalty_processor(presence, width)] if presence else [])
        began = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**batch, **kwargs, logits_processor=processors, eos_token_id=stop_token_id,
                                 pad_token_id=tokenizer.pad_token_id)
        seconds += time.perf_counter() - began
        for row, index in zip(out[:, width:].tolist(), chunk):
            stopped = stop_token_id in row
            kept = row[: row.index(stop_token_id) + 1] if stopped else row
            text = tokenizer.decode(kept, skip_special_tokens=True)
            results[index] = Generated(text=text, completion_tokens=len(kept), stopped=stopped)
        bar.update(len(chunk))
    bar.close()
    return [r for r in results if r is not None], seconds
