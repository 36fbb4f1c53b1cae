"""Errors a user can fix. The entry point prints them as one line, without a traceback."""

from __future__ import annotations

import errno
import shutil


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


class StorageError(CotParetoError):
    """A file that cannot be written: a full disk or quota. The message names the path."""


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def short_os_error(err: OSError) -> str:
    """One short line for an OSError, or for the first of a ``shutil.Error``'s list (which can run to kilobytes)."""
    if isinstance(err, shutil.Error) and err.args and isinstance(err.args[0], list) and err.args[0]:
        return str(err.args[0][0][-1])[:300]
    if err.strerror:
        return f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    return f"{type(err).__name__}: {err}"[:300]


def storage_error(err: BaseException) -> StorageError | None:
    """A full disk (anywhere in ``err``'s chain) as one line naming the path; None for any other error."""
    seen: BaseException | None = err
    while seen is not None:
        # Not only OSError: native libraries (tokenizers, safetensors) raise a bare Exception with the OS text.
        if (isinstance(seen, OSError) and seen.errno in NO_SPACE) or "No space left on device" in str(seen)[:2000]:
            where = f" writing {seen.filename}" if getattr(seen, "filename", None) else ""
            detail = "" if where else f" ({short_os_error(seen)})"
            return StorageError(f"no space left on device{where}{detail}: free some space or point the run dir "
                                "(hydra.run.dir / hydra.sweep.dir) or the stage cache (cache.dir) elsewhere")
        seen = seen.__cause__ or seen.__context__
    return None
