"""Errors a user can fix. The entry point prints them as one line, without a traceback."""

from __future__ import annotations


class CotParetoError(Exception):
    """Base class: the message alone must tell the user what to change."""


class ConfigError(CotParetoError):
    """An impossible or incomplete configuration (unknown level, bad stage list, ...)."""


class DataError(CotParetoError):
    """Input data that cannot be read: the message names the file and line."""


class TeacherError(CotParetoError):
    """A teacher broke its contract (wrong number of results, no output at all)."""


class TrainingError(CotParetoError):
    """Training cannot go on: no rows to train on, or the loss stopped being a number."""
