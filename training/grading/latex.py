"""Whether a LaTeX answer states the gold's value: math-verify's comparison, safe in any thread.

MATH-500's golds are LaTeX (``\\frac{1}{2}``, ``(0,1]``, ``\\left( 3, \\frac{\\pi}{2} \\right)``, ``6+9i``), which
the exact number reader of :mod:`training.grading.numbers` cannot hold. math-verify (pinned in pyproject)
parses both sides to sympy and compares values: ``\\frac{1}{2}`` = ``0.5`` = ``\\dfrac12``, intervals with
their open and closed ends, sets, tuples, matrices, expressions up to simplification. Each side is read as
the content of a ``\\boxed{}``, which is how math-verify reads a final answer.

math-verify bounds its work with ``signal.alarm``, which Python allows only in the main thread: there
we let it time itself out; in any other thread (a thread pool, a server) it runs without its alarm in a
daemon thread that we stop waiting for after the same time, and the answer counts as wrong. math-verify
and sympy are imported on first use (about 0.4 s), so number-graded data sets never load them.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from typing import Any

log = logging.getLogger(__name__)

TIMEOUT_S = 5  # per parse and per comparison, math-verify's own default
# An answer longer than this is not one answer but a paragraph: it is wrong, and sympy never sees it.
MAX_CHARS = 1000

__all__ = ["MAX_CHARS", "TIMEOUT_S", "equivalent", "last_boxed"]


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` in ``text``, braces balanced at any depth; None if none closes."""
    start = text.rfind("\\boxed")
    while start >= 0:
        open_at = start + len("\\boxed")
        while open_at < len(text) and text[open_at].isspace():
            open_at += 1
        if open_at < len(text) and text[open_at] == "{":
            depth = 0
            for index in range(open_at, len(text)):
                depth += {"{": 1, "}": -1}.get(text[index], 0)
                if depth == 0:
                    return text[open_at + 1 : index]
        start = text.rfind("\\boxed", 0, start)
    return None


@functools.cache
def _math_verify() -> Any:
    import math_verify
    from math_verify import grader, parser

    # We bound the time ourselves off the main thread (see the module docstring): math-verify's warning that
    # nobody does would be wrong there.
    parser.TIMEOUT_WARNING_SHOWN = grader.TIMEOUT_WARNING_SHOWN = True
    return math_verify


def _parse(text: str, timeout: int | None) -> list[Any]:
    mv = _math_verify()
    return mv.parse(f"\\boxed{{{text}}}", extraction_config=[mv.LatexExtractionConfig(), mv.ExprExtractionConfig()],
                    parsing_timeout=timeout)


@functools.lru_cache(maxsize=4096)
def _parsed_gold(gold: str, timeout: int | None) -> tuple[Any, ...]:
    # A gold is graded against every sample of its problem: parse it once.
    return tuple(_parse(gold, timeout))


def _verify(gold: str, pred: str, timeout: int | None) -> bool:
    gold_parsed = list(_parsed_gold(gold, timeout))
    return bool(gold_parsed) and _math_verify().verify(gold_parsed, _parse(pred, timeout), timeout_seconds=timeout)


def equivalent(gold: str, pred: str | None, timeout_s: float = TIMEOUT_S) -> bool:
    """True when ``pred`` states ``gold``'s value; False for no answer, an unparseable one, or a timeout."""
    if pred is None or not pred.strip() or not gold.strip() or len(pred) > MAX_CHARS:
        return False
    if threading.current_thread() is threading.main_thread():
        return _verify(gold, pred, max(1, math.ceil(timeout_s)))  # signal.alarm counts whole seconds
    outcome: list[bool] = []

    def work() -> None:
        try:
            outcome.append(_verify(gold, pred, None))
        except Exception:  # math-verify swallows its own errors; anything else is no match, not a crash
            log.debug("grading: math-verify failed on %r", pred[:80], exc_info=True)
            outcome.append(False)

    worker = threading.Thread(target=work, daemon=True, name="math-verify")
    worker.start()
    # Two parses and the comparisons, each of which the main thread would bound by timeout_s.
    worker.join(3 * timeout_s)
    if not outcome:
        log.warning("grading: math-verify took over %g s comparing %r with the gold %r; counted wrong",
                    3 * timeout_s, pred[:80], gold[:80])
        return False
    return outcome[0]
