"""Batched chat generation: the ``sampling`` config group turned into ``generate`` calls.

Prompts are sorted by length before batching so that a batch pads little, then put
back in their original order. Padding is on the left, as decoder-only batching needs.
The tokens every prompt shares (system message, few-shot exemplars) are computed once.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from training.config.schema import SamplingSettings
from training.config.settings import read_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generated:
    text: str
    completion_tokens: int  # generated tokens, the stop token included, padding excluded
    stopped: bool  # ended on the stop token (False: cut at max_new_tokens)


def generation_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``generate`` keyword arguments for the sampling settings in ``cfg``, read through their schema.

    Greedy decoding passes temperature, top_p and top_k explicitly as None, so that a model's own
    generation_config (often temperature 0.7) cannot leak in; top_k 0 turns the cut off.
    """
    settings = read_settings(SamplingSettings, cfg, "sampling")
    return {"max_new_tokens": settings.max_new_tokens, "repetition_penalty": settings.repetition_penalty,
            "do_sample": settings.do_sample, "temperature": settings.temperature, "top_p": settings.top_p,
            "top_k": settings.top_k or None}


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


# A shorter common prefix saves less prefill than the extra cache copy costs.
MIN_SHARED_PREFIX = 16


def shared_prefix(encoded: Sequence[Sequence[int]]) -> list[int]:
    """The token prefix every prompt starts with, leaving each prompt at least one token of its own."""
    if len(encoded) < 2:
        return []
    first, shortest = encoded[0], min(len(ids) for ids in encoded)
    length = 0
    while length < shortest - 1 and all(ids[length] == first[length] for ids in encoded):
        length += 1
    return list(first[:length])


def first_token_clock(stamps: list[float]):
    """A logits processor that notes when the first scores arrive: the end of the prefill forward."""
    from transformers import LogitsProcessor

    class FirstTokenClock(LogitsProcessor):
        def __call__(self, input_ids, scores):
            if not stamps:
                stamps.append(time.perf_counter())
            return scores

    return FirstTokenClock()


def regroup_limits(max_new_tokens: int, first: int) -> list[int]:
    """Generated-token counts after which unfinished rows are regrouped: first, 2 x first, ... max_new_tokens."""
    if first <= 0 or first >= max_new_tokens:
        return [max_new_tokens]
    limits = [first]
    while limits[-1] * 2 < max_new_tokens:
        limits.append(limits[-1] * 2)
    return [*limits, max_new_tokens]


def generate(model, tokenizer, prompts: Sequence[list[dict[str, str]]], sampling: Mapping[str, Any], *,
             batch_size: int, stop_token_id: int, chat_template_kwargs: Mapping[str, Any] | None = None,
             seed: int = 0, progress: bool = True, desc: str = "eval", share_prefix: bool = True,
             regroup_after: int = 32, autocast: bool = False, timing: dict[str, Any] | None = None,
             logits_processors: Callable[[int], list] | None = None) -> tuple[list[Generated], float]:
    """Complete each chat prompt; return the generations in prompt order and the seconds spent generating.

    ``share_prefix``: the tokens every prompt starts with (system message, few-shot exemplars, the level's
    instruction) are computed once and their KV cache copied into each batch. ``regroup_after``: a batch
    decodes until its longest row ends, so one rambling answer keeps every finished row of its batch busy;
    after ``regroup_after``, then 2x, 4x ... new tokens the finished rows are dropped from the batch and its
    KV cache, and the rest go on with fewer rows (0: one pass per batch). ``timing``, when given, receives
    the prefill and decode split (:func:`timing_summary`). ``logits_processors``, when given, is called with each
    batch's padded prompt width and returns processors for that batch (the latent level's constrained span,
    :mod:`training.latent.decoding`); they must read their state from the tokens, as regrouping calls
    ``generate`` again on the sequences so far.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import set_seed

    batch_size = int(batch_size)  # checked with its group (eval.batch_size, teacher.batch_size)
    kwargs = generation_kwargs(sampling)
    limits = regroup_limits(kwargs.pop("max_new_tokens"), regroup_after)
    template_kwargs = dict(chat_template_kwargs or {})
    encoded = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=True,
                                             **template_kwargs)["input_ids"] for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    set_seed(seed)
    model.eval()
    device = next(model.parameters()).device
    clock = {"prefill_seconds": 0.0, "decode_seconds": 0.0, "prompt_tokens": sum(map(len, encoded)),
             "prefill_computed_tokens": 0, "shared_prefix_tokens": 0, "batches": 0, "rows_dropped_early": 0}
    precision = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    prefix = shared_prefix(encoded) if share_prefix else []
    prefix_cache = None
    if len(prefix) >= MIN_SHARED_PREFIX:
        began = time.perf_counter()
        with torch.inference_mode(), precision:
            prefix_cache = model(input_ids=torch.tensor([prefix], device=device), use_cache=True,
                                 logits_to_keep=1).past_key_values
        clock["prefill_seconds"] += time.perf_counter() - began
        clock.update(shared_prefix_tokens=len(prefix), prefill_computed_tokens=len(prefix))
    else:
        prefix = []
    results: list[Generated | None] = [None] * len(encoded)
    bar = tqdm(total=len(order), desc=desc, unit="problem", disable=not progress)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        written = _generate_batch(model, tokenizer, kwargs, float(sampling.get("presence_penalty", 0.0)),
                                  stop_token_id, prefix, prefix_cache, precision, clock,
                                  [encoded[i] for i in chunk], limits, logits_processors)
        for index, ids in zip(chunk, written):
            results[index] = Generated(text=tokenizer.decode(ids, skip_special_tokens=True),
                                       completion_tokens=len(ids), stopped=stop_token_id in ids)
        bar.update(len(chunk))
    bar.close()
    outputs = [r for r in results if r is not None]
    if timing is not None:
        timing.update(clock, generated_tokens=sum(g.completion_tokens for g in outputs), rows=len(outputs))
    return outputs, clock["prefill_seconds"] + clock["decode_seconds"]


def _generate_batch(model, tokenizer, kwargs: Mapping[str, Any], presence: float, stop_token_id: int,
                    prefix: list[int], prefix_cache, precision, clock: dict[str, Any], rows: list[list[int]],
                    limits: list[int], logits_processors: Callable[[int], list] | None = None) -> list[list[int]]:
    """The completion of each row of one left-padded batch, finished rows dropped at each of ``limits``."""
    import torch
    from transformers import LogitsProcessorList

    device = next(model.parameters()).device
    batch = tokenizer.pad({"input_ids": [ids[len(prefix):] for ids in rows]}, padding=True,
                          return_tensors="pt").to(device)
    ids, mask, cache = batch["input_ids"], batch["attention_mask"], None
    if prefix_cache is not None:
        # Prefix, then the left padding, then each prompt's own tokens: positions follow the attention mask.
        head = torch.tensor([prefix] * len(rows), device=device)
        ids, mask = torch.cat([head, ids], 1), torch.cat([torch.ones_like(head), mask], 1)
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(len(rows))
    clock["prefill_computed_tokens"] += int(mask[:, len(prefix):].sum())
    width = ids.shape[1]
    stamps: list[float] = []
    # The presence penalty counts the completion only: the tokens after the prompt's width.
    processors = LogitsProcessorList([first_token_clock(stamps)] + ([presence_penalty_processor(presence, width)]
                                                                     if presence else [])
                                     + (list(logits_processors(width)) if logits_processors else []))
    written: list[list[int]] = [[] for _ in rows]
    running, spent = list(range(len(rows))), 0
    for limit in limits:
        began = time.perf_counter()
        with torch.inference_mode(), precision:
            out = model.generate(input_ids=ids, attention_mask=mask, past_key_values=cache, **kwargs,
                                 max_new_tokens=limit - spent, logits_processor=processors,
                                 eos_token_id=stop_token_id, pad_token_id=tokenizer.pad_token_id,
                                 return_dict_in_generate=True)
        ended = time.perf_counter()
        first = stamps[0] if stamps and spent == 0 else began  # only the first call prefills
        clock["prefill_seconds"] += first - began
        clock["decode_seconds"] += ended - first
        clock["batches"] += spent == 0
        fresh = out.sequences[:, ids.shape[1]:]
        keep = []
        for position, (row, new) in enumerate(zip(running, fresh.tolist())):
            if stop_token_id in new:
                written[row] += new[: new.index(stop_token_id) + 1]
            else:
                written[row] += new
                keep.append(position)
        if not keep or limit == limits[-1]:
            break
        # Go on with the unfinished rows only: their sequences, mask and KV cache (no token is computed again).
        clock["rows_dropped_early"] += len(running) - len(keep)
        select = torch.tensor(keep, device=device)
        cache = out.past_key_values
        cache.batch_select_indices(select)
        ids = out.sequences[select]
        mask = torch.cat([mask, torch.ones_like(fresh)], 1)[select]
        running, spent = [running[p] for p in keep], limit
    return written


def timing_summary(timing: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics for the prefill/decode split: prompt tokens per second of prefill, and generated tokens after
    each row's first (which the prefill's logits give) per second of decoding."""
    prefill, decode = timing["prefill_seconds"], timing["decode_seconds"]
    decoded = timing["generated_tokens"] - timing["rows"]
    return {
        "eval_prefill_seconds": round(prefill, 3),
        "eval_decode_seconds": round(decode, 3),
        "eval_prompt_tokens": timing["prompt_tokens"],
        "eval_prefill_computed_tokens": timing["prefill_computed_tokens"],
        "eval_shared_prefix_tokens": timing["shared_prefix_tokens"],
        # Finished rows taken out of a batch that went on decoding for its other rows (eval.regroup_after).
        "eval_rows_dropped_early": timing.get("rows_dropped_early", 0),
        "eval_prefill_tokens_per_second": round(timing["prompt_tokens"] / prefill, 1) if prefill > 0 else None,
        "eval_decode_tokens_per_second": round(decoded / decode, 1) if decode > 0 else None,
    }
