"""Render a parsed reference solution in the style of a compression level.

One pure function per level style. None invents arithmetic: every number in a
trace is a given from the question, a result the reference states, or a
variable bound to such a result. When a style needs steps the reference does
not have, :class:`UnrenderableError` tells the filter why the problem is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from training.data.arithmetic import NUMBER_TOKEN, ExpressionError, parse_number
from training.data.levels import Level
from training.data.solutions import STOPWORDS, ReferenceSolution, Step, UnrenderableError

ARROW = "→"
_ORDINALS = ("First", "Next", "Then", "After that")
# Letters that read as digits or operators in a chain (l~1, o~0, x~*) are never variables.
_FALLBACK_VARS = "abcdefghijkmnpqrstuvwyz"
_QUESTION_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
# "How many more crayons did he lose ...?" -> "more crayons": what the last step finds.
_ASKED = re.compile(
    r"\bhow (?:many|much)\s+((?:[A-Za-z'-]+\s+){0,2}?[A-Za-z'-]+)\s+"
    r"(?:did|does|do|is|are|was|were|will|would|can|could|has|have|had|should|must)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Rendering:
    trace: str
    answer: str  # the answer this trace arrives at (not necessarily the gold: the filter decides)


def _need_steps(solution: ReferenceSolution) -> tuple[Step, ...]:
    if not solution.steps:
        raise UnrenderableError("reference has no calculator marks or equation to render")
    return solution.steps


def _spaced(expr: str) -> str:
    return re.sub(r"\s*([+*/]|(?<=[\d)])-)\s*", r" \1 ", expr).strip()


def render_verbose(solution: ReferenceSolution, question: str, reference_answer: str | None, level: Level) -> Rendering:
    """Level 1: the reference's own prose; for a bare equation, a sentence per step."""
    if solution.prose:
        if reference_answer is None:
            raise UnrenderableError("reference prose has no final answer")
        return Rendering(solution.prose, reference_answer)
    steps = _need_steps(solution)
    sentences = ["Let's work through the problem step by step."]
    for i, step in enumerate(steps):
        ordinal = _ORDINALS[min(i, len(_ORDINALS) - 1)]
        sentences.append(f"{ordinal}, we compute {_spaced(step.expr)} = {step.result}.")
    sentences.append(f"So the result is {steps[-1].result}.")
    return Rendering(" ".join(sentences), steps[-1].result)


def asked_quantity(question: str) -> str:
    match = _ASKED.search(question)
    return match.group(1).lower() if match else ""


def render_concise(solution: ReferenceSolution, question: str, reference_answer: str | None, level: Level) -> Rendering:
    """Level 2: one short equation-bearing line per step, named by the quantity it finds.

    Names come from the reference's prose; a bare equation (SVAMP) names its
    last step after what the question asks for.
    """
    steps = _need_steps(solution)
    labels = [s.label for s in steps]
    if not labels[-1]:
        labels[-1] = asked_quantity(question)
    lines = [f"{label}: {_spaced(s.expr)} = {s.result}" if label else f"{_spaced(s.expr)} = {s.result}"
             for label, s in zip(labels, steps)]
    return Rendering("\n".join(lines), steps[-1].result)


def render_terse(solution: ReferenceSolution, question: str, reference_answer: str | None, level: Level) -> Rendering:
    """Level 3: the equations only, on one line, written as a person would (spaced).

    Spacing is what separates it from level 4 in tokens: unspaced, the equations
    cost as many Qwen3 tokens as the variable chain (32 vs 31 on GSM8K train).
    """
    steps = _need_steps(solution)
    return Rendering("; ".join(f"{_spaced(s.expr)} = {s.result}" for s in steps), steps[-1].result)


def _variable(label: str, used: set[str]) -> str:
    for word in re.findall(r"[A-Za-z]+", label):
        letter = word[0].lower()
        if word.lower() not in STOPWORDS and letter in _FALLBACK_VARS and letter not in used:
            return letter
    return next((c for c in _FALLBACK_VARS if c not in used), f"v{len(used)}")


def _as_number(text: str) -> Fraction | None:
    try:
        return parse_number(text)
    except ExpressionError:
        return None


def render_chain(solution: ReferenceSolution, question: str, reference_answer: str | None, level: Level) -> Rendering:
    """Level 4: ``m=48/2=24→t=48+m=72``: each result bound to a letter and reused by name.

    An operand becomes a variable only when it is an earlier result and not a
    number the question gives, so the chain shows where each value comes from.
    """
    steps = _need_steps(solution)
    given = {v for v in map(_as_number, _QUESTION_NUMBER.findall(question)) if v is not None}
    bound: dict[Fraction, str] = {}
    used: set[str] = set()
    links = []
    for step in steps:
        def name(match: re.Match[str]) -> str:
            value = _as_number(match.group(0))
            return bound.get(value, match.group(0)) if value not in given else match.group(0)

        var = _variable(step.label, used)
        used.add(var)
        links.append(f"{var}={NUMBER_TOKEN.sub(name, step.expr)}={step.result}")
        result = _as_number(step.result)
        if result is not None:
            bound[result] = var
    return Rendering(ARROW.join(links), steps[-1].result)


def render_final(solution: ReferenceSolution, question: str, reference_answer: str | None, level: Level) -> Rendering:
    """Level 5: only the final expression; only the result when even that exceeds ``max_chars``."""
    last = _need_steps(solution)[-1]
    trace = f"{last.expr}={last.result}"
    if level.max_chars is not None and len(trace) > level.max_chars:
        trace = last.result
    return Rendering(trace, last.result)


RENDER: dict[str, Callable[[ReferenceSolution, str, str | None, Level], Rendering]] = {
    "verbose": render_verbose,
    "concise": render_concise,
    "terse": render_terse,
    "chain": render_chain,
    "final": render_final,
}
