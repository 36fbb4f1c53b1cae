"""Final-answer extraction and scoring for GSM8K-style outputs.

Two named extractors in the spirit of lm-evaluation-harness, with one rule for
what counts as the answer:

* Only text outside ``<think>...</think>`` is read: a number the model merely
  considered while thinking must never count as its answer.
* The LAST ``####`` marker outside the think block counts, and the rest of its
  line is the answer. lm-eval's strict regex takes the first match; we take the
  last because a model that corrects itself ("#### 24 ... wait ... #### 72")
  means its final statement, and a trained model writes exactly one such line.
* That line must state one number (see :mod:`training.grading.numbers`): "72",
  "$72.00", "72 apples", ".5", "7.2e1", "\\frac{3}{4}", or an equation whose
  value follows the last ``=`` ("48 + 24 = 72" -> 72, checked exactly; "t = 72").
  A line holding no single number ("5-7", "48 + 24", "7 or 8", "48 + 24 = 73",
  nothing) is *unreadable*: the extractor returns None, exactly as for a missing
  answer, and grading counts it as a format error. It never falls back to some
  other number in the text: that would be a guess.

``strict``   -- the line must start with lm-eval's strict number
               (``#### (-?[0-9.,]+)``: no ``$``, one space) and hold no other digit.
``flexible`` -- the line as above; with no ``####`` at all, the sentence after
               the last "the answer is" that starts with a number, else the last
               ``\\boxed{}``, each read as a statement too ("the answer is 72 or
               73" is unreadable); else the last number in the text (lm-eval's
               flexible rule) unless it belongs to bare arithmetic: "pages 5-7"
               ends in a range, not in the answer 7.

Correctness is exact equality of rationals: no rounding tolerance, because a
gold does not say whether it was rounded, and "0.45" is not "0.5".

A gold that is not a plain number (MATH-500's ``\\frac{1}{2}``, ``(0,1]``, ``6+9i``: see
:func:`is_plain_number`) is LaTeX. Its answer is the rest of the last ``####`` line, as written (flexible
also takes the last ``\\boxed{}`` when there is no such line), and math-verify decides whether it states the
gold's value (:mod:`training.grading.latex`). Plain-number golds are graded as above, whatever the data set.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from training.grading import latex
from training.grading.completions import THINK_CLOSE, THINK_OPEN
from training.grading.numbers import first_span, last_span, normalize_number, read_statement, to_fraction

__all__ = [
    "EXTRACTORS",
    "answer_line",
    "extract_answer",
    "extract_flexible",
    "extract_latex",
    "extract_strict",
    "is_correct",
    "is_plain_number",
    "normalize_number",
    "read_statement",
    "strip_think",
    "to_fraction",
]

ANSWER_MARK = "####"
# lm-eval gsm8k strict-match, verbatim: "#### $18" deliberately does not match.
_STRICT_RE = re.compile(r"#### (\-?[0-9\.\,]+)")
# "the answer is" and the markup models put before the number: bold, colons, inline math
# delimiters, \boxed{ / \text{ wrappers. None of it contains a digit.
_ANSWER_CUE_RE = re.compile(
    r"(?:\b(?:the\s+)?(?:final\s+)?answer\s+is\b|\banswer\s*:)"
    r"(?:[ \t]|\*|:|\\?\$|\\\(|\\\[|\\boxed\s*\{|\\text(?:bf)?\s*\{)*",
    re.IGNORECASE,
)
_SENTENCE_END_RE = re.compile(r"\n|[.!?;](?=\s|$)")
# One level of nested braces covers \boxed{\frac{1}{2}} and \boxed{\text{18}}.
_BOXED_RE = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")


def strip_think(text: str, open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE) -> str:
    """Return only the text outside thinking blocks.

    * ``<think>...</think>`` blocks are removed;
    * an unclosed ``<think>`` hides everything after it (thinking never ended,
      so there is no answer yet);
    * a ``</think>`` with no opener discards everything before it, because chat
      templates that pre-fill ``<think>`` leave only the closing tag in the output.
    """
    pieces = re.split(f"({re.escape(open_tag)}|{re.escape(close_tag)})", text)
    visible: list[str] = []
    thinking = False
    for piece in pieces:
        if piece == open_tag:
            thinking = True
        elif piece == close_tag:
            if not thinking:
                visible = []  # stray closer: what came before was thinking
            thinking = False
        elif not thinking:
            visible.append(piece)
    return "".join(visible)


def answer_line(visible: str) -> str | None:
    """The line that counts: from the last ``####`` to the end of its line; None without a ``####``."""
    start = visible.rfind(ANSWER_MARK)
    return None if start < 0 else visible[start:].split("\n", 1)[0]


def extract_strict(text: str, open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE) -> str | None:
    """lm-eval gsm8k strict-match on the last ``####`` line, which must hold no other digit."""
    line = answer_line(strip_think(text, open_tag, close_tag))
    match = _STRICT_RE.match(line) if line else None
    if match is None or any(ch.isdigit() for ch in line[match.end() :]):
        return None  # "#### 48 + 24 = 72", "#### 5-7", "#### 7.2e1": not one plain number
    return normalize_number(match.group(1))


def extract_flexible(text: str, open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE) -> str | None:
    """The last ``####`` line; without one: "the answer is", the last ``\\boxed``, the last number."""
    visible = strip_think(text, open_tag, close_tag)
    line = answer_line(visible)
    if line is not None:
        return read_statement(line[len(ANSWER_MARK) :])

    # The last statement wins: models often restate or correct themselves. A cue followed by a number
    # starts a statement, which runs to the end of its sentence and must hold one number: "the answer is
    # 72 or 73" is unreadable, not 72. A cue followed by words ("what the answer is depends on") is prose.
    # Each clause ends at the next cue at the latest, so many cues cost linear time.
    cues = list(_ANSWER_CUE_RE.finditer(visible))
    for cue, after in reversed(list(zip(cues, [c.start() for c in cues[1:]] + [len(visible)]))):
        clause = _SENTENCE_END_RE.split(visible[cue.end() : after], maxsplit=1)[0]
        if first_span(clause) is not None:
            return read_statement(clause)

    boxes = _BOXED_RE.findall(visible)
    if boxes:
        return read_statement(boxes[-1])

    span = last_span(visible)
    return read_statement(span) if span is not None else None


EXTRACTORS: dict[str, Callable[..., str | None]] = {
    "strict": extract_strict,
    "flexible": extract_flexible,
}


def is_plain_number(gold: str) -> bool:
    """A gold the exact grader reads: "72", "0.5", "3/4", "$1,000" (every GSM8K, SVAMP and ASDiv gold).

    LaTeX is not ("\\frac{1}{2}" goes to math-verify, which also accepts "\\dfrac12"), nor is anything
    that states no single number ("(0,1]", "-2,1", "6+9i").
    """
    return "\\" not in gold and to_fraction(gold) is not None


def extract_latex(text: str, mode: str = "flexible", open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE) -> str | None:
    """The answer to a LaTeX gold: the rest of the last ``####`` line outside the think block, as written;
    ``flexible`` without such a line takes the last ``\\boxed{}``. None when there is neither, or it is empty."""
    visible = strip_think(text, open_tag, close_tag)
    line = answer_line(visible)
    if line is not None:
        answer = line[len(ANSWER_MARK) :]
    elif mode == "flexible":
        answer = latex.last_boxed(visible) or ""
    else:
        answer = ""
    return answer.strip() or None


def extract_answer(text: str, mode: str = "flexible", open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE,
                   gold: str | None = None) -> str | None:
    """Extract the final answer with the named extractor (see :data:`EXTRACTORS`), outside the think block.

    With a ``gold`` that is not a plain number the answer is read as LaTeX (:func:`extract_latex`).
    """
    try:
        extractor = EXTRACTORS[mode]
    except KeyError:
        valid = ", ".join(sorted(EXTRACTORS))
        raise ValueError(f"unknown answer mode {mode!r}; valid modes: {valid}") from None
    if gold is not None and not is_plain_number(gold):
        return extract_latex(text, mode, open_tag, close_tag)
    return extractor(text, open_tag, close_tag)


def is_correct(pred: str | None, gold: str) -> bool:
    """Exact numeric equality after normalization: "18.00" = "18", "1/2" = "0.5", "$1,000" = "1000".

    No rounding tolerance: the data sets do not mark which golds were rounded, and
    accepting whatever rounds to the gold would count "0.45" right for "0.5".
    A gold that is not a plain number is LaTeX: math-verify compares values (:mod:`training.grading.latex`).
    """
    if pred is None:
        return False
    if not is_plain_number(gold):
        return latex.equivalent(gold, pred)
    pred_value, gold_value = to_fraction(pred), to_fraction(gold)
    return pred_value is not None and gold_value is not None and pred_value == gold_value
