"""The catalog: a searchable index of every stored copy, kept beside the store.

Every upload a store commits becomes a :class:`Row` (written before the reply, so a
search right after a ``2xx`` finds it). The sidecars stay the source of truth: a
catalog that is lost or behind is rebuilt from them (:func:`reindex`).

>>> from kzr_wsgi.catalog import Query, open_catalog
>>> catalog = open_catalog("sqlite:////srv/rec/.kzr/catalog.sqlite3")   # doctest: +SKIP
>>> page = catalog.search(Query(number="+15555550100", flagged=True))   # doctest: +SKIP
>>> [row.call_id for row in page.items]                                 # doctest: +SKIP

URLs: ``sqlite:///PATH`` (a relative PATH; ``sqlite:////abs/path`` for an absolute
one, as SQLAlchemy spells it) or ``postgresql://user:pass@host:port/db`` (extra
``postgres``). See the manual's catalog page (``docs/catalog.md``).
"""

from __future__ import annotations

import os
from pathlib import Path

from .backends.base import Backend
from .backends.sqlite import SQLiteBackend
from .codec import row_from_db
from .facade import ROOT_CATALOG, WRITE_FAILURES, Catalog, WriteFailures
from .rows import Row, clean_text, normalise_number, parse_when, row_from_record, row_id
from .search import Page, Query


def open_catalog(url: str, *, connect_now: bool = True) -> Catalog:
    """The catalog at ``url`` (``sqlite:///PATH`` or ``postgresql://…``), schema up to date.

    Raises ``ValueError`` for a URL of another kind, and (unless ``connect_now`` is
    false: then on first use) the driver's error when the database cannot be reached.
    """
    return Catalog(backend_for(url), connect_now=connect_now)


def backend_for(url: str) -> Backend:
    """The :class:`Backend` a catalog URL names."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not path or path.startswith("?"):
            raise ValueError(f"no file in catalog URL {url!r} (sqlite:///PATH)")
        return SQLiteBackend(Path(os.path.expanduser(path)).absolute())
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from .backends.postgres import PostgresBackend
        except ImportError as exc:
            raise ValueError(
                f"a postgresql:// catalog needs psycopg: pip install 'kzr_wsgi[postgres]' "
                f"({exc})") from exc
        return PostgresBackend(url)
    raise ValueError(f"not a catalog URL: {url!r} (sqlite:///PATH or postgresql://…)")


__all__ = [
    "ROOT_CATALOG",
    "WRITE_FAILURES",
    "Backend",
    "Catalog",
    "Page",
    "Query",
    "Row",
    "WriteFailures",
    "backend_for",
    "clean_text",
    "normalise_number",
    "open_catalog",
    "parse_when",
    "row_from_db",
    "row_from_record",
    "row_id",
]
