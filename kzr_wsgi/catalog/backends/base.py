"""What every catalog backend is: :class:`Backend`, and the parameter-style rewrite.

A backend knows only how to connect and where its database's SQL differs; the
statements themselves are written once, with ``:name`` parameters, by the catalog
(:mod:`kzr_wsgi.catalog.facade`, :mod:`kzr_wsgi.catalog.codec`,
:mod:`kzr_wsgi.catalog.search`).
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from typing import Any

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class Backend:
    """What differs between the databases: connecting, parameters, transactions.

    Subclasses: :class:`~kzr_wsgi.catalog.backends.sqlite.SQLiteBackend`,
    :class:`~kzr_wsgi.catalog.backends.postgres.PostgresBackend`.
    """

    #: ``"sqlite"`` or ``"postgresql"``: which placeholders the schema is filled with.
    dialect = ""
    #: Driver errors after which the connection is dropped and the statement retried once.
    transient: tuple[type[BaseException], ...] = ()
    #: Appended to a ``SELECT`` that claims a row for the transaction (a job of the queue):
    #: PostgreSQL's ``FOR UPDATE SKIP LOCKED``, so claimers on many hosts each get another
    #: row without waiting; nothing for SQLite, whose transaction holds the write lock.
    lock_rows = ""

    def __init__(self, url: str) -> None:
        #: The catalog's URL as given (shown to operators; a password is masked).
        self.url = url

    def connect(self) -> Any:
        """A new DB-API connection in autocommit mode."""
        raise NotImplementedError

    def sql(self, text: str) -> str:
        """``text`` with ``:name`` parameters in the driver's style."""
        return text

    def transaction(self, conn: Any) -> AbstractContextManager[Any]:
        """A context manager that runs its block as one transaction on ``conn``."""
        raise NotImplementedError

    def lock_migrations(self, cur: Any) -> None:
        """Inside the migration transaction: keep other processes from migrating at once."""

    def safe_url(self) -> str:
        """The URL with any password masked."""
        return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", self.url)


def translate_named(sql: str, style: str = "%({})s") -> str:
    """``:name`` parameters in ``sql`` rewritten as ``style`` (``%`` doubled first)."""
    return _PARAM.sub(lambda m: style.format(m.group(1)), sql.replace("%", "%%"))
