"""Content-addressed cache of stage outputs: a sweep does each piece of work once.

A sweep over LoRA ranks does the teacher's work once per level; a sweep over sampling
settings trains each adapter once. An entry's key hashes the stage's own settings and
the *content* of its inputs (:func:`content_digest` of the problems, of ``traces.jsonl``,
of ``filtered.jsonl``), plus ``CACHE_VERSION``. Settings alone are not enough: after a
teacher outage the same settings produce fewer traces, and an entry keyed on settings
would hand that short training set to every later run. Work derived from an incomplete
input (traces with teacher errors, and everything downstream of them) is never stored.

A trial whose key exists copies the entry's files into its own run dir, so every run dir
still holds its inputs, and logs the hit. Entries are written atomically
(``training.common.atomic``), so workers sharing the cache never read half an entry; a cache
that cannot be written (a full disk) costs a warning, never the trial. Bump
``CACHE_VERSION`` when a stage's output for the same inputs changes.

The cache lives in ``cache.dir``, else ``$COT_PARETO_STAGE_CACHE``, else
``<model cache root>/stages``; ``cache.enabled=false`` turns it off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from training.common.atomic import build_atomically, file_lock, replace_atomically
from training.common.errors import short_os_error
from training.common.jsonl import write_json
from training.models.loading import cache_root

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: keys hold input digests instead of upstream settings
STAGE_CACHE_ENV = "COT_PARETO_STAGE_CACHE"
SUMMARY_FILE = "summary.json"  # written last: its presence marks a complete entry


def stage_key(stage: str, parts: Mapping[str, Any]) -> str:
    """A stable hash of ``parts`` (plain, JSON-able values) for ``stage``."""
    payload = json.dumps({"stage": stage, "version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def content_digest(path: Path) -> str:
    """sha256 of a file's bytes: what a stage read."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def rows_digest(rows: Sequence[Any]) -> str:
    """sha256 of plain rows (dicts, dataclasses as dicts) in order: the content of an in-memory input."""
    payload = "\n".join(json.dumps(row, sort_keys=True, default=str) for row in rows)
    return hashlib.sha256(payload.encode()).hexdigest()


def cache_dir(configured: str | None) -> Path:
    if configured:
        return Path(configured).expanduser()
    if os.environ.get(STAGE_CACHE_ENV):
        return Path(os.environ[STAGE_CACHE_ENV])
    return cache_root() / "stages"


def _copy(source: Path, target: Path) -> None:
    """Copy a file, or a folder (an adapter), to ``target``, which must not exist."""
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copyfile(source, target)


def run_cached(
    root: Path | None,
    stage: str,
    parts: Mapping[str, Any],
    run_dir: Path,
    files: Sequence[str],
    compute: Callable[[], dict[str, Any]],
    cacheable: Callable[[dict[str, Any]], bool] = lambda summary: True,
) -> dict[str, Any]:
    """Restore ``files`` into ``run_dir`` from the cache, or ``compute()`` them and store them.

    ``parts`` must hold the digests of the stage's inputs as well as its settings. ``compute``
    writes ``files`` into ``run_dir`` and returns the stage summary; a summary that ``cacheable``
    rejects (say, traces with teacher errors) is not stored, so a later run retries the work.
    ``root=None`` disables the cache.
    """
    if root is None:
        return compute()
    key = stage_key(stage, parts)
    entry = root / stage / key
    if (entry / SUMMARY_FILE).is_file():
        return _restore(entry, stage, key, run_dir, files)
    # One process computes a key at a time: a second worker on the same adapter waits, then restores it.
    def waiting() -> None:
        log.info("%s: another process is computing %s; waiting for it", stage, key)

    with file_lock(root / stage / f".{key}.lock", on_wait=waiting):
        if (entry / SUMMARY_FILE).is_file():
            return _restore(entry, stage, key, run_dir, files)
        return _compute(entry, stage, key, parts, run_dir, files, compute, cacheable)


def _restore(entry: Path, stage: str, key: str, run_dir: Path, files: Sequence[str]) -> dict[str, Any]:
    start = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in files:  # each file whole or not at all: a full disk must not leave half an adapter behind
        replace_atomically(run_dir / name, lambda tmp, name=name: _copy(entry / name, tmp))
    summary = json.loads((entry / SUMMARY_FILE).read_text())
    summary.pop("key_parts", None)
    seconds = round(time.perf_counter() - start, 3)
    log.info("%s: cache hit %s, restored %s in %.3fs (no %s work)", stage, key, ", ".join(files), seconds, stage)
    return {**summary, "cache": "hit", "cache_key": key, "seconds": seconds, "computed_seconds": summary.get("seconds")}


def _compute(entry: Path, stage: str, key: str, parts: Mapping[str, Any], run_dir: Path, files: Sequence[str],
             compute: Callable[[], dict[str, Any]], cacheable: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    summary = compute()
    if not cacheable(summary):
        log.info("%s: cache miss %s, not stored (incomplete output or input)", stage, key)
        return {**summary, "cache": "miss", "cache_key": key}

    def build(tmp: Path) -> None:
        for name in files:
            _copy(run_dir / name, tmp / name)
        write_json(tmp / SUMMARY_FILE, {**summary, "key_parts": parts})

    try:
        build_atomically(entry, build, SUMMARY_FILE)
    except OSError as err:  # the work is done and in the run dir: a cache that cannot take it must not fail the trial
        log.warning("%s: could not store cache entry %s in %s (%s); the trial goes on without it",
                    stage, key, entry.parent, short_os_error(err))
        return {**summary, "cache": "miss", "cache_key": key, "cache_stored": False}
    log.info("%s: cache miss %s, stored in %s", stage, key, entry)
    return {**summary, "cache": "miss", "cache_key": key}

