"""A real PostgreSQL on loopback for tests: initdb + postgres in a temporary directory.

Never a mock and never a shared server: the session starts its own PostgreSQL 15
(``/usr/lib/postgresql/15/bin``, or ``KZR_PG_BIN``) on 127.0.0.1 and a free port, with
trust authentication for the user ``postgres``, and removes everything at the end.
PostgreSQL refuses to run as root, so when the tests run as root the server runs as
the system user ``postgres`` (its data directory is handed to that user).

Use the fixtures from a test module (or a conftest)::

    from pgserver import pg_server, pg_url  # noqa: F401 - fixtures

    def test_catalog(pg_url):          # a fresh, empty database for this test
        catalog = open_catalog(pg_url)
        ...

    def test_many(pg_server):          # the server itself: make databases as needed
        url = pg_server.create_database()

or the context manager directly: ``with postgres_server() as server: server.url()``.
The server is tuned for tests (``fsync=off``): never point it at data you keep.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from servers import free_port

#: Where Debian's postgresql-15 puts its programs.
PG_BIN = Path(os.environ.get("KZR_PG_BIN", "/usr/lib/postgresql/15/bin"))
#: How long the server may take to accept connections.
START_TIMEOUT = 30.0


@dataclass
class PostgresServer:
    """A running test server: where it listens, and a way to make databases."""

    host: str
    port: int
    datadir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL for ``database`` as the superuser ``postgres``."""
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a fresh random name by default); return its URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending any session still connected to it."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log(self) -> str:
        """Everything the server logged so far."""
        return self.log_path.read_text(errors="replace")


def _as_postgres() -> list[str]:
    """The command prefix that runs a program as a user PostgreSQL accepts."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


@contextlib.contextmanager
def postgres_server(host: str = "127.0.0.1", *, keep: Path | None = None,
                    settings: dict[str, str] | None = None) -> Iterator[PostgresServer]:
    """Run a throw-away PostgreSQL; yield it; stop it and remove its files on exit.

    ``keep``: a directory whose server is kept between runs (a benchmark's cached
    data): initialised when new, reused when there, never removed. ``settings``: more
    ``-c`` settings (e.g. ``shared_buffers``).
    """
    base = keep if keep is not None else Path(tempfile.mkdtemp(prefix="kzr-pg-"))
    base.mkdir(parents=True, exist_ok=True)
    datadir, sockdir = base / "data", base / "sock"
    sockdir.mkdir(exist_ok=True)
    log_path = base / "postgres.log"
    log_path.touch()
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (base, sockdir, log_path):
            os.chown(path, user.pw_uid, user.pw_gid)
    proc: subprocess.Popen[bytes] | None = None
    extra = [a for k, v in (settings or {}).items() for a in ("-c", f"{k}={v}")]
    try:
        if not (datadir / "PG_VERSION").exists():
            subprocess.run(
                [*_as_postgres(), str(PG_BIN / "initdb"), "-D", str(datadir), "-U", "postgres",
                 "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
        port = free_port()
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [*_as_postgres(), str(PG_BIN / "postgres"), "-D", str(datadir),
                 "-h", host, "-p", str(port), "-k", str(sockdir),
                 # Tests only: nothing here must survive a crash, so skip the syncing.
                 "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=200", *extra],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        server = PostgresServer(host, port, datadir, proc, log_path)
        _wait_ready(server)
        yield server
    finally:
        if proc is not None and proc.poll() is None:
            # SIGINT is PostgreSQL's "fast" shutdown: ends sessions, stops at once.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)


def _wait_ready(server: PostgresServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"postgres exited ({server.proc.returncode}):\n{server.log()}")
        try:
            with psycopg.connect(server.url(), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres not ready after {START_TIMEOUT}s:\n"
                                   f"{server.log()}") from None
            time.sleep(0.1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's server; dropped after the test."""
    url = pg_server.create_database()
    try:
        yield url
    finally:
        pg_server.drop_database(url.rsplit("/", 1)[1])


__all__ = ["PG_BIN", "PostgresServer", "pg_server", "pg_url", "postgres_server"]
