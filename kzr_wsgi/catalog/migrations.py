"""Bring a catalog's schema up to date: apply the migrations it has not had yet.

The migrations themselves are in :mod:`kzr_wsgi.catalog.schema` (pure); this module
runs them, in one transaction on a connection of its own, serialised across processes
by the backend (SQLite's write lock, a PostgreSQL advisory lock). The
``kzr_schema_version`` table records how many have been applied.
"""

from __future__ import annotations

import logging

from .backends.base import Backend
from .connections import close_quietly
from .schema import MIGRATIONS, VERSION_TABLE, statements

log = logging.getLogger("kzr_wsgi.catalog")


def migrate(backend: Backend) -> None:
    """Create the schema at ``backend``, or apply the migrations it has not had yet.

    :raises RuntimeError: the database's schema is newer than this kzr_wsgi knows.
    """
    conn = backend.connect()
    try:
        with backend.transaction(conn):
            cur = conn.cursor()
            backend.lock_migrations(cur)
            cur.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER NOT NULL)")
            cur.execute(f"SELECT version FROM {VERSION_TABLE}")
            found = cur.fetchone()
            version = int(found[0]) if found else 0
            if found is None:
                cur.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (0)")
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"catalog {backend.safe_url()} has schema version {version}, newer than "
                    f"this kzr_wsgi knows ({len(MIGRATIONS)}): upgrade kzr_wsgi")
            for n in range(version, len(MIGRATIONS)):
                for statement in statements(MIGRATIONS[n], backend.dialect):
                    cur.execute(statement)
                cur.execute(backend.sql(f"UPDATE {VERSION_TABLE} SET version = :v"),
                            {"v": n + 1})
                log.info("catalog %s: schema migrated to version %d", backend.safe_url(), n + 1)
            cur.close()
    finally:
        close_quietly(conn)
