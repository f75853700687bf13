"""The catalog's connections: one per thread, per process, never used across a ``fork``;
and the :class:`Transaction` a statement runs in.

gunicorn forks its workers from a master that built the app, and a DB-API connection
must not be shared by two processes (for PostgreSQL both would talk over one session).
:class:`Connections` tags each connection with the process that opened it; a process
that finds one opened by its parent leaves it alone (never closed, which for
PostgreSQL would end the parent's session) and opens its own.

>>> from kzr_wsgi.catalog.backends.sqlite import SQLiteBackend
>>> connections = Connections(SQLiteBackend("/tmp/catalog.sqlite3"))   # doctest: +SKIP
>>> connections.get().execute("SELECT 1").fetchone()                   # doctest: +SKIP
(1,)
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from .backends.base import Backend

log = logging.getLogger("kzr_wsgi.catalog")


class Connections:
    """The connections one catalog has opened to ``backend``: this thread's, on demand."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._local = threading.local()
        self._lock = threading.Lock()
        #: Every connection opened, by (pid, thread id), so close() can close them all.
        self._conns: dict[tuple[int, int], Any] = {}
        #: Connections inherited across a fork: kept referenced, never closed or used.
        self._inherited: list[Any] = []

    def get(self) -> Any:
        """The calling thread's connection in this process, opened on first use."""
        pid = os.getpid()
        held = getattr(self._local, "held", None)
        if held is not None and held[0] == pid:
            return held[1]
        with self._lock:
            # Opened before a fork: the parent owns them. Never close or use them.
            for k in [k for k in self._conns if k[0] != pid]:
                self._inherited.append(self._conns.pop(k))
        conn = self.backend.connect()
        key = (pid, threading.get_ident())
        with self._lock:
            # A thread id can be reused after a thread ended: its connection goes.
            old = self._conns.pop(key, None)
            self._conns[key] = conn
        if old is not None:
            close_quietly(old)
        self._local.held = (pid, conn)
        return conn

    def drop(self) -> None:
        """Forget this thread's connection (after an error), closing it if it still can."""
        held = getattr(self._local, "held", None)
        self._local.held = None
        if held is None or held[0] != os.getpid():
            return
        with self._lock:
            self._conns.pop((held[0], threading.get_ident()), None)
        close_quietly(held[1])

    def close(self) -> None:
        """Close every connection this process opened (in any thread)."""
        pid = os.getpid()
        with self._lock:
            mine = [k for k in self._conns if k[0] == pid]
            conns = [self._conns.pop(k) for k in mine]
        for conn in conns:
            close_quietly(conn)
        self._local = threading.local()


def close_quietly(conn: Any) -> None:
    """Close ``conn``; a failure to (a connection already broken) is only logged at DEBUG."""
    try:
        conn.close()
    except Exception:
        log.debug("closing a catalog connection failed", exc_info=True)


class Transaction:
    """One transaction's cursor, taking statements with ``:name`` parameters."""

    def __init__(self, cursor: Any, backend: Backend) -> None:
        self._cursor = cursor
        self._backend = backend

    def execute(self, sql: str, params: Mapping[str, Any]) -> int:
        """Run one statement; how many rows it changed."""
        self._cursor.execute(self._backend.sql(sql), params)
        return int(self._cursor.rowcount or 0)

    def executemany(self, sql: str, params: Sequence[Mapping[str, Any]]) -> None:
        """Run one statement for each set of parameters (none: nothing)."""
        if params:
            self._cursor.executemany(self._backend.sql(sql), params)

    def fetchall(self, sql: str, params: Mapping[str, Any]) -> list[Any]:
        """Run a query; every row it gives."""
        self._cursor.execute(self._backend.sql(sql), params)
        return list(self._cursor.fetchall())
