"""Evaluation: grade a student's completions and summarise accuracy against think tokens.

Grading and summarising are pure functions over strings and rows, so they are
tested without a model; :func:`evaluate` adds the one impure step, generation.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from training.common.errors import ConfigError
from training.config.schema import EvalSettings
from training.config.settings import read_setting
from training.data.levels import Level, build_prompt, template_keeps_earlier_think
from training.data.problems import Problem
from training.data.thinking import no_think_messages, thinking_switch
from training.evaluation.generation import Generated, generate, timing_summary
from training.evaluation.latent import add_span_stats
from training.grading.answers import EXTRACTORS, extract_answer, is_correct
from training.grading.completions import THINK_CLOSE, THINK_OPEN, parse_completion, think_text
from training.latent.vocabulary import CLOSE, OPEN
from training.models.tokens import TokenCounter

log = logging.getLogger(__name__)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a proportion: sane at 0 and n successes, unlike the normal one."""
    if n <= 0:
        return (0.0, 0.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # Exact at the ends: rounding would otherwise give 0.9999999999999999 for n out of n.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def format_ok(output: str, open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE, gold: str | None = None) -> bool:
    """One closed think block, then a ``#### N`` answer line: the format every level trains.

    An answer line that states no single number ("#### 5-7") is a format error, as a missing one is
    (for a LaTeX ``gold``, an empty one).
    """
    parsed = parse_completion(output, open_tag, close_tag)
    readable = extract_answer(output, "flexible", open_tag, close_tag, gold) is not None
    return parsed.well_formed and bool(parsed.answers) and readable


def grade_sample(problem: Problem, prompt: list[dict[str, str]], generated: Generated, counter: TokenCounter,
                 open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE, prefill: str = "") -> dict[str, Any]:
    """One row of ``eval_samples.jsonl``.

    ``prefill``: what the chat template wrote after the generation prompt (the empty think block of a no-think
    prompt), graded in front of the output so that a no-think answer is judged by the rules of every output.
    """
    output = prefill + generated.text
    answers = {mode: extract_answer(output, mode, open_tag, close_tag, problem.answer) for mode in EXTRACTORS}
    think = think_text(output, open_tag, close_tag)
    return {
        "id": problem.id,
        "prompt": prompt,
        "output": generated.text,
        "extracted": answers["flexible"],
        "extracted_strict": answers["strict"],
        "gold": problem.answer,
        "task_type": problem.task_type,
        "correct": is_correct(answers["flexible"], problem.answer),
        "correct_strict": is_correct(answers["strict"], problem.answer),
        "format_ok": format_ok(output, open_tag, close_tag, problem.answer),
        "think_tokens": counter.count([think])[0] if think else 0,
        "completion_tokens": generated.completion_tokens,
        "stopped": generated.stopped,
    }


def summarize(rows: Sequence[Mapping[str, Any]], extractor: str = "flexible") -> dict[str, Any]:
    """Aggregate metrics over graded rows; ``accuracy`` follows ``extractor``, both are reported."""
    read_setting(EvalSettings, "extractor", extractor, "eval")
    n = len(rows)
    if n == 0:
        raise ConfigError("nothing to evaluate: the eval split is empty (data.n_eval)")
    hits = {"flexible": sum(r["correct"] for r in rows), "strict": sum(r["correct_strict"] for r in rows)}
    think = [r["think_tokens"] for r in rows]
    completion = [r["completion_tokens"] for r in rows]
    correct_think = [r["think_tokens"] for r in rows if r["correct"]]
    low, high = wilson_interval(hits[extractor], n)
    other = "strict" if extractor == "flexible" else "flexible"
    return {
        "accuracy": round(hits[extractor] / n, 5),
        "accuracy_ci": [round(low, 5), round(high, 5)],
        "accuracy_extractor": extractor,
        "accuracy_strict": round(hits["strict"] / n, 5),
        "accuracy_flexible": round(hits["flexible"] / n, 5),
        f"accuracy_{other}_ci": [round(v, 5) for v in wilson_interval(hits[other], n)],
        "n_correct": hits[extractor],
        "mean_think_tokens": round(statistics.fmean(think), 3),
        "median_think_tokens": statistics.median(think),
        "mean_think_tokens_correct": round(statistics.fmean(correct_think), 3) if correct_think else None,
        "mean_completion_tokens": round(statistics.fmean(completion), 3),
        "format_error_rate": round(sum(not r["format_ok"] for r in rows) / n, 5),
        "truncated_rate": round(sum(not r["stopped"] for r in rows) / n, 5),
        "n_eval": n,
    }


def evaluate(model, tokenizer, problems: Sequence[Problem], level: Level, counter: TokenCounter, *,
             sampling: Mapping[str, Any], batch_size: int, stop_token_id: int, system: str | None = None,
             n_shots: int = 0, extractor: str = "flexible", open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE,
             chat_template_kwargs: Mapping[str, Any] | None = None, seed: int = 0, progress: bool = True,
             generator: Callable[[list[list[dict[str, str]]]], tuple[list[Generated], float]] | None = None,
             share_prefix: bool = True, regroup_after: int = 32, autocast: bool = False,
             thinking: str = "on", logits_processors: Callable[[int], list] | None = None,
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Generate at ``level``'s prompt for every problem, grade, and summarise.

    ``generator`` replaces transformers generation (``model`` is then unused): the vLLM backend takes the
    same prompts and chat-template kwargs and returns the same rows. ``thinking="off"`` asks for no-think
    answers in the model's own form (:mod:`training.data.thinking`); their think tokens are what the
    (empty) think block holds.

    At the latent level the span's markers are the think tags (its think tokens are the span's, counted by
    ``counter``, which must be the adapter's tokenizer), ``logits_processors`` constrain the span
    (:func:`training.latent.decoding.span_processors`), and the metrics describe the spans.
    """
    if level.latent is not None:
        open_tag, close_tag = OPEN, CLOSE
    in_system = n_shots > 0 and not template_keeps_earlier_think(tokenizer, chat_template_kwargs, open_tag, close_tag)
    if in_system:
        log.info("eval: the chat template drops earlier turns' think blocks; the %d exemplars go in the system "
                 "message", n_shots)
    prompts = [build_prompt(level, p.question, system, n_shots, open_tag, close_tag, shots_in_system=in_system)
               for p in problems]
    prefill = ""
    if thinking == "off":
        switch = thinking_switch(tokenizer, chat_template_kwargs)
        prompts = [no_think_messages(p, switch) for p in prompts]
        chat_template_kwargs, prefill = switch.kwargs("off"), switch.prefill
        log.info("eval: thinking off, by %s", switch.how)
    timing: dict[str, Any] = {}
    if generator is not None:
        outputs, seconds = generator(prompts, chat_template_kwargs)
    else:
        outputs, seconds = generate(model, tokenizer, prompts, sampling, batch_size=batch_size,
                                    stop_token_id=stop_token_id, chat_template_kwargs=chat_template_kwargs, seed=seed,
                                    progress=progress, share_prefix=share_prefix, regroup_after=regroup_after,
                                    autocast=autocast, timing=timing, logits_processors=logits_processors)
    rows = [grade_sample(p, prompt, out, counter, open_tag, close_tag, prefill)
            for p, prompt, out in zip(problems, prompts, outputs)]
    metrics = {**summarize(rows, extractor), "thinking": thinking}
    if level.latent is not None:
        metrics.update(add_span_stats(rows, level.latent))
    generated = sum(out.completion_tokens for out in outputs)
    metrics.update(eval_seconds=round(seconds, 3), eval_generated_tokens=generated,
                   eval_tokens_per_second=round(generated / seconds, 2) if seconds > 0 else None)
    if timing:  # the vLLM backend reports the total only
        metrics.update(timing_summary(timing))
    return rows, metrics
