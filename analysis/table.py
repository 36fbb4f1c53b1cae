# Print the trials under a dir as a table. Run: python -m analysis table outputs/demo/<stamp>
"""The run table: one line per trial, read from each run dir's ``metrics.json`` (never from memory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from analysis.trials import is_latent, run_config
from sweep.run_record import METRICS_FILE, read_metrics
from training.common.errors import CotParetoError


def table_rows(root: Path) -> list[dict[str, Any]]:
    """Every ``metrics.json`` below ``root``, sorted by level (baselines first), then path."""
    if not root.is_dir():
        raise CotParetoError(f"{root} is not a directory")
    rows = []
    for path in sorted(root.rglob(METRICS_FILE)):
        metrics = read_metrics(path.parent)
        rows.append({**metrics, "run_dir": str(path.parent), "latent": is_latent(metrics.get("eval") or metrics,
                                                                                 _config(path.parent))})
    if not rows:
        raise CotParetoError(f"no metrics.json under {root}: nothing ran there yet")
    return sorted(rows, key=lambda m: (m.get("adapter") != "none", m.get("level") or 0, m["run_dir"]))


def _config(run_dir: Path) -> dict[str, Any] | None:
    """The run dir's composed config (``.hydra/config.yaml``), where ``level.latent`` marks the latent level."""
    try:
        config = run_config(run_dir)
    except (OSError, yaml.YAMLError):
        return None  # the table still lists the run, by its level id
    return config if isinstance(config, dict) else None


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _name(m: dict[str, Any]) -> str:
    tag = "latent" if m.get("latent") else f"L{m.get('level')}"
    name = f"base ({tag} prompt)" if m.get("adapter") == "none" else tag
    # The no-think record of eval.thinking=both (a run dir inside its trial's).
    return f"{name} no-think" if (m.get("eval") or {}).get("thinking") == "off" else name


def format_table(rows: list[dict[str, Any]]) -> str:
    width = max([16, *(len(_name(m)) for m in rows)])
    header = f"{'trial':<{width}} {'status':<9} {'accuracy':>8} {'95% CI':>15} {'think tok':>9} {'n_train':>7} " \
             f"{'train s':>7} {'eval s':>6}"
    lines = [header, "-" * len(header)]
    for m in rows:
        name = _name(m)
        ci = m.get("accuracy_ci")
        lines.append(
            f"{name:<{width}} {m.get('status', '?'):<9} {_cell(m.get('accuracy'), '.3f'):>8} "
            f"{(f'[{ci[0]:.3f}, {ci[1]:.3f}]' if ci else '-'):>15} {_cell(m.get('mean_think_tokens'), '.1f'):>9} "
            f"{_cell(m.get('n_train'), 'd'):>7} {_cell(m.get('train_seconds'), '.0f'):>7} "
            f"{_cell(m.get('eval_seconds'), '.0f'):>6}"
        )
        if m.get("status") == "failed":
            lines.append(f"{'':<{width}} error: {m.get('error')}")
    return "\n".join(lines)
