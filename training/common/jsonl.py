"""JSONL reading and writing with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from training.common.atomic import atomic_file
from training.common.errors import DataError


class JsonlRow(dict):
    """A row read from a JSONL file that remembers where it came from (``path:line``).

    A plain dict everywhere else; checks further down (a traces row without ``gold``) use ``where`` to name
    the file and line without every caller passing line numbers along.
    """

    where: str = ""


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, JsonlRow]]:
    """Yield ``(line_number, row)`` for each non-blank line; 1-based line numbers.

    A line that is not UTF-8 or not a JSON object raises :class:`DataError` naming ``path:line``,
    so a bad row in a 7k-line file (or a binary file given by mistake) is found without a debugger.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    # Bytes, decoded line by line: a text-mode read fails in whichever chunk holds the bad byte, with no line.
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[err.start]:02x} at column "
                                f"{err.start + 1}); is this a JSONL file?") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: malformed JSON ({err.msg} at column {err.colno})") from None
            except RecursionError:  # thousands of nested brackets
                raise DataError(f"{path}:{lineno}: malformed JSON (nested too deeply)") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            located = JsonlRow(row)
            located.where = f"{path}:{lineno}"
            yield lineno, located


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every row of ``path``; each is a :class:`JsonlRow` that knows its ``path:line``."""
    return [row for _, row in iter_jsonl(path)]


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows atomically (temp file + rename) so a crash never leaves half a file."""
    count = 0
    with atomic_file(Path(path)) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically (temp file + rename)."""
    with atomic_file(Path(path)) as handle:
        handle.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
