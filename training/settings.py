"""Typed reads of config values: the bad value and what is allowed, named in one line.

Hydra hands over whatever the user typed (``data.n_train=abc`` is the string ``'abc'``), so every stage
reads its settings through these instead of ``int()``/``float()``, which would end the trial with a
traceback. Each check raises :class:`ConfigError` as ``<key> must be <allowed>, got <value>``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from training.errors import ConfigError


def _fail(key: str, allowed: str, value: Any) -> ConfigError:
    return ConfigError(f"{key} must be {allowed}, got {value!r}")


def as_int(value: Any, key: str, minimum: int | None = None, allowed: str | None = None) -> int:
    """``value`` as an int (``8``, ``8.0``, ``"8"``), at least ``minimum``; a bool is not an integer here."""
    allowed = allowed or ("an integer" if minimum is None else f"an integer >= {minimum}")
    if isinstance(value, bool):
        raise _fail(key, allowed, value)
    if isinstance(value, float):
        if not value.is_integer():
            raise _fail(key, allowed, value)
        number = int(value)
    else:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise _fail(key, allowed, value) from None
    if minimum is not None and number < minimum:
        raise _fail(key, allowed, value)
    return number


def as_optional_int(value: Any, key: str, minimum: int | None = None) -> int | None:
    """None (a null in the config: no limit), or an int as :func:`as_int` reads it."""
    if value is None:
        return None
    allowed = "null or an integer" + ("" if minimum is None else f" >= {minimum}")
    return as_int(value, key, minimum, allowed)


def in_interval(number: float, low: float | None = None, high: float | None = None, *, low_open: bool = False,
                high_open: bool = False) -> bool:
    """Whether ``number`` is finite and inside the interval (ends closed unless ``*_open``; None: unbounded).

    NaN fails every comparison, so it is refused here rather than passing as "no limit crossed".
    """
    return (math.isfinite(number) and (low is None or (number > low if low_open else number >= low))
            and (high is None or (number < high if high_open else number <= high)))


def as_float(value: Any, key: str, *, low: float | None = None, high: float | None = None,
             low_open: bool = False, high_open: bool = False, allowed: str | None = None) -> float:
    """``value`` as a finite float in the interval given by ``low``/``high`` (closed unless ``*_open``)."""
    if allowed is None:
        if low is not None and high is not None:
            allowed = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            allowed = f"a number {'>' if low_open else '>='} {low:g}"
        elif high is not None:
            allowed = f"a number {'<' if high_open else '<='} {high:g}"
        else:
            allowed = "a number"
    if isinstance(value, bool):
        raise _fail(key, allowed, value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _fail(key, allowed, value) from None
    if not in_interval(number, low, high, low_open=low_open, high_open=high_open):
        raise _fail(key, allowed, value)
    return number


def as_bool(value: Any, key: str) -> bool:
    """A YAML boolean; the string ``"false"`` would be truthy under ``bool()``, so it is refused."""
    if not isinstance(value, bool):
        raise _fail(key, "true or false", value)
    return value


def as_choice(value: Any, key: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(choices)}")
    return value
