"""Reading one number out of model text, exactly or not at all.

A *number token* is how one number is written: ``72``, ``-3``, ``$1,234.50``, ``.5``, ``7.2e1``, ``3/4``
(``\\frac{3}{4}``), ``50%``. A *statement* is text that claims an answer (a ``####`` line, a
``\\boxed{}``) and it reads as a number only when it is unambiguous:

* one number token, words around it allowed ("72 apples", "$18.00");
* or an equation whose value is one number token after the last ``=``, and whose every other side is
  either a name ("t = 72") or arithmetic that evaluates exactly to that value ("48 + 24 = 72").

Everything else is unreadable (None): two numbers ("12 or 13", "3:30"), bare arithmetic ("5-7" is a
range or a subtraction; "48 + 24" states no result), an equation that does not hold ("48 + 24 = 73"),
words on the arithmetic side ("48 apples + 24 = 72"). Unreadable is a format error, never a guess.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

from training.data.arithmetic import ExpressionError, evaluate

__all__ = ["NUMBER_RE", "SPAN_RE", "first_span", "last_span", "normalize_number", "prepare", "read_statement",
           "to_fraction"]

# A number as it appears in prose. Unlike lm-eval's ``[$0-9.,]{2,}`` it needs a digit (so "..." is not a
# number), accepts commas only as thousands groups (so "1,2,3" is three numbers, not 123) and needs a digit
# after a decimal point (so the full stop in "is 5." is not one). A sign counts only when it does not follow a
# word character or a bracket: in "5-3" the hyphen is an operator. A leading point (".5") is a number only
# where no digit or word precedes it. The exponent is capped at two digits: "1e999999999" is no answer.
_NUMBER = (
    r"(?:(?<![\w)\]])-)?"
    r"\$?"
    r"(?:(?:\d{1,3}(?:,\d{3})+(?!\d|,\d)|\d+)(?:\.\d+)?|(?<![\w.])\.\d+)"
    r"(?:[eE][-+]?\d{1,2}(?![\w.]))?"
    r"(?:/\d+(?![\d.]))?"
    r"%?"
)
NUMBER_RE = re.compile(_NUMBER)
# Numbers joined by + - * / = and parentheses on one line: "48 + 24 = 72", "(3 + 4) * 2", "= 72". Every
# space has one place in the pattern and a span starts only at the first of several "(": a long run of
# spaces or brackets costs linear time, not quadratic.
_OPERAND = rf"(?:\([ \t]*)*{_NUMBER}(?:[ \t]*\))*"
SPAN_RE = re.compile(rf"(?<!\()(?:=[ \t]*)?{_OPERAND}(?:[ \t]*[-+*/=][ \t]*{_OPERAND})*")
# Python refuses to convert integers past 4,300 digits; no answer comes near this many.
MAX_DIGITS = 300

_CLEAN_RE = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d{1,2})?(?:/\d+)?")
_THOUSANDS_RE = re.compile(r"\d{1,3}(?:,\d{3})+")
_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_PLAIN_INT = re.compile(r"-?\d+")
# Spellings of one symbol, mapped to the one the readers know.
_SYMBOLS = [
    ("{,}", ","), ("\\,", ""), ("\\!", ""), ("\\$", "$"), ("\\%", "%"), ("\u2212", "-"), ("\u2013", "-"),
    ("\\times", "*"), ("\\cdot", "*"), ("\u00d7", "*"), ("\u00b7", "*"), ("\\div", "/"), ("\u00f7", "/"),
    ("**", ""), ("__", ""), ("\\left", ""), ("\\right", ""),
]
# LaTeX that only wraps or delimits: \boxed{...}, \text{...}, \( \), \[ \], bare braces.
_WRAPPERS_RE = re.compile(r"\\(?:boxed|text(?:bf|rm)?|mathrm|mathbf|mbox|displaystyle)\b|\\[()\[\]]|[{}]")
_TIMES_X_RE = re.compile(r"(?<=[\d)])[ \t]*[xX][ \t]*(?=[\d(])")  # "3 x 4" is multiplication
# What may stand beside the one number of a statement: words, units, brackets. An operator may not ("x/2",
# "72-"), except a hyphen or slash between two letters ("two-liter", "km/h"); nor a LaTeX command left over
# after prepare() ("\\sqrt{16}" is 4, not 16) or a root, power or plus-minus sign.
_OPERATOR_NEAR_RE = re.compile(r"[+*^<>\\\u221a\u00b1]|(?<![A-Za-z])[-/]|[-/](?![A-Za-z])")
_ARITHMETIC_GLUE_RE = re.compile(r"[\s()+\-*/]*")


def _frac(match: re.Match[str]) -> str:
    top, bottom = match.group(1).strip(), match.group(2).strip()
    if _PLAIN_INT.fullmatch(top) and bottom.isdigit():
        return f"{top}/{bottom}"  # one fraction token, as "3/4" is written
    return f"({top})/({bottom})"  # arithmetic, checked as such


def prepare(text: str) -> str:
    """LaTeX and typography to plain text: ``\\frac{3}{4}`` -> ``3/4``, ``\\boxed{18}`` -> `` 18 ``, ``×`` -> ``*``."""
    text = _FRAC_RE.sub(_frac, text)
    for spelling, symbol in _SYMBOLS:
        text = text.replace(spelling, symbol)
    text = _WRAPPERS_RE.sub(" ", text)
    return _TIMES_X_RE.sub(" * ", text)


def normalize_number(text: str) -> str | None:
    """Clean one number token: "$1,000." -> "1000", "\\frac{3}{4}" -> "3/4", "50%" -> "50", ".5" -> "0.5".

    Decimals are kept as written ("18.00" stays "18.00"); an exponent is written out ("7.2e1" -> "72").
    """
    s = _FRAC_RE.sub(r"\1/\2", text.strip())
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
    if not _CLEAN_RE.fullmatch(s) or len(s) > MAX_DIGITS:
        return None
    numerator, slash, denominator = s.partition("/")
    if "e" in numerator.lower():
        numerator = format(Decimal(numerator), "f")
    numerator = re.sub(r"^(-?)\.", r"\g<1>0.", numerator)
    return numerator + slash + denominator


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


def _arithmetic(text: str) -> Fraction | None:
    """Exact value of ``text`` when it is nothing but numbers, + - * / and parentheses; else None."""
    pieces: list[str] = []
    last = 0
    for match in NUMBER_RE.finditer(text):
        value = to_fraction(match.group(0))
        if value is None or not _ARITHMETIC_GLUE_RE.fullmatch(text[last : match.start()]):
            return None
        if match.group(0).endswith("%"):
            value /= 100  # "50% * 40": as an operand a percent is a share
        # The sign is written outside the operand: in "10 -3" it is the operator the glue lacks.
        sign = "-" if value < 0 else ""
        pieces += [text[last : match.start()], f"{sign}({abs(value.numerator)}/{value.denominator})"]
        last = match.end()
    if not pieces or not _ARITHMETIC_GLUE_RE.fullmatch(text[last:]):
        return None
    try:
        return evaluate("".join(pieces))
    except ExpressionError:
        return None


def _read_prepared(text: str) -> str | None:
    *sides, value_side = text.split("=")
    tokens = list(NUMBER_RE.finditer(value_side))
    if len(tokens) != 1:
        return None
    token = tokens[0]
    beside = value_side[: token.start()] + " " + value_side[token.end() :]
    clean = normalize_number(token.group(0))
    value = to_fraction(clean) if clean is not None else None
    if value is None or _OPERATOR_NEAR_RE.search(beside):
        return None  # not a number ("3/0"), or an operator beside it ("5 -", "x/2")
    for side in sides:
        # A side without digits names the value ("t = 72"); a side with digits must compute it.
        if any(ch.isdigit() for ch in side) and _arithmetic(side) != value:
            return None
    return clean


def read_statement(text: str) -> str | None:
    """The one number ``text`` states (see the module docstring), normalised; None when unreadable."""
    return _read_prepared(prepare(text))


def first_span(text: str) -> str | None:
    """The expression span ``text`` starts with ("48 + 24 = 72 apples" -> "48 + 24 = 72 "), None if none."""
    match = SPAN_RE.match(prepare(text).lstrip())
    return match.group(0) if match else None


def last_span(text: str) -> str | None:
    """The last expression span in ``text`` (a number with the arithmetic around it), None if none."""
    spans = list(SPAN_RE.finditer(prepare(text)))
    return spans[-1].group(0) if spans else None
