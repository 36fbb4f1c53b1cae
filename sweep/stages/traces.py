"""Stage ``traces``: the teacher writes reasoning traces for the training problems at the trial's level.

Reads: the training problems (``data``), by content. Writes: ``traces.jsonl``, one row per trace.
Cache key: ``data``, ``teacher`` (less its operational settings), ``level``, ``seed`` and the problems' digest.
Traces with failed teacher requests are kept out of the cache, and so is everything made from them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from sweep.stages.base import Input, Stage, TrialContext
from training.caching.stage_cache import rows_digest
from training.common.errors import CotParetoError
from training.common.jsonl import write_jsonl
from training.config.schema import DataSettings
from training.teachers.base import run_teacher

log = logging.getLogger(__name__)

TRACES_FILE = "traces.jsonl"
# Teacher settings that change how the work is done, not what comes out: not part of the traces' cache key,
# so raising concurrency or moving the response cache does not redo a level's traces.
OPERATIONAL_TEACHER_KEYS = ("concurrency", "timeout_s", "max_retries", "backoff_s", "backoff_max_s", "cache_dir",
                            "api_key_env", "batch_size")


def build_teacher(cfg: DictConfig) -> tuple[Any, int]:
    """The teacher object and how many samples per problem to ask it for."""
    args = OmegaConf.to_container(cfg, resolve=True)
    n_samples = int(args.pop("n_samples", 1))
    try:
        return instantiate(args), n_samples
    except InstantiationException as err:
        # A teacher that rejects its own settings: the user gets that one line, not Hydra's wrapper.
        if isinstance(err.__cause__, CotParetoError):
            raise err.__cause__ from None
        raise


def run(ctx: TrialContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """Have the configured teacher write ``traces.jsonl`` for the training problems; return its summary."""
    # The latent level's teacher writes its Phase A verbal CoT (level 1's), not symbols.
    problems, level, out_path = inputs["problems"], ctx.level.teacher_level, ctx.run_dir / TRACES_FILE
    teacher, n_samples = build_teacher(ctx.cfg.teacher)
    start = time.perf_counter()
    traces = run_teacher(teacher, problems, level, n_samples, int(ctx.cfg.seed))
    by_id = {p.id: p for p in problems}
    write_jsonl(out_path, ({**t.to_row(), "level": level.id, "question": by_id[t.problem_id].question,
                            "gold": by_id[t.problem_id].answer} for t in traces))
    failed = sum(1 for t in traces if t.error)
    retryable = sum(1 for t in traces if t.error and t.retryable)
    seconds = round(time.perf_counter() - start, 3)
    log.info("traces: %s wrote %d traces for %d problems at %s (%d with a teacher error) in %.2fs -> %s",
             teacher.name, len(traces), len(problems), ctx.level.tag, failed, seconds, out_path)
    summary = {"teacher": teacher.name, "n_traces": len(traces), "teacher_errors": failed,
               "retryable_errors": retryable, "seconds": seconds}
    if getattr(teacher, "stats", None):  # LLM teachers: requests sent, cache hits, tokens generated...
        summary["teacher_stats"] = dict(teacher.stats)
    return summary


def key_settings(settings: dict[str, Any]) -> dict[str, Any]:
    teacher = settings.get("teacher")
    if not isinstance(teacher, dict):
        return settings
    return {**settings, "teacher": {k: v for k, v in teacher.items() if k not in OPERATIONAL_TEACHER_KEYS}}


def record(result: dict[str, Any]) -> dict[str, Any]:
    """Only errors that may recur differently (failed requests) make the traces incomplete; a problem the
    reference teacher cannot render fails the same way every time."""
    complete = result.get("retryable_errors", 0) == 0
    if not complete:
        log.warning("traces: %d teacher requests failed; this trial trains on the traces that came back, and "
                    "nothing derived from them is cached (a later run asks the teacher again)",
                    result["retryable_errors"])
    return {"traces": result, "complete_inputs": complete}


PROBLEMS = Input("problems", lambda ctx, stage: ctx.splits.train,
                 lambda problems: rows_digest([asdict(p) for p in problems]))

STAGE = Stage(
    name="traces", run=run, record=record, settings={"data": DataSettings, "teacher": None},
    inputs=(PROBLEMS,), outputs=(TRACES_FILE,),
    cache_key=("data", "teacher", "level", "seed"), key_settings=key_settings,
    cacheable=lambda result: result["retryable_errors"] == 0,
)
