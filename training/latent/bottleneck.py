"""Phase A's bottleneck rows (Abstract-CoT, seed card 004): ``[prompt; verbal CoT; z; answer]`` and their mask.

A row is four token segments, tokenised one by one and concatenated:

    prompt   the chat template's rendering of the messages, generation prompt included
    cot      the verbal reasoning as the student's think block, ``<think>\\n...\\n</think>\\n``
    z        the abstract span, ``<latent><z07><z41>...</latent>``
    answer   ``\\n#### 72`` and the token the template ends an assistant turn with

Every boundary falls on an added token (``<think>``, ``<latent>``, ``</latent>``, the end of turn), so the
concatenation is also what the tokenizer makes of the whole text. The 4-D mask is causal, hides padding, and keeps
the answer's rows from the verbal CoT's columns: the answer reads the CoT only through the z positions, which
attend to it. Which segments carry loss and which pairs are blocked are parameters, so Phase B's rows
(``[prompt; z; answer]``, no ``cot``, plain causal attention, loss on z and the answer) are built by the same code.

Note that the first answer token is predicted at the last z position (``</latent>``), which reads the CoT; the
answer begins with a fixed newline, so no answer content is predicted from a row that sees the CoT directly.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from typing import Any

from training.common.errors import ConfigError, DataError
from training.grading.completions import THINK_CLOSE, THINK_OPEN
from training.latent.vocabulary import AbstractVocab

PROMPT, COT, Z, ANSWER = "prompt", "cot", "z", "answer"
IGNORE = -100  # the label transformers' loss skips
PHASE_A_BLOCKED: tuple[tuple[str, str], ...] = ((ANSWER, COT),)  # (rows, columns): the answer never reads the CoT
# Phase A learns z as well as the answer: z given the CoT is what later rounds sample from the prompt alone. With
# the answer alone as target (measured on SmolLM2-135M, SVAMP, 2 rounds) the model never learned to close a span:
# the spans it sampled grew from round 1's 16-22 symbols to 70, then 112 (cap 128), and Phase B trained on them.
# The span's opening marker carries no loss in either phase: decoding forces it, and in Phase A it is predicted at
# the CoT's last position, the one place a target would be read straight from the CoT.
PHASE_A_LOSS = (Z, ANSWER)
PHASE_B_LOSS = (Z, ANSWER)
ATTENTION_FORMS = ("eager", "sdpa")  # the implementations that take a custom 4-D mask (flash attention does not)
_SENTINEL = "cot-pareto-turn-end-probe"


def turn_end_id(tokenizer, chat_template_kwargs: Mapping[str, Any] | None = None) -> int:
    """The token the chat template writes right after an assistant message's content (Qwen3: ``<|im_end|>``)."""
    probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": _SENTINEL}]
    text = tokenizer.apply_chat_template(probe, tokenize=False, **dict(chat_template_kwargs or {}))
    tail = text[text.rindex(_SENTINEL) + len(_SENTINEL):] if _SENTINEL in text else ""
    ids = tokenizer.encode(tail, add_special_tokens=False)
    if not ids:
        raise ConfigError("the chat template writes nothing after an assistant message: no end-of-turn token to train")
    return int(ids[0])


def random_z(keys: Sequence[str], n_symbols: int, length: tuple[int, int] = (16, 22), seed: int = 0) -> list[list[int]]:
    """Round 1's z: for each key (a row's problem id and sample), symbol indices drawn uniformly, their count
    uniform in ``length`` (inclusive). Each row's draw depends on its key and the seed alone, not on the order."""
    low, high = length
    if not 1 <= low <= high:
        raise ConfigError(f"the random z's length range must be 1 <= low <= high, got {length}")
    spans = []
    for key in keys:
        rng = random.Random(hashlib.sha256(f"{seed}:{key}".encode()).digest())
        spans.append([rng.randrange(n_symbols) for _ in range(rng.randint(low, high))])
    return spans


def build_row(tokenizer, messages: Sequence[Mapping[str, str]], cot: str | None, z_indices: Sequence[int],
              answer: str, vocab: AbstractVocab, *, end_of_turn: int,
              chat_template_kwargs: Mapping[str, Any] | None = None,
              think_tags: tuple[str, str] = (THINK_OPEN, THINK_CLOSE),
              loss_on: Sequence[str] = PHASE_A_LOSS) -> dict[str, Any]:
    """One training row: ``input_ids``, ``labels`` (:data:`IGNORE` outside the ``loss_on`` segments) and
    ``segments`` (name -> ``[start, end)``, in order). ``cot=None`` leaves the verbal CoT out (Phase B)."""
    prompt = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True,
                                           **dict(chat_template_kwargs or {}))
    texts = {PROMPT: prompt}
    if cot is not None:
        texts[COT] = f"{think_tags[0]}\n{cot.strip()}\n{think_tags[1]}\n"
    texts[Z] = vocab.span(list(z_indices))
    texts[ANSWER] = f"\n#### {answer}"
    unknown = set(loss_on) - set(texts)
    if unknown:
        raise ConfigError(f"loss on segments {sorted(unknown)} that this row does not have ({', '.join(texts)})")
    input_ids: list[int] = []
    labels: list[int] = []
    segments: dict[str, list[int]] = {}
    for name, text in texts.items():
        ids = tokenizer.encode(text, add_special_tokens=False) + ([end_of_turn] if name == ANSWER else [])
        segments[name] = [len(input_ids), len(input_ids) + len(ids)]
        input_ids += ids
        labels += ids if name in loss_on else [IGNORE] * len(ids)
        if name == Z:
            labels[segments[Z][0]] = IGNORE  # the opening marker: decoding forces it (see PHASE_A_LOSS)
    if segments[PROMPT][1] == 0:
        raise DataError("a bottleneck row's prompt renders to no tokens")
    return {"input_ids": input_ids, "labels": labels, "segments": segments}


def allowed_attention(rows: Sequence[Mapping[str, Any]], length: int,
                      blocked: Sequence[tuple[str, str]] = PHASE_A_BLOCKED):
    """Which key each query may read, (batch, 1, length, length) booleans, for right-padded ``rows``.

    Causal; padding columns hidden; each (rows, columns) segment pair in ``blocked`` cut. A padding row reads
    itself alone: every row keeps one key, so no softmax is taken over nothing (a NaN the backward would spread).
    """
    import torch

    positions = torch.arange(length)
    causal = positions[None, :] <= positions[:, None]
    allowed = causal.repeat(len(rows), 1, 1)
    for b, row in enumerate(rows):
        n = len(row["input_ids"])
        allowed[b, :, n:] = False
        allowed[b, positions[n:], positions[n:]] = True
        segments = row["segments"]
        for query, key in blocked:
            if query in segments and key in segments:
                (q0, q1), (k0, k1) = segments[query], segments[key]
                allowed[b, q0:q1, k0:k1] = False
    return allowed[:, None]


def model_mask(allowed, attn_implementation: str, dtype=None):
    """``allowed`` in the form the attention takes as a ready 4-D mask (transformers passes one through as is):
    booleans for sdpa (True reads), an additive float mask for eager (which adds the mask to the scores)."""
    import torch

    if attn_implementation == "sdpa":
        return allowed
    if attn_implementation == "eager":
        dtype = dtype or torch.float32
        return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    raise ConfigError(_no_custom_mask(attn_implementation))


def _no_custom_mask(attn_implementation: str) -> str:
    return (f"attention {attn_implementation!r} takes no custom 4-D mask; the bottleneck needs one of "
            f"{', '.join(ATTENTION_FORMS)} (hardware.attn_implementation)")


class BottleneckCollator:
    """Pads rows on the right and builds each batch's mask and position ids.

    Right padding keeps every real token at the positions it has alone (0, 1, ...), and causality already hides
    the trailing pads from every real token; the position ids are given explicitly all the same, so nothing
    downstream has to infer them from a mask. With nothing blocked (Phase B) the batch carries the plain 2-D
    padding mask, which lets sdpa use its causal kernels.
    """

    def __init__(self, pad_id: int, attn_implementation: str, *, blocked: Sequence[tuple[str, str]] = PHASE_A_BLOCKED,
                 mask_dtype=None):
        if blocked and attn_implementation not in ATTENTION_FORMS:
            raise ConfigError(_no_custom_mask(attn_implementation))
        self.pad_id, self.attn_implementation, self.blocked, self.mask_dtype = (
            pad_id, attn_implementation, tuple(blocked), mask_dtype)

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        length = max(len(row["input_ids"]) for row in rows)

        def padded(key: str, value: int):
            return torch.tensor([list(row[key]) + [value] * (length - len(row[key])) for row in rows])

        batch = {"input_ids": padded("input_ids", self.pad_id), "labels": padded("labels", IGNORE),
                 "position_ids": torch.arange(length).repeat(len(rows), 1)}
        if self.blocked:
            allowed = allowed_attention(rows, length, self.blocked)
            batch["attention_mask"] = model_mask(allowed, self.attn_implementation, self.mask_dtype)
        else:
            lengths = torch.tensor([len(row["input_ids"]) for row in rows])
            batch["attention_mask"] = (torch.arange(length)[None, :] < lengths[:, None]).long()
        return batch
