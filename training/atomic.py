"""Build a folder in a temp dir and rename it into place, so no reader ever sees half of it.

Model conversions and stage-cache entries are shared by every process on the machine:
two workers preparing the same folder at once both build, one rename wins, and the
other's copy, identical by construction, is thrown away.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def build_atomically(target: Path, build: Callable[[Path], None], marker: str) -> Path:
    """Run ``build(tmp_dir)`` and rename the result to ``target``, unless ``target/marker`` already exists."""
    if (target / marker).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process renamed its copy first: theirs is as good as ours
            if not (target / marker).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
