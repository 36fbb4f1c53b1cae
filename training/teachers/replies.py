"""What an HTTP teacher takes from a server's replies: answers and excerpts with the API key masked, and
how long the server asked it to wait.

Servers and gateways sometimes echo what they were sent (a debugging proxy, a model asked to repeat
its input, an error page quoting the headers), so the key can come back inside a completion, a
reasoning text, an error body or any other field of a response. Every string a teacher writes (the
response cache, ``traces.jsonl``, error messages, logs) passes through :func:`redact` first.
"""

from __future__ import annotations

import email.utils
from datetime import datetime, timezone
from typing import Any

import httpx

MASK = "***"


def redact(value: Any, secret: str | None) -> Any:
    """``value`` with every occurrence of ``secret`` masked, in strings nested at any depth in dicts and lists
    (dict keys included); other values are returned as they are. No secret: ``value`` itself."""
    if not secret:
        return value
    if isinstance(value, str):
        return value.replace(secret, MASK)
    if isinstance(value, dict):
        return {redact(k, secret): redact(v, secret) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(item, secret) for item in value)
    return value


def redacted_excerpt(text: str, secret: str | None, limit: int) -> str:
    """``text`` on one line, masked, then cut to ``limit`` characters (masked first: a cut through the key
    would leave its first characters in the excerpt, where masking no longer finds them)."""
    text = redact(" ".join(text.split()), secret)
    return text if len(text) <= limit else text[:limit] + "..."


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asked us to wait (RFC 9110: delta-seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After", "")  # absent: "" fails both parses below
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):  # neither form: wait as the backoff says
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds()) if when.tzinfo else None
