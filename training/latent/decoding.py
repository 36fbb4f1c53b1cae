"""Constrained decoding of the abstract span: only reserved symbols inside it, at most a cap of them, then free.

The card decodes ``prefix + "<latent>"`` in two stages (vLLM ``allowed_token_ids`` up to the closing marker,
then the answer unconstrained). For transformers generation the same rule is one logits processor, batched:

* a row whose prompt ends with the opening marker starts inside the span; a row whose prompt does not (a
  chat prompt from the template as it is) is made to generate the marker first, so both forms work and the
  marker, when generated, is part of the completion;
* inside the span only ``vocab.allowed_in_span`` (the symbols and the closing marker) may come next, and
  after ``max_abstract_tokens`` symbols the closing marker is forced;
* after the closing marker the answer decodes unconstrained (the end-of-turn token included).

The processor keeps no state between calls: each row's phase is read from its own tokens after the padded
prompt width, so it gives the same tokens when :func:`training.evaluation.generation.generate` drops finished
rows and calls ``generate`` again on the unfinished rows' sequences so far (``regroup_after``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from training.evaluation.generation import Generated
from training.latent.vocabulary import AbstractVocab

# A row's phase, as read from its tokens.
FORCE_OPEN, IN_SPAN, FORCE_CLOSE, FREE = 0, 1, 2, 3


def span_phases(input_ids, width: int, open_id: int, close_id: int, max_abstract_tokens: int):
    """Each row's phase (a LongTensor of FORCE_OPEN ... FREE) for the token to come.

    ``input_ids[:, width - 1]`` is each row's last prompt token (prompts are left-padded, so it is never
    padding) and ``input_ids[:, width:]`` what the row has generated. The span begins at the first opening
    marker among these; it is over once a closing marker follows.
    """
    import torch

    seq = input_ids[:, width - 1:]
    is_open = seq == open_id
    has_open = is_open.any(1)
    first_open = is_open.int().argmax(1)  # 0 where there is none: masked by has_open below
    after_open = torch.arange(seq.shape[1], device=seq.device)[None, :] > first_open[:, None]
    closed = ((seq == close_id) & after_open).any(1)
    symbols = seq.shape[1] - 1 - first_open  # tokens after the marker, all symbols while the span is open
    phase = torch.full_like(first_open, IN_SPAN, dtype=torch.long)
    phase[symbols >= max_abstract_tokens] = FORCE_CLOSE
    phase[closed] = FREE
    phase[~has_open] = FORCE_OPEN
    return phase


def abstract_span_processor(vocab: AbstractVocab, width: int, max_abstract_tokens: int, *,
                            span_scale: float | None = None, greedy_answer: bool = False):
    """The logits processor of one batch whose padded prompts are ``width`` tokens wide.

    ``span_scale`` multiplies the scores inside the span (a temperature of its own, see :func:`span_decoding`);
    ``greedy_answer`` keeps only the best token after the span, so sampling there is greedy decoding.
    """
    import torch
    from transformers import LogitsProcessor

    if max_abstract_tokens < 1:
        raise ValueError(f"max_abstract_tokens must be >= 1, got {max_abstract_tokens}")
    allowed = list(vocab.allowed_in_span)

    class AbstractSpan(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            phase = span_phases(input_ids, width, vocab.open_id, vocab.close_id, max_abstract_tokens)
            free = phase == FREE
            if greedy_answer and bool(free.any()):
                best = scores.argmax(-1, keepdim=True)
                only_best = torch.full_like(scores, -float("inf")).scatter(-1, best, scores.gather(-1, best))
                scores = torch.where(free[:, None], only_best, scores)
            if bool(free.all()):
                return scores
            if span_scale is not None:
                scores = torch.where((phase == IN_SPAN)[:, None], scores * span_scale, scores)
            keep = torch.zeros_like(scores, dtype=torch.bool)
            keep[free] = True
            in_span = (phase == IN_SPAN).nonzero().flatten()
            keep[in_span[:, None], torch.tensor(allowed, device=scores.device)[None, :]] = True
            keep[phase == FORCE_OPEN, vocab.open_id] = True
            keep[phase == FORCE_CLOSE, vocab.close_id] = True
            return scores.masked_fill(~keep, -float("inf"))

    return AbstractSpan()


def span_processors(vocab: AbstractVocab, max_abstract_tokens: int, *, span_scale: float | None = None,
                    greedy_answer: bool = False) -> Callable[[int], list]:
    """What ``generate(..., logits_processors=...)`` takes: the processors of a batch of the given width."""
    return lambda width: [abstract_span_processor(vocab, width, max_abstract_tokens, span_scale=span_scale,
                                                  greedy_answer=greedy_answer)]


def span_decoding(vocab: AbstractVocab, max_abstract_tokens: int, span_temperature: float,
                  sampling: Mapping[str, Any]) -> tuple[dict[str, Any], Callable[[int], list]]:
    """The sampling settings and processors that decode the span at ``span_temperature`` and the answer with the
    trial's ``sampling``, in one ``generate`` call (the card: the span sampled at 0.7, the answer greedy).

    A greedily trained span decoder closes the span at once when decoded greedily (the closing marker is the single
    likeliest token at every step), so the span is sampled. With a greedy trial, generation samples at temperature
    1 with the span's scores divided by ``span_temperature`` and the answer's reduced to their best token, which is
    greedy decoding; with a sampled trial (temperature T) the span's scores are scaled by T / ``span_temperature``
    before the trial's temperature divides them. ``span_temperature`` 0 decodes the span with the trial's sampling.
    """
    sampling = dict(sampling)
    if span_temperature <= 0:
        return sampling, span_processors(vocab, max_abstract_tokens)
    if sampling.get("do_sample"):
        scale = float(sampling.get("temperature") or 1.0) / span_temperature
        return sampling, span_processors(vocab, max_abstract_tokens, span_scale=scale)
    sampled = {**sampling, "do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0}
    return sampled, span_processors(vocab, max_abstract_tokens, span_scale=1.0 / span_temperature,
                                    greedy_answer=True)


def split_span(ids: Sequence[int], vocab: AbstractVocab) -> tuple[list[int], list[int]]:
    """A completion's token ids cut after its closing marker: (span, answer); the span holds any opening
    marker that was generated. Without a closing marker (cut by the token budget) all of it is span."""
    ids = list(ids)
    if vocab.close_id not in ids:
        return ids, []
    end = ids.index(vocab.close_id) + 1
    return ids[:end], ids[end:]


def vllm_span_kwargs(vocab: AbstractVocab, max_abstract_tokens: int, sampling_kwargs: Mapping[str, Any],
                     span_temperature: float = 0.0) -> dict:
    """``SamplingParams`` of stage 1 (the span): the trial's sampling at ``span_temperature`` (0: the trial's own),
    restricted to the symbols and the closing marker, stopping at it, at most ``max_abstract_tokens`` symbols (a
    span cut there gets the marker added)."""
    temperature = {"temperature": span_temperature} if span_temperature > 0 else {}
    return {**sampling_kwargs, **temperature, "allowed_token_ids": list(vocab.allowed_in_span),
            "stop_token_ids": [vocab.close_id], "max_tokens": max_abstract_tokens, "skip_special_tokens": False}


def vllm_answer_kwargs(sampling_kwargs: Mapping[str, Any], span_tokens: int) -> dict:
    """``SamplingParams`` of stage 2 (the answer): unconstrained, in what the span left of the token budget, so
    a completion has at most ``max_tokens`` tokens as in the transformers backend."""
    return {**sampling_kwargs, "max_tokens": max(1, int(sampling_kwargs["max_tokens"]) - span_tokens)}


def stage_two_prompt(prompt_ids: Sequence[int], span_ids: Sequence[int], vocab: AbstractVocab) -> list[int]:
    """The prompt of stage 2: the prompt, the span, and the closing marker where stage 1 stopped at the cap."""
    ids = [*prompt_ids, *span_ids]
    return ids if vocab.close_id in span_ids else [*ids, vocab.close_id]


def vllm_generate_latent(engine, tokenizer, prompts: Sequence[list[dict[str, str]]],
                         sampling: Mapping[str, Any], vocab: AbstractVocab, *, max_abstract_tokens: int,
                         span_temperature: float = 0.0, stop_token_id: int, seed: int,
                         chat_template_kwargs: Mapping[str, Any] | None = None) -> tuple[list[Generated], float]:
    """The card's two-stage vLLM decode, batched over all prompts: the span under ``allowed_token_ids`` up to
    the closing marker, then the answer unconstrained on prompt + span. Returns what ``vllm_generate`` does.

    Not yet run: vLLM is not installed where this was written; only the SamplingParams arguments
    (:func:`vllm_span_kwargs`, :func:`vllm_answer_kwargs`) and the stage-two prompt are tested.
    ``engine`` serves a merged model saved with the extended tokenizer (the card's ``final/``:
    ``merge_and_unload()`` of the adapter on a full-precision base): vLLM's LoRA requests cannot carry the
    reserved embedding rows. Prompts are encoded and completions decoded with ``tokenizer``, as in
    :func:`training.evaluation.generation.generate`, so both backends count the same tokens.
    """
    import time

    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from training.evaluation.backends import vllm_sampling_kwargs

    base = vllm_sampling_kwargs(sampling, stop_token_id, seed)
    encoded = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=True,
                                             **dict(chat_template_kwargs or {}))["input_ids"] for p in prompts]
    opened = [[] if ids[-1] == vocab.open_id else [vocab.open_id] for ids in encoded]  # as the processor forces it
    start = time.perf_counter()
    spans = engine.generate([TokensPrompt(prompt_token_ids=[*ids, *extra]) for ids, extra in zip(encoded, opened)],
                            SamplingParams(**vllm_span_kwargs(vocab, max_abstract_tokens, base, span_temperature)),
                            use_tqdm=True)
    firsts = [[*extra, *stage_two_prompt([], list(out.outputs[0].token_ids), vocab)]
              for extra, out in zip(opened, spans)]
    answers = engine.generate([TokensPrompt(prompt_token_ids=[*ids, *first]) for ids, first in zip(encoded, firsts)],
                              [SamplingParams(**vllm_answer_kwargs(base, len(first))) for first in firsts],
                              use_tqdm=True)
    seconds = time.perf_counter() - start
    results = []
    for first, out in zip(firsts, answers):
        ids = [*first, *out.outputs[0].token_ids]
        results.append(Generated(text=tokenizer.decode(ids, skip_special_tokens=True), completion_tokens=len(ids),
                                 stopped=out.outputs[0].finish_reason == "stop"))
    return results, seconds
