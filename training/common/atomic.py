"""Build a file or folder under a temp name and rename it into place, so no reader ever sees half of it.

Model conversions and stage-cache entries are shared by every process on the machine:
two workers preparing the same folder at once both build, one rename wins, and the
other's copy, identical by construction, is thrown away. Where the work is expensive
(training an adapter), :func:`file_lock` lets the second worker wait for the first
instead of doing it again. A run dir's own artifacts (an adapter, a file restored from
the stage cache) go in with :func:`replace_atomically`: on a full disk the half-written
copy is removed, so a later run never mistakes it for a finished one.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


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


@contextmanager
def atomic_file(path: Path, **open_args: Any) -> Iterator[IO[Any]]:
    """Open a temp sibling of ``path`` for writing; rename it to ``path`` when the block succeeds, else remove it.

    Readers see the old file or the whole new one, never half of it (nor, after a full disk, a stray temp
    file). The temp name is unique per process and thread, so concurrent writers of one path (workers
    sharing a cache, threads storing one response) never write into each other's file; the last rename wins.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        # "w", not "x": a temp file left by a killed process whose pid and thread id ours happen to reuse is stale.
        with tmp.open("w", **{"encoding": "utf-8", **open_args}) as handle:
            yield handle
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def replace_atomically(target: Path, build: Callable[[Path], None]) -> Path:
    """Run ``build(tmp)`` (which creates the file or folder ``tmp``) and swap it in for ``target``.

    ``tmp`` is a sibling of ``target``, so the rename never crosses filesystems. If ``build`` fails
    (a full disk, a crash in a save), ``tmp`` is removed and ``target`` keeps whatever it held before.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    old = target.with_name(f".{target.name}.{os.getpid()}.old")
    _remove(tmp)
    try:
        try:
            build(tmp)
        except Exception as err:
            # Native writers (the tokenizers library) report a full disk as a bare Exception: make it the OSError
            # it is, naming the target, so the trial's one-line error can say where.
            if isinstance(err, OSError) or "No space left on device" not in str(err):
                raise
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target)) from err
        if target.exists():
            target.rename(old)  # a folder cannot be replaced by rename(); move the old one aside first
        tmp.rename(target)
    finally:
        _remove(tmp)
        _remove(old)
    return target


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


@contextmanager
def file_lock(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if absent) between processes; ``on_wait`` runs if we must wait.

    An OS lock (flock), so a killed holder never leaves a stale lock behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
