"""Reference solutions parsed into steps a teacher can render at any level.

Two shapes are recognised, by content rather than by data-set name so user
data in either shape just works:
- GSM8K prose with calculator marks: ``Natalia sold 48/2 = <<48/2=24>>24 clips in May.``
- a bare equation (SVAMP): ``( 315.0 + 309.0 )``, or one with its result (ASDiv): ``7+2=9``.
Anything else is prose only: the verbose level can still render it, the others cannot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from training.data.arithmetic import ExpressionError, agrees, decompose, evaluate, format_number, shorten

MARK = re.compile(r"<<([^<>]*?)=([^<>=]*)>>")
_EQUATION = re.compile(r"[\d\s.+\-*/()]+")
# ASDiv states the result: "(5+3)*2=16". One '=' and a number after it; the result is checked.
_EQUATION_WITH_RESULT = re.compile(r"([\d\s.+\-*/()]+)=\s*(-?[\d.]+)\s*")
_FINAL_LINE = re.compile(r"^\s*####.*$", re.MULTILINE)
# Words that name nothing: skipped when we label a step or pick a variable letter.
STOPWORDS = frozenset(
    "a an the in of for to and or on at by with per from is are was were be been he she it they "
    "we you i his her their its him them has have had each all so then that this there as into "
    "than also will would can do does did what how much many if".split()
)


class UnrenderableError(ValueError):
    """The reference cannot be rendered faithfully; the filter records the reason."""


@dataclass(frozen=True)
class Step:
    expr: str  # as the reference computes it, spaces removed: "48/2"
    result: str  # the reference's stated result: "24"
    label: str = ""  # a few words naming the quantity: "clips in May"


@dataclass(frozen=True)
class ReferenceSolution:
    steps: tuple[Step, ...]
    prose: str  # the natural-language solution without marks; "" for a bare equation


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z][A-Za-z'-]*", text)


def _trim_label(words: list[str], limit: int = 4) -> str:
    words = words[:limit]
    while words and words[-1].lower() in STOPWORDS:
        words.pop()
    while words and words[0].lower() in STOPWORDS:
        words.pop(0)
    return " ".join(words)


def _label_for(line: str, start: int, end: int) -> str:
    """Name a step from the words right after its result, else right before it.

    GSM8K writes ``<<48/2=24>>24 clips in May.``: the noun phrase after the
    repeated result names the quantity. When nothing follows (``earned $<<..>>10.``),
    the clause before the hand-written expression does (``she earned``).
    """
    after = re.split(r"[.,;:!?=<\n]", re.sub(r"^[\s$]*[\d.,]*%?", "", line[end:]), maxsplit=1)[0]
    label = _trim_label(_words(after))
    if label:
        return label
    before = re.sub(r"[\d\s.,$%x*/+\-=()]+$", "", line[:start])
    clause = re.split(r"[.,;:!?]", before)[-1]
    return _trim_label(_words(clause)[-4:])


def _check(expr: str, stated: str) -> None:
    try:
        value = evaluate(expr)
    except ExpressionError as err:
        raise UnrenderableError(f"calculator mark {shorten(f'{expr}={stated}')}: {err}") from None
    if not agrees(value, stated):
        raise UnrenderableError(f"calculator mark {shorten(f'{expr}={stated}')} evaluates to {format_number(value)}")


def _from_marks(solution: str) -> ReferenceSolution:
    steps = []
    for line in solution.splitlines():
        for match in MARK.finditer(line):
            expr = match.group(1).replace(" ", "").replace(",", "")
            stated = match.group(2).strip().replace(",", "")
            _check(expr, stated)
            steps.append(Step(expr, stated, _label_for(line, match.start(), match.end())))
    prose = MARK.sub("", solution)
    return ReferenceSolution(tuple(steps), "\n".join(line.rstrip() for line in prose.splitlines() if line.strip()))


def _from_equation_with_result(equation: str, stated: str) -> ReferenceSolution:
    solution = _from_equation(equation)  # parses and decomposes it, or says why not
    value = evaluate(equation)
    if not agrees(value, stated):
        raise UnrenderableError(f"equation {shorten(equation.strip())} evaluates to {format_number(value)}, "
                                f"not the stated {stated}")
    return solution


def _from_equation(equation: str) -> ReferenceSolution:
    try:
        operations = decompose(equation)
    except ExpressionError as err:
        raise UnrenderableError(f"equation {shorten(equation.strip())}: {err}") from None
    if not operations:
        # A bare number ("( 5.0 )") is the answer with no working to show.
        raise UnrenderableError(f"equation {shorten(equation.strip())} has no operation")
    return ReferenceSolution(tuple(Step(op.expr, format_number(op.value)) for op in operations), "")


def parse_reference(solution: str) -> ReferenceSolution:
    """Steps and prose of a reference solution (any trailing ``#### N`` line is ignored)."""
    body = _FINAL_LINE.sub("", solution).strip()
    if MARK.search(body):
        return _from_marks(body)
    if body and _EQUATION.fullmatch(body) and re.search(r"\d", body):
        return _from_equation(body)
    stated = _EQUATION_WITH_RESULT.fullmatch(body)
    if stated and re.search(r"\d", stated.group(1)):
        return _from_equation_with_result(stated.group(1), stated.group(2))
    if "=" in body and not re.search(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}", body):
        # A formula we cannot compute (ASDiv's "GCD(18,20)=2", "32/5=6 r2", "5:4=45:36") is not prose either:
        # level 1 would otherwise copy it as its "verbose" trace.
        raise UnrenderableError(f"formula {shorten(body)} is beyond the reference teacher's arithmetic")
    return ReferenceSolution((), body)
