"""The SQLite backend: the embedded default (``ROOT/.kzr/catalog.sqlite3``).

Safe with several worker processes and several ``serve`` processes on one root:
WAL (readers never block the writer), a busy timeout (writers wait for each other
rather than fail), ``synchronous=NORMAL`` (a row is not synced on its own: the
sidecar is the durable truth, and ``reindex`` rebuilds what a power cut loses),
``secure_delete`` (what is deleted is overwritten with zeros, so an erased number or
transcript word does not stay in the file's free space; see the manual's catalog page).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .base import Backend

#: How long a writer waits for another's lock before failing, in milliseconds.
BUSY_TIMEOUT_MS = 30_000
#: Page cache per connection, in KiB.
CACHE_KIB = 32_768


class SQLiteBackend(Backend):
    """A catalog in one SQLite file (its directory is created when missing)."""

    dialect = "sqlite"
    transient = (sqlite3.OperationalError,)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(f"sqlite:///{self.path}")

    def connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit; transaction() issues BEGIN itself.
        # check_same_thread=False only so that close() may run in any thread: each
        # connection is used by the one thread that opened it.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                               isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        # Deleted rows and freed pages are zeroed: erasing leaves no bytes behind.
        conn.execute("PRAGMA secure_delete = ON")
        # Index pages of a large catalog stay cached (allocated only as used).
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        return conn

    @contextmanager
    def transaction(self, conn: Any) -> Iterator[None]:
        # IMMEDIATE takes the write lock at once (waiting up to the busy timeout), so
        # two writers never deadlock upgrading a read lock.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
