"""Stage ``filter``: grade the traces, keep the correct ones, and write them as SFT rows.

Reads: ``traces.jsonl`` (from ``traces``, or ``+filter.traces_path=PATH``), by content.
Writes: ``filtered.jsonl`` (conversational prompt/completion rows) and ``filter_report.json``.
Cache key: ``filter``, ``prompt``, ``model`` (its tokenizer counts think tokens), ``level`` and the traces' digest.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sweep.stages.base import Stage, TrialContext, file_input
from sweep.stages.traces import TRACES_FILE
from training.common.jsonl import read_jsonl, write_json, write_jsonl
from training.config.schema import FilterSettings, ModelSettings
from training.data.levels import Level, build_prompt
from training.grading.filtering import filter_traces
from training.models.loading import model_path
from training.models.tokens import TokenCounter

log = logging.getLogger(__name__)

FILTERED_FILE = "filtered.jsonl"
FILTER_REPORT_FILE = "filter_report.json"
# What metrics.json keeps of the report (the whole report is filter_report.json).
RECORDED = ("kept_problems", "n_problems", "keep_rate", "problems_without_correct_trace", "dropped")


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


def run(ctx: TrialContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """Grade the traces; write the SFT set and ``filter_report.json``; return the report."""
    cfg, level, traces_path, settings = ctx.cfg, ctx.level, inputs["traces"], ctx.group("filter")
    open_tag, close_tag = cfg.model.think.open, cfg.model.think.close
    counter = TokenCounter(settings.tokenizer or model_path(cfg.model))
    start = time.perf_counter()
    result = filter_traces(read_jsonl(traces_path), counter, select=settings.select,
                           allow_empty_think=settings.allow_empty_think, max_think_tokens=settings.max_think_tokens,
                           open_tag=open_tag, close_tag=close_tag)
    system = cfg.prompt.get("system")
    write_jsonl(ctx.run_dir / FILTERED_FILE, (sft_row(k, level, system, open_tag, close_tag) for k in result.kept))
    report = {"level": level.id, "level_name": level.name, "target_chars": level.target_chars,
              "traces": str(traces_path), **result.report}
    report["seconds"] = round(time.perf_counter() - start, 3)
    write_json(ctx.run_dir / FILTER_REPORT_FILE, report)
    log.info("filter: kept %d/%d problems (%.1f%%; %d with no correct trace), dropped %s; think chars mean %s, "
             "tokens mean %s", report["kept_problems"], report["n_problems"], 100 * report["keep_rate"],
             report["problems_without_correct_trace"], report["dropped"] or "none",
             (report["think_chars"] or {}).get("mean"), (report["think_tokens"] or {}).get("mean"))
    if not result.kept:
        log.warning("filter: no trace survived; see %s for the reasons", ctx.run_dir / FILTER_REPORT_FILE)
    return report


def record(report: dict[str, Any]) -> dict[str, Any]:
    summary = {key: report[key] for key in RECORDED}
    summary["mean_think_chars"] = (report["think_chars"] or {}).get("mean")
    summary["mean_think_tokens"] = (report["think_tokens"] or {}).get("mean")
    summary.update({key: report[key] for key in ("cache", "seconds") if key in report})
    return {"filter": summary}


STAGE = Stage(
    name="filter", run=run, record=record,
    settings={"filter": FilterSettings, "model": ModelSettings},  # the model's tokenizer counts think tokens
    inputs=(file_input("traces", TRACES_FILE, producer="traces", override="filter.traces_path"),),
    outputs=(FILTERED_FILE, FILTER_REPORT_FILE), cache_key=("filter", "prompt", "model", "level"),
)
