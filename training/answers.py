"""Final-answer extraction and scoring for GSM8K-style outputs.

Two named extractors in the spirit of lm-evaluation-harness:

* ``strict``   -- lm-eval's gsm8k "strict-match": the first ``#### N``.
* ``flexible`` -- ``#### N`` tolerant to ``$``, then "the answer is N",
  then the last ``\\boxed{N}``, then the last number in the text.

Both read only the text outside ``<think>...</think>``: the point of the project
is to measure how short the thinking can be, so a number the model merely
considered while thinking must never count as its answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from fractions import Fraction

from training.completions import THINK_CLOSE, THINK_OPEN

__all__ = [
    "EXTRACTORS",
    "extract_answer",
    "extract_flexible",
    "extract_strict",
    "is_correct",
    "normalize_number",
    "strip_think",
    "to_fraction",
]

# A number as it appears in prose. Unlike lm-eval's ``[$0-9.,]{2,}`` it needs a
# digit (so "..." is not a number), accepts commas only as thousands groups (so
# "1,2,3" is three numbers, not 123) and needs a digit after a decimal point (so
# the full stop in "is 5." is not read as one). A sign counts only when it does
# not follow a word character: in "5-3" or "pages 5-7" the hyphen is an operator
# or a range, not a negative sign.
_NUMBER = (
    r"(?:(?<![\w)\]])[-\u2212])?"  # sign, not right after a word or bracket
    r"(?:\\?\$)?"  # dollar, possibly LaTeX-escaped
    r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)"  # thousands groups or plain digits
    r"(?:\.\d+)?"  # decimals need a digit after the point
    r"(?:/\d+)?"  # a/b
    r"(?:\\?%)?"  # percent, possibly LaTeX-escaped
)
_NUMBER_RE = re.compile(_NUMBER)
_FRAC = r"\\[dt]?frac\s*\{[^{}]*\}\s*\{[^{}]*\}"
_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")

# lm-eval gsm8k strict-match, verbatim: "#### $18" deliberately does not match.
_STRICT_RE = re.compile(r"#### (\-?[0-9\.\,]+)")
_HASH_RE = re.compile(r"####[ \t]*(" + _NUMBER + ")")
# Markup models put between "the answer is" and the number: bold, colons, inline
# math delimiters, \boxed{ / \text{ wrappers. None of it contains a digit.
_ANSWER_RE = re.compile(
    r"(?:\b(?:the\s+)?(?:final\s+)?answer\s+is\b|\banswer\s*:)"
    r"(?:\s|\*|:|\\?\$|\\\(|\\\[|\\boxed\s*\{|\\text(?:bf)?\s*\{)*"
    r"(" + _FRAC + "|" + _NUMBER + ")",
    re.IGNORECASE,
)
# One level of nested braces covers \boxed{\frac{1}{2}} and \boxed{\text{18}}.
_BOXED_RE = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_CLEAN_RE = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)(?:/\d+)?")
_THOUSANDS_RE = re.compile(r"\d{1,3}(?:,\d{3})+")


def normalize_number(text: str) -> str | None:
    """Clean one number token: "$1,000." -> "1000", "\\frac{3}{4}" -> "3/4", "50%" -> "50".

    Decimals are kept as written ("18.00" stays "18.00"): numeric equivalence is
    :func:`is_correct`'s job, and the gold's number of decimals matters there.
    """
    s = _FRAC_RE.sub(r"\1/\2", text.strip())
    # LaTeX thousands spacing ("1\,000", "1{,}000") and escaped symbols.
    s = s.replace("{,}", ",").replace("\\,", "").replace("\\!", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "%")
    s = s.replace("\u2212", "-").strip()
    s = s.rstrip(".,").removesuffix("%").rstrip(".,").strip()
    s = re.sub(r"^([+-])\s+", r"\1", s)
    s = re.sub(r"\s*/\s*", "/", s)
    s = s.removeprefix("+")
    if "," in s:
        # Commas are only ever thousands separators; "1,2,3" is not a number,
        # and silently joining it into 123 would invent an answer.
        body = s.lstrip("-")
        for part in body.split("/"):
            integer = part.split(".")[0]
            if "," in integer and not _THOUSANDS_RE.fullmatch(integer):
                return None
            if "," in part.partition(".")[2]:
                return None
        s = s.replace(",", "")
    return s if _CLEAN_RE.fullmatch(s) else None


def to_fraction(text: str) -> Fraction | None:
    """Parse an integer, decimal, a/b or percent string into an exact Fraction.

    Exact arithmetic because float would make "0.1 + 0.2"-style answers and
    repeating fractions compare unreliably.
    """
    clean = normalize_number(text)
    if clean is None:
        return None
    numerator, _, denominator = clean.partition("/")
    value = Fraction(numerator)
    if denominator:
        if int(denominator) == 0:
            return None
        value /= Fraction(denominator)
    return value


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


def _last_number(text: str) -> str | None:
    for match in reversed(list(_NUMBER_RE.finditer(text))):
        clean = normalize_number(match.group(0))
        if clean is not None:
            return clean
    return None


def extract_strict(text: str, open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE) -> str | None:
    """lm-eval gsm8k strict-match: the first ``#### N`` (no ``$``, one space) outside the think block."""
    match = _STRICT_RE.search(strip_think(text, open_tag, close_tag))
    return normalize_number(match.group(1)) if match else None


def extract_flexible(text: str, open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE) -> str | None:
    """First rule that finds a number: ``####``, "the answer is", last ``\\boxed``, last number."""
    visible = strip_think(text, open_tag, close_tag)

    match = _HASH_RE.search(visible)
    if match and (clean := normalize_number(match.group(1))) is not None:
        return clean

    # The last statement wins: models often restate or correct themselves.
    for match in reversed(list(_ANSWER_RE.finditer(visible))):
        if (clean := normalize_number(match.group(1))) is not None:
            return clean

    for match in reversed(list(_BOXED_RE.finditer(visible))):
        content = match.group(1)
        # "\boxed{18 \text{ dollars}}" or "\boxed{x = 5}": fall back to its last number.
        clean = normalize_number(content)
        if clean is None:
            clean = _last_number(_FRAC_RE.sub(r"\1/\2", content))
        if clean is not None:
            return clean

    return _last_number(visible)


EXTRACTORS: dict[str, Callable[..., str | None]] = {
    "strict": extract_strict,
    "flexible": extract_flexible,
}


def extract_answer(text: str, mode: str = "flexible", open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE) -> str | None:
    """Extract the final answer with the named extractor (see :data:`EXTRACTORS`), outside the think block."""
    try:
        extractor = EXTRACTORS[mode]
    except KeyError:
        valid = ", ".join(sorted(EXTRACTORS))
        raise ValueError(f"unknown answer mode {mode!r}; valid modes: {valid}") from None
    return extractor(text, open_tag, close_tag)


def _round_half_up(value: Fraction, places: int) -> Fraction:
    scale = 10**places
    magnitude = math.floor(abs(value) * scale + Fraction(1, 2))
    return Fraction(magnitude if value >= 0 else -magnitude, scale)


def is_correct(pred: str | None, gold: str) -> bool:
    """Exact numeric equality after normalization, with one rounding tolerance.

    When the gold is written with k >= 1 decimals ("3.33"), a prediction with more
    precision ("3.333", "10/3") is rounded half-up to k places first: the gold was
    itself rounded, so demanding more digits would be unfair. A less precise
    prediction ("3.3") is not rounded and stays wrong; an integer gold gets no
    tolerance at all ("3.4" is not 3).
    """
    if pred is None:
        return False
    pred_value = to_fraction(pred)
    gold_clean = normalize_number(gold)
    if pred_value is None or gold_clean is None:
        return False
    gold_value = to_fraction(gold_clean)
    if gold_value is None:
        return False
    if "/" not in gold_clean and "." in gold_clean:
        places = len(gold_clean.partition(".")[2])
        pred_value = _round_half_up(pred_value, places)
    return pred_value == gold_value
