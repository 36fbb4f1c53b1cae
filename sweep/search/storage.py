"""Where a study lives: a journal file or a database URL, opened with one-line errors, never shown in clear.

``hydra.sweeper.storage`` is a journal path (default ``<sweep dir>/optuna.journal``) or a URL
(``sqlite:///study.db``, ``postgresql://user@host/db``). A URL may carry a password; every place
this project writes or logs a URL shows it redacted (``postgresql://user:***@host/db``). The
password-free forms are libpq's ``PGPASSWORD`` or ``~/.pgpass`` (a URL without a password), or
``hydra.sweeper.storage_env=VAR``: the URL is read from the environment variable ``VAR`` and
never appears on a command line or in a config.

``postgresql://`` is opened with psycopg 3 (the ``postgres`` extra): SQLAlchemy 2.1's default, and
spelt out here as ``postgresql+psycopg://`` so that an older SQLAlchemy does not look for psycopg2.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from training.common.errors import ConfigError

JOURNAL_FILE = "optuna.journal"
# user:password@ as SQLAlchemy parses it (the password runs to the first "@"), and libpq's password= parameter.
_USERINFO = re.compile(r"([A-Za-z][\w+.-]*://[^:/@\s'\"]*):[^@\s'\"]*@")
_PASSWORD_PARAM = re.compile(r"([?&]password=)[^&\s'\"]*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _PASSWORD_PARAM.sub(r"\1***", _USERINFO.sub(r"\1:***@", text))


def is_url(storage: str | None) -> bool:
    return bool(storage) and "://" in str(storage)


def storage_setting(storage: str | None, storage_env: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The storage to open: ``storage`` itself, or the URL held by the environment variable ``storage_env``."""
    if not storage_env:
        return storage
    if storage:
        raise ConfigError("set hydra.sweeper.storage or hydra.sweeper.storage_env, not both")
    value = environ.get(str(storage_env), "").strip()
    if not value:
        raise ConfigError(f"hydra.sweeper.storage_env={storage_env}: the environment variable {storage_env} "
                          "is not set (export it with the storage URL)")
    return value


def describe(storage: str | None, sweep_dir: Path) -> str:
    """The storage as messages name it: the redacted URL, or the journal file's path."""
    if is_url(storage):
        return redact(str(storage))
    return str(Path(storage) if storage else sweep_dir / JOURNAL_FILE)


def first_line(err: BaseException) -> str:
    """An error's first line, credentials redacted."""
    # SQLAlchemy wraps the driver's error ("(psycopg.OperationalError) ...\n(Background on this error ...)");
    # the driver's own first line is what says what went wrong.
    text = str(getattr(err, "orig", None) or err).strip() or type(err).__name__
    return redact(text.splitlines()[0].strip())


@contextmanager
def storage_errors(label: str) -> Iterator[None]:
    """Turn a storage that cannot be opened or used into one ConfigError line naming it (``label``, redacted)."""
    from sqlalchemy.exc import ArgumentError, DBAPIError

    try:
        yield
    except ArgumentError as err:  # foo://bar, a URL SQLAlchemy cannot parse or has no dialect for
        raise ConfigError(f"hydra.sweeper.storage={label}: not a storage URL ({first_line(err)}); use a journal "
                          "file path, sqlite:///path/study.db or postgresql://user@host/db") from None
    except DBAPIError as err:  # the server is down, refuses the login, the database or file is missing
        raise ConfigError(f"hydra.sweeper.storage={label}: cannot use the study storage: {first_line(err)}") from None
    except ImportError as err:  # a URL whose driver is not installed (mysql://, postgresql+psycopg2://)
        raise ConfigError(f"hydra.sweeper.storage={label}: its database driver is not installed ({first_line(err)}); "
                          "for PostgreSQL: pip install -e '.[postgres]'") from None
    except OSError as err:  # a journal under a file, in /proc, on a read-only disk
        reason = err.strerror or first_line(err)
        where = f" ({err.filename})" if err.filename and str(err.filename) not in label else ""
        raise ConfigError(f"hydra.sweeper.storage={label}: cannot write the journal file: {reason}{where}") from None


def _rdb_storage(url: str, attempts: int = 5):
    """Connect and create the tables. Workers that start together on an empty database race to create
    them (PostgreSQL: a duplicate key in pg_type; SQLite: "table ... already exists"): the loser retries."""
    import optuna
    from sqlalchemy.exc import DBAPIError, IntegrityError

    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url)
        except DBAPIError as err:
            if attempt == attempts - 1 or not (isinstance(err, IntegrityError) or "already exists" in str(err)):
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def open_storage(storage: str | None, sweep_dir: Path):
    """A journal file (the default: ``<sweep dir>/optuna.journal``, or any path) or a database URL.

    Errors come out as one ConfigError line naming the storage with its password redacted.
    """
    with storage_errors(describe(storage, sweep_dir)):
        if is_url(storage):
            return _rdb_storage(str(storage))
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(storage) if storage else sweep_dir / JOURNAL_FILE
        above = next((parent for parent in path.parents if parent.exists()), None)
        if above is not None and not above.is_dir():  # mkdir would say "File exists", which misleads
            raise ConfigError(f"hydra.sweeper.storage={path}: cannot write the journal file: {above} is a file, "
                              "not a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
