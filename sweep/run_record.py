"""A run dir's ``metrics.json``: the one record of how a trial ended, read the same way everywhere.

The pipeline writes it (atomically) whatever happens: ``status`` is ``completed`` or
``failed``. A run dir without one, or whose record still says ``running``, has not
finished (or was killed before it could write); a file that does not parse is reported
as such rather than crashing a summary, a report or a sweep that reads hundreds of them.

A trial reserves its record when it starts (:func:`reserve_metrics`): a ``running``
record padded to ``RESERVED_BYTES``. When the disk fills up mid-trial and the final
record cannot be written the usual way, :func:`write_metrics` overwrites those blocks in
place with a short ``failed`` record, so the run dir still says how it ended.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from sweep.trial_record import RUNNING as TRIAL_RUNNING
from training.common.jsonl import write_json

METRICS_FILE = "metrics.json"
# eval.thinking=both: the run dir of the no-think evaluation, inside its trial's run dir
NO_THINK_DIR = "no_think"
RUNNING = TRIAL_RUNNING  # no metrics.json yet, or the record reserved at the start
UNREADABLE = "unreadable"  # a metrics.json that is not a JSON object


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """``run_dir``'s metrics, ``{"status": "running"}`` without a file, ``{"status": "unreadable", ...}`` if corrupt."""
    path = Path(run_dir) / METRICS_FILE
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"status": RUNNING}
    except (OSError, ValueError) as err:
        return {"status": UNREADABLE, "error": f"{path}: {err}"}
    if not isinstance(metrics, dict):
        return {"status": UNREADABLE, "error": f"{path}: not a JSON object"}
    return metrics


def completed(run_dir: Path) -> bool:
    return read_metrics(run_dir).get("status") == "completed"


RESERVED_BYTES = 4096
log = logging.getLogger(__name__)


def reserve_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """Write ``record`` (status running) padded with spaces to ``RESERVED_BYTES``, blocks a failure can reuse."""
    path = Path(run_dir) / METRICS_FILE
    data = json.dumps(record, ensure_ascii=False).encode()
    try:
        path.write_bytes(data.ljust(RESERVED_BYTES))
    except OSError:
        path.unlink(missing_ok=True)  # half a record would read as unreadable; none reads as not finished
        raise


def write_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """Write the final record atomically; if the disk is full, a short one in place of the reservation."""
    path = Path(run_dir) / METRICS_FILE
    try:
        write_json(path, record)
        return
    except OSError as err:
        if not path.is_file():
            raise
        log.warning("could not write %s (%s); writing a short record in its reserved space", path, err.strerror or err)
    keep = ("status", "error", "run_dir", "level", "level_name", "stages", "model", "adapter", "seconds")
    short = {key: record[key] for key in keep if key in record}
    data = json.dumps(short, ensure_ascii=False).encode()
    if len(data) > RESERVED_BYTES:  # only a very long error can do this: cut it, the log has the rest
        short["error"] = str(short.get("error", ""))[:RESERVED_BYTES // 2] + " ..."
        data = json.dumps(short, ensure_ascii=False).encode()
    size = path.stat().st_size
    with path.open("r+b") as handle:  # no truncation: the file keeps its blocks, the padding is JSON whitespace
        handle.write(data.ljust(size))
