"""A real PostgreSQL server for the tests: an unprivileged cluster in a temp dir, on a loopback port.

One server per test session (the ``postgres`` fixture), stopped and deleted when the tests end. initdb
refuses to run as root, so as root (CI, containers) the cluster belongs to ``nobody``; otherwise to the
current user. ``make postgres`` installs Debian's server when it is absent; the tests skip, with the
reason, only when no server can be started at all.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "cot"
UNPRIVILEGED = "nobody"


def bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, else Debian's newest /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                      key=lambda path: int(re.sub(r"\D", "", path.parent.parent.name) or 0))
    return versions[-1].parent if versions else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    root: Path
    bin: Path
    port: int
    password: str

    def url(self, database: str, password: bool = True) -> str:
        """``postgresql://cot[:password]@127.0.0.1:port/database``; without it, libpq reads PGPASSWORD."""
        secret = f":{self.password}" if password else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A fresh database (one per test keeps their studies apart); its URL with the password."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=self.password, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:  # initdb and postgres refuse root
            command = ["runuser", "-u", UNPRIVILEGED, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    def start(self) -> None:
        data, pwfile = self.root / "data", self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            owner = pwd.getpwnam(UNPRIVILEGED)
            for path in (self.root, pwfile):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        init = self._run("initdb", "-D", str(data), "-U", USER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
                         "--no-locale", "--encoding=UTF8", "--no-sync")
        pwfile.unlink()
        if init.returncode:
            raise RuntimeError(f"initdb failed: {(init.stdout + init.stderr).strip()[-800:]}")
        # Loopback TCP only (no socket file to place), and no fsync: a test cluster is thrown away.
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        started = self._run("pg_ctl", "-D", str(data), "-l", str(self.root / "server.log"), "-w", "-t", "30", "start")
        if started.returncode:
            log = (self.root / "server.log").read_text()[-800:] if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {(started.stdout + started.stderr).strip()[-400:]} {log}")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> Server:
    """A running server, or RuntimeError saying why none could be started."""
    found = bin_dir()
    if found is None:
        raise RuntimeError("no PostgreSQL server installed (pg_ctl not on PATH nor in /usr/lib/postgresql/*/bin); "
                           "`make postgres` installs Debian's")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        raise RuntimeError("running as root without runuser: cannot start PostgreSQL as an unprivileged user")
    error = None
    for _ in range(3):  # the free port can be taken between the probe and the server's bind
        # As root, under /tmp itself: a $TMPDIR private to root would stop nobody from reaching the cluster.
        root = tempfile.mkdtemp(prefix="cot-pareto-pg-", dir="/tmp" if os.geteuid() == 0 else None)
        server = Server(Path(root), found, _free_port(), f"pw-{secrets.token_hex(12)}")
        try:
            server.start()
            return server
        except RuntimeError as err:
            error = err
            server.stop()
    raise RuntimeError(str(error))


@pytest.fixture(scope="session")
def postgres() -> Iterator[Server]:
    try:
        server = start_server()
    except RuntimeError as err:
        pytest.skip(f"PostgreSQL cannot be started here: {err}")
    try:
        yield server
    finally:
        server.stop()
