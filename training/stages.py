"""Pipeline stages as plain functions: objects and paths in, files and a summary out.

Each stage can be called from a notebook or another driver without Hydra;
``sweep.pipeline`` only turns a config into these arguments.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.completions import THINK_CLOSE, THINK_OPEN
from training.data import Problem
from training.filtering import filter_traces
from training.jsonl import read_jsonl, write_json, write_jsonl
from training.levels import Level, build_prompt
from training.teachers.base import Teacher, run_teacher
from training.tokens import TokenCounter

log = logging.getLogger(__name__)

TRACES_FILE = "traces.jsonl"
FILTERED_FILE = "filtered.jsonl"
FILTER_REPORT_FILE = "filter_report.json"


def traces_stage(
    problems: Sequence[Problem], level: Level, teacher: Teacher, out_path: Path, *, n_samples: int = 1, seed: int = 0
) -> dict[str, Any]:
    """Have ``teacher`` write traces for ``problems`` at ``level``; one JSONL row per trace."""
    start = time.perf_counter()
    traces = run_teacher(teacher, problems, level, n_samples, seed)
    by_id = {p.id: p for p in problems}
    rows = [
        {**t.to_row(), "level": level.id, "question": by_id[t.problem_id].question, "gold": by_id[t.problem_id].answer}
        for t in traces
    ]
    write_jsonl(out_path, rows)
    failed = sum(1 for t in traces if t.error)
    retryable = sum(1 for t in traces if t.error and t.retryable)
    seconds = round(time.perf_counter() - start, 3)
    log.info("traces: %s wrote %d traces for %d problems at %s (%d with a teacher error) in %.2fs -> %s",
             teacher.name, len(rows), len(problems), level.tag, failed, seconds, out_path)
    summary = {"teacher": teacher.name, "n_traces": len(rows), "teacher_errors": failed, "retryable_errors": retryable,
               "seconds": seconds}
    if getattr(teacher, "stats", None):  # LLM teachers: requests sent, cache hits, tokens generated...
        summary["teacher_stats"] = dict(teacher.stats)
    return summary


def sft_row(kept: dict[str, Any], level: Level, system: str | None, open_tag: str, close_tag: str) -> dict[str, Any]:
    """A conversational prompt/completion row (TRL computes loss on the completion only)."""
    return {
        "id": kept["problem_id"],
        "level": level.id,
        "prompt": build_prompt(level, kept["question"], system, 0, open_tag, close_tag),
        "completion": [{"role": "assistant", "content": kept["completion"]}],
        "answer": kept["gold"],
        "think_chars": kept["think_chars"],
        "think_tokens": kept["think_tokens"],
        "teacher": kept["teacher"],
        "sample": kept["sample"],
    }


def filter_stage(
    traces_path: Path,
    out_dir: Path,
    level: Level,
    counter: TokenCounter,
    *,
    system: str | None = None,
    select: str = "all",
    allow_empty_think: bool = False,
    max_think_tokens: int | None = None,
    open_tag: str = THINK_OPEN,
    close_tag: str = THINK_CLOSE,
) -> dict[str, Any]:
    """Grade ``traces_path``; write the SFT set and ``filter_report.json`` into ``out_dir``."""
    start = time.perf_counter()
    result = filter_traces(read_jsonl(traces_path), counter, select=select, allow_empty_think=allow_empty_think,
                           max_think_tokens=max_think_tokens, open_tag=open_tag, close_tag=close_tag)
    write_jsonl(out_dir / FILTERED_FILE, (sft_row(k, level, system, open_tag, close_tag) for k in result.kept))
    report = {"level": level.id, "level_name": level.name, "target_chars": level.target_chars,
              "traces": str(traces_path), **result.report}
    report["seconds"] = round(time.perf_counter() - start, 3)
    write_json(out_dir / FILTER_REPORT_FILE, report)
    chars = (report["think_chars"] or {}).get("mean")
    tokens = (report["think_tokens"] or {}).get("mean")
    log.info("filter: kept %d/%d problems (%.1f%%; %d with no correct trace), dropped %s; think chars mean %s, "
             "tokens mean %s", report["kept_problems"], report["n_problems"], 100 * report["keep_rate"],
             report["problems_without_correct_trace"], report["dropped"] or "none", chars, tokens)
    if not result.kept:
        log.warning("filter: no trace survived; see %s for the reasons", out_dir / FILTER_REPORT_FILE)
    return report
