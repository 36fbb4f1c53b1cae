"""What every fault test checks, in one place: one clear line, nothing lost, no secret in any file.

The fault tests run the real entry points in real processes (``python -m sweep``, ``python -m analysis``)
against real files, a real loopback HTTP server and a real PostgreSQL; nothing here stands in for a library.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_module(module: str, *args: str, cwd: Path, env: dict[str, str] | None = None,
               timeout: float = 180) -> subprocess.CompletedProcess:
    """``python -m module args`` as a user runs it, from ``cwd``, with this checkout on the path."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single line a user error must print: exit status 2, no traceback, nothing else."""
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, f"exit status {result.returncode}:\n{output}"
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def files_holding(secret: str, *roots: Path) -> list[Path]:
    """Every file under ``roots`` whose bytes contain ``secret`` (binary files too: W&B and SQLite files count)."""
    needle = secret.encode()
    return [path for root in roots if root.exists() for path in sorted(root.rglob("*"))
            if path.is_file() and needle in path.read_bytes()]


def assert_no_secret(secret: str, *roots: Path) -> None:
    leaked = files_holding(secret, *roots)
    assert not leaked, f"{secret!r} found in {[str(path) for path in leaked]}"
