"""Typed reads of config values, and the schema fields built on them: the bad value and what is allowed, in one line.

Hydra hands over whatever the user typed (``data.n_train=abc`` is the string ``'abc'``), so settings are
read through these instead of ``int()``/``float()``, which would end the trial with a traceback. Each check
raises :class:`ConfigError` as ``<key> must be <allowed>, got <value>``.

A schema is a dataclass whose fields are :func:`setting` s: each declares its rule once, as a reader built
from the checks below (:func:`integer`, :func:`number`, ...), and :func:`read_settings` reads a config group
through all of them (:mod:`training.config.schema` holds the trial's groups).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, Field, field, fields
from typing import Any, TypeVar

from training.common.errors import ConfigError

T = TypeVar("T")
Reader = Callable[[Any, str], Any]  # (value, key) -> the value checked and normalised; raises ConfigError


def refuse(key: str, allowed: str, value: Any) -> ConfigError:
    return ConfigError(f"{key} must be {allowed}, got {value!r}")


def as_int(value: Any, key: str, minimum: int | None = None, allowed: str | None = None) -> int:
    """``value`` as an int (``8``, ``8.0``, ``"8"``), at least ``minimum``; a bool is not an integer here."""
    allowed = allowed or ("an integer" if minimum is None else f"an integer >= {minimum}")
    if isinstance(value, bool):
        raise refuse(key, allowed, value)
    if isinstance(value, float):
        if not value.is_integer():
            raise refuse(key, allowed, value)
        number = int(value)
    else:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise refuse(key, allowed, value) from None
    if minimum is not None and number < minimum:
        raise refuse(key, allowed, value)
    return number


def in_interval(number: float, low: float | None = None, high: float | None = None, *, low_open: bool = False,
                high_open: bool = False) -> bool:
    """Whether ``number`` is finite and inside the interval (ends closed unless ``*_open``; None: unbounded).

    NaN fails every comparison, so it is refused here rather than passing as "no limit crossed".
    """
    return (math.isfinite(number) and (low is None or (number > low if low_open else number >= low))
            and (high is None or (number < high if high_open else number <= high)))


def _interval_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"a number {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"a number {'<' if high_open else '<='} {high:g}"
    return "a number"


def as_float(value: Any, key: str, *, low: float | None = None, high: float | None = None,
             low_open: bool = False, high_open: bool = False, allowed: str | None = None) -> float:
    """``value`` as a finite float in the interval given by ``low``/``high`` (closed unless ``*_open``)."""
    allowed = allowed or _interval_text(low, high, low_open, high_open)
    if isinstance(value, bool):
        raise refuse(key, allowed, value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise refuse(key, allowed, value) from None
    if not in_interval(number, low, high, low_open=low_open, high_open=high_open):
        raise refuse(key, allowed, value)
    return number


def as_bool(value: Any, key: str) -> bool:
    """A YAML boolean; the string ``"false"`` would be truthy under ``bool()``, so it is refused."""
    if not isinstance(value, bool):
        raise refuse(key, "true or false", value)
    return value


def as_choice(value: Any, key: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(choices)}")
    return value


# -- readers: one rule each, for a schema field ----------------------------------------------------------------

def _or_null(read: Reader, null: bool) -> Reader:
    return (lambda value, key: None if value is None else read(value, key)) if null else read


def integer(minimum: int | None = None, allowed: str | None = None, *, null: bool = False) -> Reader:
    """An integer >= ``minimum``; ``null``: or None (without an ``allowed`` text, "null or ..." is said)."""
    if allowed is None and null:
        allowed = "null or an integer" + ("" if minimum is None else f" >= {minimum}")
    return _or_null(lambda value, key: as_int(value, key, minimum, allowed), null)


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False,
           allowed: str | None = None, null: bool = False) -> Reader:
    """A finite number in the interval (see :func:`as_float`); ``null``: or None."""
    if allowed is None and null:
        allowed = "null or " + _interval_text(low, high, low_open, high_open)
    return _or_null(lambda value, key: as_float(value, key, low=low, high=high, low_open=low_open,
                                                high_open=high_open, allowed=allowed), null)


def flag(*, null_is_false: bool = False) -> Reader:
    """true or false; ``null_is_false``: an unset (null) value reads as false."""
    return lambda value, key: as_bool(False if value is None and null_is_false else value, key)


def choice(choices: Sequence[str]) -> Reader:
    return lambda value, key: as_choice(value, key, tuple(choices))


def text(*, null: bool = False, empty: bool = False) -> Reader:
    """A string (non-empty unless ``empty``); ``null``: or None."""
    allowed = ("null or " if null else "") + ("a string" if empty else "a non-empty string")

    def read(value: Any, key: str) -> str:
        if not isinstance(value, str) or not (value or empty):
            raise refuse(key, allowed, value)
        return value

    return _or_null(read, null)


def mapping(allowed: str | None = None, *, null: bool = True) -> Reader:
    """A mapping (a config node or dict), as given; ``null``: or None."""
    allowed = allowed or ("null or a mapping" if null else "a mapping")

    def read(value: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise refuse(key, allowed, value)
        return value

    return _or_null(read, null)


def nested(schema: type, *, null: bool = False) -> Reader:
    """A sub-group read through its own schema, its keys named ``<key>.<field>``; ``null``: or None."""
    as_mapping = mapping("a mapping of settings", null=False)
    return _or_null(lambda value, key: read_settings(schema, as_mapping(value, key), key), null)


# -- schemas ----------------------------------------------------------------------------------------------------

def setting(read: Reader, default: Any = MISSING, *, factory: Any = MISSING,
            when: str | None = None) -> Any:
    """A schema field whose config value ``read(value, key)`` checks and normalises.

    ``default`` (or ``factory()``, for a mutable one) is what a key absent from the config reads as; without
    one, an absent key reads as None, which ``read`` may refuse. ``when`` names an earlier boolean field: the
    key is read only when that field is true, and is None otherwise (``sampling.temperature`` matters only
    when ``sampling.do_sample``).
    """
    return field(default=default, default_factory=factory, metadata={"read": read, "when": when})


def _absent(item: Field) -> Any:
    if item.default is not MISSING:
        return item.default
    return item.default_factory() if item.default_factory is not MISSING else None


def _read(item: Field, value: Any, group: str) -> Any:
    read = item.metadata.get("read")
    return value if read is None else read(value, f"{group}.{item.name}")


def read_setting(schema: type, name: str, value: Any, group: str) -> Any:
    """``value`` read by the rule of ``schema``'s field ``name``: for code holding one setting, not its group."""
    (item,) = [item for item in fields(schema) if item.name == name]
    return _read(item, value, group)


def read_settings(schema: type[T], cfg: Mapping[str, Any] | None, group: str) -> T:
    """The typed settings of a config group: each of ``schema``'s fields read from ``cfg`` by its rule.

    Keys the schema does not declare pass unread (users add their own with ``+group.key=...``); a field
    without a rule takes its value as given. After the fields, the schema's ``check(group)`` method, if it
    has one, checks what depends on several of them. ConfigError names the first bad value.
    """
    cfg = cfg if cfg is not None else {}
    values: dict[str, Any] = {}
    for item in fields(schema):
        when = item.metadata.get("when")
        if when and not values[when]:
            values[item.name] = None
        else:
            values[item.name] = _read(item, cfg.get(item.name, _absent(item)), group)
    settings = schema(**values)
    if hasattr(settings, "check"):
        settings.check(group)
    return settings
