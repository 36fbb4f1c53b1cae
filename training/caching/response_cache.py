"""A folder of JSON responses keyed by request: a killed run keeps every answer it received.

One file per response, written atomically (``training.common.atomic.atomic_file``) the moment it
arrives, so a rerun after a crash or a kill sends only the requests whose file is
missing, and no reader ever sees half a file. Keys hash what was asked and where
(the endpoint URL and the request body), never the credentials it was sent with.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from training.common.atomic import atomic_file

log = logging.getLogger(__name__)


def request_key(url: str, body: Mapping[str, Any]) -> str:
    """A stable hash of an endpoint and a JSON request body (key order does not matter)."""
    payload = json.dumps({"url": url.rstrip("/"), "body": body}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class ResponseCache:
    """``get``/``put`` JSON values under hex keys in ``root``; safe for threads and processes sharing it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def path(self, key: str) -> Path:
        # Sharded by the first two hex digits: a 7k-problem sweep stays far from huge flat folders.
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Any | None:
        """The stored value, or None when absent or unreadable (then the request is simply sent again)."""
        path = self.path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            log.warning("response cache: ignoring unreadable %s (%s)", path, err)
            return None

    def put(self, key: str, value: Any) -> Path:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as handle:  # concurrent threads may store the same key at once
            json.dump(value, handle, ensure_ascii=False)
        return path

    def files(self) -> Iterator[Path]:
        """Every complete entry (temp files of interrupted writes are not entries)."""
        return self.root.glob("??/*.json") if self.root.is_dir() else iter(())

    def __len__(self) -> int:
        return sum(1 for _ in self.files())
