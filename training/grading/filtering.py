"""Keep only well-formed traces whose final answer is correct; say why each other was dropped.

A kept trace has exactly one think block, exactly one ``#### N`` answer line
after it, and an answer that ``is_correct`` accepts against the gold. With
``select="shortest"`` only the shortest correct sample of each problem survives
(length-biased rejection sampling).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from training.common.errors import DataError
from training.config.schema import FilterSettings
from training.config.settings import read_settings
from training.grading.answers import is_correct, is_plain_number, normalize_number
from training.grading.completions import THINK_CLOSE, THINK_OPEN, format_completion, parse_completion
from training.models.tokens import TokenCounter

# Every reason a trace can be dropped, in the order the checks run.
REASONS = (
    "teacher_error",
    "empty_output",
    "no_think_block",
    "unclosed_think",
    "multiple_think_blocks",
    "empty_think",
    "no_final_answer",
    "multiple_final_answers",
    "unparseable_answer",
    "wrong_answer",
    "too_long",
    "not_shortest",
)


@dataclass(frozen=True)
class Verdict:
    reason: str | None  # None: kept
    think: str = ""
    answer: str | None = None


def judge(completion: str, gold: str, *, error: str | None = None, allow_empty_think: bool = False,
          open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE) -> Verdict:
    """The first failed check's reason, or a kept verdict carrying the think text and answer."""
    if error:
        return Verdict("teacher_error")
    if not completion.strip():
        return Verdict("empty_output")
    parsed = parse_completion(completion, open_tag, close_tag)
    if parsed.n_open == 0 and parsed.n_close == 0:
        return Verdict("no_think_block")
    if parsed.n_open > 1 or parsed.n_close > 1:
        return Verdict("multiple_think_blocks")
    if not parsed.well_formed:
        return Verdict("unclosed_think")
    if not parsed.think and not allow_empty_think:
        return Verdict("empty_think")
    if not parsed.answers:
        return Verdict("no_final_answer")
    if len(parsed.answers) > 1:
        return Verdict("multiple_final_answers")
    # A LaTeX gold (MATH-500) is compared with the line as written; math-verify reads it.
    answer = normalize_number(parsed.answers[0]) if is_plain_number(gold) else parsed.answers[0].strip() or None
    if answer is None:
        return Verdict("unparseable_answer", parsed.think)
    if not is_correct(answer, gold):
        return Verdict("wrong_answer", parsed.think, answer)
    return Verdict(None, parsed.think, answer)


# What each traces row must hold (traces_stage writes all of them; a file given by +filter.traces_path may not).
_ID_TYPES, _GOLD_TYPES = (str, int), (str, int, float)


def _trace_row(row: Mapping[str, Any], index: int) -> dict[str, Any]:
    """``row`` checked, with ``problem_id`` and ``gold`` as strings; DataError naming its file:line otherwise."""
    where = getattr(row, "where", "") or f"traces row {index + 1}"
    for key, types in (("problem_id", _ID_TYPES), ("gold", _GOLD_TYPES), ("question", (str,))):
        if key not in row or row[key] is None:
            raise DataError(f"{where}: traces row has no {key!r} (each row needs problem_id, question, gold and "
                            "completion)")
        if not isinstance(row[key], types) or isinstance(row[key], bool):
            raise DataError(f"{where}: {key!r} must be {' or '.join(t.__name__ for t in types)}, "
                            f"got {type(row[key]).__name__}")
    for key in ("completion", "error"):
        if row.get(key) is not None and not isinstance(row[key], str):
            raise DataError(f"{where}: {key!r} must be a string or null, got {type(row[key]).__name__}")
    if not isinstance(row.get("sample", 0), int) or isinstance(row.get("sample"), bool):
        raise DataError(f"{where}: 'sample' must be an integer, got {type(row['sample']).__name__}")
    # sample and teacher are optional in a hand-made file; the SFT rows carry them.
    return {"sample": 0, "teacher": "unknown", **row, "problem_id": str(row["problem_id"]), "gold": str(row["gold"])}


def length_stats(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {
        "mean": round(statistics.fmean(ordered), 2),
        "median": statistics.median(ordered),
        "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "min": ordered[0],
        "max": ordered[-1],
    }


@dataclass
class FilterResult:
    kept: list[dict[str, Any]]  # trace rows, each with think, think_chars, think_tokens, completion (canonical)
    report: dict[str, Any]


def filter_traces(
    traces: Sequence[dict[str, Any]],
    counter: TokenCounter,
    *,
    select: str = "all",
    allow_empty_think: bool = False,
    max_think_tokens: int | None = None,
    open_tag: str = THINK_OPEN,
    close_tag: str = THINK_CLOSE,
) -> FilterResult:
    """Judge trace rows (``problem_id``, ``sample``, ``completion``, ``gold``, ``error``)."""
    settings = read_settings(FilterSettings, {"select": select, "allow_empty_think": allow_empty_think,
                                              "max_think_tokens": max_think_tokens}, "filter")  # before any trace
    max_think_tokens = settings.max_think_tokens  # 8.0 or "8" as 8
    traces = [_trace_row(row, index) for index, row in enumerate(traces)]  # all checked before any is judged
    dropped: Counter[str] = Counter()
    examples: dict[str, str] = {}  # one problem id per reason, to look at
    candidates = []
    for row in traces:
        verdict = judge(row.get("completion") or "", row["gold"], error=row.get("error"),
                        allow_empty_think=allow_empty_think, open_tag=open_tag, close_tag=close_tag)
        if verdict.reason:
            dropped[verdict.reason] += 1
            examples.setdefault(verdict.reason, row["problem_id"])
        else:
            candidates.append((row, verdict))
    token_counts = counter.count([verdict.think for _, verdict in candidates])
    kept_by_problem: dict[str, list[dict[str, Any]]] = {}
    for (row, verdict), n_tokens in zip(candidates, token_counts):
        if max_think_tokens is not None and n_tokens > max_think_tokens:
            dropped["too_long"] += 1
            examples.setdefault("too_long", row["problem_id"])
            continue
        kept_row = {
            **row,
            "think": verdict.think,
            "think_chars": len(verdict.think),
            "think_tokens": n_tokens,
            # Canonical form: whatever a teacher appended after the answer line is gone.
            "completion": format_completion(verdict.think, verdict.answer, open_tag, close_tag),
        }
        kept_by_problem.setdefault(row["problem_id"], []).append(kept_row)
    kept = []
    for rows in kept_by_problem.values():
        if select == "shortest":
            rows = sorted(rows, key=lambda r: (r["think_tokens"], r["think_chars"], r["sample"]))
            dropped["not_shortest"] += len(rows) - 1
            rows = rows[:1]
        kept.extend(rows)
    problems = {row["problem_id"] for row in traces}
    report = {
        "n_traces": len(traces),
        "n_problems": len(problems),
        "kept_traces": len(kept),
        "kept_problems": len(kept_by_problem),
        "problems_without_correct_trace": len(problems) - len(kept_by_problem),
        "keep_rate": round(len(kept_by_problem) / len(problems), 4) if problems else 0.0,
        "select": select,
        "dropped": {reason: dropped[reason] for reason in REASONS if dropped[reason]},
        "dropped_examples": examples,
        "think_chars": length_stats([r["think_chars"] for r in kept]),
        "think_tokens": length_stats([r["think_tokens"] for r in kept]),
        "tokenizer": counter.source,
    }
    return FilterResult(kept, report)
