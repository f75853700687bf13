"""The PostgreSQL backend: one catalog shared by every receiver on one bucket.

Needs the ``postgres`` extra (``pip install "kzr_wsgi[postgres]"``, psycopg 3).
Each thread of each process has its own connection (autocommit); a connection
that fails is dropped and the statement retried once on a new one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from .base import Backend, translate_named

#: Seconds to wait for the server when connecting.
CONNECT_TIMEOUT = 5
#: An arbitrary constant: the advisory lock that serialises schema migrations.
_MIGRATION_LOCK = 0x6B7A72


class PostgresBackend(Backend):
    """A catalog in a PostgreSQL database named by a ``postgresql://`` URL."""

    dialect = "postgresql"
    transient = (psycopg.OperationalError, psycopg.InterfaceError)
    lock_rows = " FOR UPDATE SKIP LOCKED"

    def connect(self) -> psycopg.Connection[Any]:
        # jit off: the catalog's statements are short, and a plan the planner costs
        # high (a search by words testing a batch of rows) was compiled on every run,
        # 10-50 ms each, more than the statement itself.
        return psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                               application_name="kzr_wsgi", options="-c jit=off")

    def sql(self, text: str) -> str:
        return translate_named(text)

    @contextmanager
    def transaction(self, conn: Any) -> Iterator[None]:
        with conn.transaction():
            yield

    def lock_migrations(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
