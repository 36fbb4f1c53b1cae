"""Thinking on and off: no-think training rows (the Atem mix) and no-think prompts (Deimos' runtime switch).

A no-think answer is an empty think block and the answer line, in the model's own no-think form:

- **chat-template switch** (Qwen3's ``enable_thinking``): rendered with ``enable_thinking=False``, the
  template itself writes the empty block (``<think>\\n\\n</think>\\n\\n``) at the end of the generation prompt.
  The completion is then the answer line alone, and the model never generates the block: the block is
  :attr:`ThinkingSwitch.prefill`, put back in front of the output before it is graded.
- **instruction** (a model whose template has no switch, like SmolLM2's ChatML): the user message ends with
  :data:`NO_THINK_INSTRUCTION`, and the completion holds the empty think block itself, then the answer.

Which of the two a model has is read from its chat template (:func:`thinking_switch`), not configured.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from training.common.errors import DataError
from training.grading.completions import ANSWER_LINE, THINK_CLOSE, THINK_OPEN, format_completion

THINKING_MODES = ("on", "off")
# Appended to the user message of a no-think row or prompt, for a model whose chat template has no switch.
NO_THINK_INSTRUCTION = "Answer without thinking: leave the think block empty, then write the answer line."
_PROBE = [{"role": "user", "content": "cot-pareto-probe"}]


@dataclass(frozen=True)
class ThinkingSwitch:
    """How a model is put in no-think mode (see the module doc)."""

    template: bool  # the chat template has an ``enable_thinking`` switch
    on_kwargs: dict[str, Any] = field(default_factory=dict)  # chat-template kwargs of a think row / prompt
    off_kwargs: dict[str, Any] = field(default_factory=dict)  # ... of a no-think one
    prefill: str = ""  # what the template writes after the generation prompt in no-think mode

    @property
    def how(self) -> str:
        return "chat template (enable_thinking=False)" if self.template else "instruction"

    def kwargs(self, thinking: str) -> dict[str, Any]:
        return dict(self.off_kwargs if thinking == "off" else self.on_kwargs)


def thinking_switch(tokenizer, chat_template_kwargs: Mapping[str, Any] | None = None) -> ThinkingSwitch:
    """The model's no-think form: its template's ``enable_thinking`` switch if rendering with it off differs."""
    base = dict(chat_template_kwargs or {})
    on_kwargs, off_kwargs = {**base, "enable_thinking": base.get("enable_thinking", True)}, \
        {**base, "enable_thinking": False}

    def render(kwargs: Mapping[str, Any]) -> str:
        return tokenizer.apply_chat_template(_PROBE, tokenize=False, add_generation_prompt=True, **kwargs)

    on, off = render(on_kwargs), render(off_kwargs)
    if on == off:
        return ThinkingSwitch(template=False, on_kwargs=base, off_kwargs=base)
    return ThinkingSwitch(template=True, on_kwargs=on_kwargs, off_kwargs=off_kwargs,
                          prefill=off[len(on):] if off.startswith(on) else "")


def no_think_messages(messages: Sequence[Mapping[str, str]], switch: ThinkingSwitch) -> list[dict[str, str]]:
    """A prompt asking for a no-think answer: as it is with a template switch, else with the instruction."""
    messages = [dict(m) for m in messages]
    if not switch.template:
        messages[-1]["content"] = f"{messages[-1]['content']}\n{NO_THINK_INSTRUCTION}"
    return messages


def no_think_indices(rows: Sequence[Mapping[str, Any]], fraction: float, seed: int) -> set[int]:
    """Which rows become no-think: exactly ``round(fraction * len(rows))``, chosen by a seeded hash of each row's
    problem and sample, so the choice does not depend on the rows' order and changes with the seed."""
    count = round(fraction * len(rows))

    def rank(index: int) -> tuple[str, int]:
        row = rows[index]
        key = f"{seed}:{row.get('id')}:{row.get('sample', 0)}"
        return hashlib.sha256(key.encode()).hexdigest(), index

    return set(sorted(range(len(rows)), key=rank)[:count])


def no_think_row(row: Mapping[str, Any], switch: ThinkingSwitch, open_tag: str = THINK_OPEN,
                 close_tag: str = THINK_CLOSE) -> dict[str, Any]:
    """An SFT row (conversational prompt/completion) turned into its no-think form (see the module doc)."""
    content = row["completion"][-1]["content"]
    answers = ANSWER_LINE.findall(content.split(close_tag)[-1])
    if len(answers) != 1:
        raise DataError(f"training row {row.get('id')!r}: a no-think row needs exactly one '#### ' answer line in "
                        f"its completion, found {len(answers)}")
    answer = answers[0]
    completion = f"#### {answer}" if switch.template else format_completion("", answer, open_tag, close_tag)
    return {**row, "prompt": no_think_messages(row["prompt"], switch),
            "completion": [{"role": "assistant", "content": completion}], "thinking": "off",
            "think_chars": 0, "think_tokens": 0}


def mix_no_think(rows: Sequence[Mapping[str, Any]], fraction: float, seed: int, switch: ThinkingSwitch,
                 open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE) -> list[dict[str, Any]]:
    """``rows`` with the seeded ``fraction`` of them in no-think form; every row says its mode and carries the
    chat-template kwargs of that mode (TRL reads them per row)."""
    chosen = no_think_indices(rows, fraction, seed) if fraction > 0 else set()
    mixed = []
    for index, row in enumerate(rows):
        thinking = "off" if index in chosen else "on"
        out = no_think_row(row, switch, open_tag, close_tag) if thinking == "off" else {**row, "thinking": "on"}
        kwargs = switch.kwargs(thinking)
        mixed.append({**out, **({"chat_template_kwargs": kwargs} if kwargs else {})})
    return mixed
