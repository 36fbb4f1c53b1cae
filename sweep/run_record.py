"""A run dir's ``metrics.json``: the one record of how a trial ended, read the same way everywhere.

The pipeline writes it (atomically) whatever happens: ``status`` is ``completed`` or
``failed``. A run dir without one has not finished (or was killed before it could
write); a file that does not parse is reported as such rather than crashing a
summary, a report or a sweep that reads hundreds of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"
RUNNING = "running"  # no metrics.json yet
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
