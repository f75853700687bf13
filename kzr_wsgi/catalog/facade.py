"""The catalog itself: one class over either database (driver-independent).

:class:`Catalog` holds a :class:`~kzr_wsgi.catalog.backends.base.Backend`
(:mod:`~kzr_wsgi.catalog.backends.sqlite` or :mod:`~kzr_wsgi.catalog.backends.postgres`),
which knows only how to connect and where its driver differs; every statement is
written once (here, in :mod:`.codec` and in :mod:`.search`) with ``:name`` parameters.

**Connections** are :class:`~kzr_wsgi.catalog.connections.Connections`' (one per
thread, per process, never used across a ``fork``). After a connection error the
connection is dropped and the statement tried once more on a new one. The schema is
brought up to date (:func:`~kzr_wsgi.catalog.migrations.migrate`) before first use.

**Write failures** are the caller's to survive: the stores call
:meth:`Catalog.add_stored`, which logs, counts (:data:`WRITE_FAILURES`) and returns
``None`` instead of raising, so a catalog that is down never fails an upload.

**The queue** (:mod:`~kzr_wsgi.catalog.jobs`) is in the same database: each row's
``analyse`` job is written in the row's own transaction (while :attr:`Catalog.pipeline`
is on), and a row read back carries its job's state (``Row.analysis``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from ..naming import STATE_DIR
from .analysis import ANALYSE, Origin, Restored
from .backends.base import Backend
from .backends.sqlite import SQLiteBackend
from .codec import SELECT_COLUMNS, UPSERT, row_from_db, write_params
from .connections import Connections, Transaction
from .jobs import INSERT_JOB, RESTORE_JOB, JobQueue, job_params, now_us, set_analysis_flags
from .migrations import migrate
from .rows import Row, row_from_record, row_id
from .schema import JOBS_TABLE, OWED, QUEUED, STATE_TABLE, TABLE, UNQUEUED
from .search import (
    COMMON_PREFIX,
    MAX_LIMIT,
    Page,
    Query,
    count_prefix,
    name_prefix,
    select_count,
    select_page,
)
from .text import Speakers, default_speaker, segment_json, segment_rows
from .textindex import ScrubResult, TextIndex
from .transcripts import states as transcript_states
from .words import parse_query

log = logging.getLogger("kzr_wsgi.catalog")

T = TypeVar("T")

#: Seconds an upload's catalog write is skipped after the database failed to answer.
UNAVAILABLE_FOR = 10.0

#: Where :meth:`Catalog.for_root` keeps a store's catalog, under its root.
ROOT_CATALOG = Path(STATE_DIR) / "catalog.sqlite3"


class WriteFailures:
    """How many catalog writes failed in this process, and who wants to hear of each.

    A metrics exporter hooks in with ``WRITE_FAILURES.hooks.append(counter.inc)``
    (a hook takes the exception; one that raises is logged and ignored).
    """

    def __init__(self) -> None:
        #: Failed writes since the process started.
        self.count = 0
        #: Called with each failure's exception, in the writing thread.
        self.hooks: list[Callable[[BaseException], None]] = []
        self._lock = threading.Lock()

    def record(self, exc: BaseException) -> None:
        """Count one failure and tell the hooks."""
        with self._lock:
            self.count += 1
        for hook in list(self.hooks):
            try:
                hook(exc)
            except Exception:
                log.exception("a catalog write-failure hook failed")


#: The process-wide count of failed catalog writes (see :class:`WriteFailures`).
WRITE_FAILURES = WriteFailures()


class Catalog:
    """The searchable index of what a store holds (see the manual's catalog page).

    >>> catalog = open_catalog("sqlite:////srv/rec/.kzr/catalog.sqlite3")  # doctest: +SKIP
    >>> catalog.search(Query(number="+15555550100")).items                 # doctest: +SKIP
    """

    def __init__(self, backend: Backend, *, connect_now: bool = True) -> None:
        """Open the catalog and bring its schema up to date.

        With ``connect_now=False`` nothing is done until the first use (and retried on
        each use until it works): for a receiver that must start while its catalog is
        out of reach.
        """
        self.backend = backend
        #: Whether each new row's analysis job is written with it (``serve --no-analyze``
        #: turns it off: rows are then written with none wanted).
        self.pipeline = True
        #: The country national forms of a searched number are read in, when the query
        #: names none (``serve --country``: the page's and the API's searches).
        self.country: str | None = None
        self._connections = Connections(backend)
        self._text = TextIndex(backend)
        self._migrated = False
        #: Until when (monotonic) add_stored skips a catalog that just failed to answer.
        self._down_until = 0.0
        if connect_now:
            self._migrate()

    @classmethod
    def for_root(cls, root: str | os.PathLike[str]) -> Catalog:
        """The SQLite catalog of the store at ``root`` (``ROOT/.kzr/catalog.sqlite3``)."""
        path = Path(root).absolute() / ROOT_CATALOG
        return cls(SQLiteBackend(path))

    def __repr__(self) -> str:
        return f"Catalog({self.backend.safe_url()!r})"

    @property
    def url(self) -> str:
        """Where the catalog is (a password masked)."""
        return self.backend.safe_url()

    # -- writing ----------------------------------------------------------------------

    def add(self, record: Mapping[str, Any], location: str | None = None) -> Row:
        """Add (or update) the row for a sidecar dict; idempotent by :func:`row_id`."""
        row = row_from_record(record, location)
        self.add_rows([row])
        return row

    def add_rows(self, rows: Iterable[Row], *, origin: Origin = Origin.UPLOAD,
                 restored: Mapping[str, Restored] | None = None) -> int:
        """Upsert many rows in one transaction, with their analysis jobs; return how many.

        While :attr:`pipeline` is on, each row's ``analyse`` job is queued in the same
        transaction (``origin`` says why; a row that has one keeps it). A row in
        ``restored`` (row id -> what the files beside it say, ``reindex``) gets its done
        job back instead. Should the jobs fail to be written (a queue that
        cannot be written), the rows are written alone, marked as owed a job, which
        :meth:`JobQueue.repair <kzr_wsgi.catalog.jobs.JobQueue.repair>` writes later: a
        row never waits on the queue.
        """
        rows = list(rows)
        if not rows:
            return 0
        wanted = QUEUED if self.pipeline else UNQUEUED
        try:
            return self._write_rows(rows, wanted, origin, restored or {})
        except self.backend.transient:
            raise
        except Exception as exc:
            if wanted != QUEUED and not restored:
                raise  # no job was to be written: the rows' own failure
            WRITE_FAILURES.record(exc)
            log.error("catalog %s: the analysis queue could not be written (%s); the rows are "
                      "written without their jobs, which start-up repair writes", self.url, exc)
            return self._write_rows(rows, OWED, origin, {})

    def _write_rows(self, rows: list[Row], wanted: int, origin: Origin,
                    restored: Mapping[str, Restored]) -> int:
        now = now_us()

        def run(tx: Transaction) -> int:
            tx.executemany(UPSERT, [write_params(r, QUEUED if r.id in restored else wanted)
                                    for r in rows])
            if wanted == QUEUED:
                tx.executemany(INSERT_JOB, [job_params(r, ANALYSE, origin, now) for r in rows
                                            if r.id not in restored])
            for row in rows:
                done = restored.get(row.id)
                if done is None:
                    continue
                tx.execute(RESTORE_JOB, {
                    "row_id": row.id, "job": ANALYSE, "origin": str(Origin.REINDEX),
                    "sha256": row.sha256, "now": now, "fingerprint": done.fingerprint,
                    "result": json.dumps(dict(done.summary), sort_keys=True),
                    "files": json.dumps(dict(done.files), sort_keys=True)})
                set_analysis_flags(tx, row.id, list(done.summary.get("flags") or ()))
            return len(rows)

        return self.within(run)

    @property
    def jobs(self) -> JobQueue:
        """The queue of ``analyse`` jobs in this catalog (:mod:`~kzr_wsgi.catalog.jobs`)."""
        return JobQueue(self)

    def within(self, work: Callable[[Transaction], T]) -> T:
        """Run ``work`` as one transaction; after a connection error, once more on a new
        connection (``work`` must be safe to run again)."""
        def run(conn: Any) -> T:
            with self.backend.transaction(conn):
                cur = conn.cursor()
                try:
                    return work(Transaction(cur, self.backend))
                finally:
                    cur.close()

        return self._run(run)

    def execute(self, sql: str, params: Mapping[str, Any]) -> int:
        """Run one writing statement on its own (autocommit); how many rows it changed."""
        def run(conn: Any) -> int:
            cur = self._execute(conn, sql, params)
            try:
                return int(cur.rowcount or 0)
            finally:
                cur.close()

        return self._run(run)

    def fetch(self, sql: str, params: Mapping[str, Any]) -> list[Any]:
        """Run a query (``:name`` parameters); every row it gives."""
        return self._fetch(sql, params)

    def add_stored(self, record: Mapping[str, Any], location: str | None = None) -> Row | None:
        """:meth:`add` for a store that just committed: never raises.

        A failure is logged and counted (:data:`WRITE_FAILURES`); ``kzr-wsgi reindex``
        repairs it from the sidecar (the disk store's markers, sooner). After a
        connection failure the catalog is not tried again for :data:`UNAVAILABLE_FOR`
        seconds: an upload never waits on a database that is down.
        """
        where = location or record.get("location") or record.get("path")
        if time.monotonic() < self._down_until:
            WRITE_FAILURES.record(ConnectionError(f"catalog {self.url} unavailable"))
            log.error("catalog %s: unavailable; %s not added (reindex repairs it)",
                      self.url, where)
            return None
        try:
            return self.add(record, location)
        except Exception as exc:
            if isinstance(exc, self.backend.transient):
                self._down_until = time.monotonic() + UNAVAILABLE_FOR
            WRITE_FAILURES.record(exc)
            log.error("catalog %s: could not add %s (reindex repairs it): %s",
                      self.url, where, exc)
            return None

    def remove_stored(self, record: Mapping[str, Any]) -> None:
        """Remove the row of a copy a store took back (a fan-out's rollback): never raises."""
        try:
            self.remove(row_id(record))
        except Exception as exc:
            WRITE_FAILURES.record(exc)
            log.error("catalog %s: could not remove the row of %s (reindex repairs it): %s",
                      self.url, record.get("location") or record.get("path"), exc)

    def remove(self, row_id: str) -> bool:
        """Remove a row, its jobs and its transcript's segments (one transaction);
        ``True`` when there was a row. On SQLite the removed words stay in the search
        index's bytes until :meth:`scrub_text`."""
        def run(conn: Any) -> bool:
            with self.backend.transaction(conn):
                self._text.remove(conn, row_id)
                cur = conn.cursor()
                try:
                    tx = Transaction(cur, self.backend)
                    tx.execute(f"DELETE FROM {JOBS_TABLE} WHERE row_id = :id", {"id": row_id})
                    return tx.execute(f"DELETE FROM {TABLE} WHERE id = :id", {"id": row_id}) > 0
                finally:
                    cur.close()

        return self._run(run)

    # -- transcripts' segments (search by words) --------------------------------------------

    def put_segments(self, row_id: str, segments: Iterable[Any]) -> bool:
        """Replace the recording's transcript segments, atomically; idempotent.

        ``segments``: :class:`kzr_wsgi.transcribe.model.Segment` (or anything with
        ``start``, ``end`` in seconds, ``text`` as redacted, and ``channel``). Returns
        ``False``, writing nothing, when the catalog has no row ``row_id``.
        """
        rows = segment_rows(segments)

        def run(conn: Any) -> bool:
            with self.backend.transaction(conn):
                return self._text.put(conn, row_id, rows)

        return self._run(run)

    def remove_segments(self, row_id: str) -> int:
        """Delete the recording's segments (its row stays); how many there were."""
        def run(conn: Any) -> int:
            with self.backend.transaction(conn):
                return self._text.remove(conn, row_id)

        return self._run(run)

    def segments(self, row_id: str, speaker: Speakers = default_speaker
                 ) -> list[dict[str, Any]]:
        """The recording's segments in time order, for the transcript view:
        ``{"start", "end", "channel", "speaker", "text"}`` (seconds; ``speaker`` from
        ``speaker(row, channel)``). Empty without a row or a transcript."""
        row = self.get(row_id)
        if row is None:
            return []
        found = self._run(lambda conn: self._text.segments(conn, [row_id]))
        return [segment_json(row, s, speaker) for s in found.get(row_id, ())]

    def scrub_text(self, row_ids: Iterable[str] = ()) -> ScrubResult:
        """Delete these recordings' segments (if any are left) and leave no byte of any
        deleted segment's words in the database: see :meth:`TextIndex.scrub
        <kzr_wsgi.catalog.textindex.TextIndex.scrub>`. One batch per erase."""
        ids = list(row_ids)
        return self._run(lambda conn: self._text.scrub(conn, ids))

    # -- reading ----------------------------------------------------------------------

    def get(self, row_id: str) -> Row | None:
        """The row with this id, or ``None``."""
        found = self._fetch(f"SELECT {SELECT_COLUMNS} FROM {TABLE} WHERE id = :id", {"id": row_id})
        return self.with_analysis([row_from_db(found[0])])[0] if found else None

    def with_analysis(self, rows: list[Row]) -> list[Row]:
        """``rows`` with their analysis and transcription (their jobs' states) attached."""
        if not rows:
            return rows
        ids = [row.id for row in rows]
        states = self.jobs.states(ids)
        transcripts = transcript_states(self, ids)
        return [replace(row, analysis=states.get(row.id), transcript=transcripts.get(row.id))
                for row in rows]

    def search(self, query: Query, speaker: Speakers = default_speaker) -> Page:
        """One page of rows matching ``query``, newest first (see :class:`Query`).

        With ``query.text``, each row's matches too (``speaker(row, channel)`` names
        who spoke; by default from :data:`~kzr_wsgi.catalog.text.DEFAULT_SPEAKERS`).
        """
        query = self._in_country(query)
        snapshot = query.max_seq if query.max_seq is not None else self.max_seq()
        if snapshot is None:
            return Page([], None)
        text = parse_query(query.text or "")
        if text:
            rows = self._run(lambda conn: self._text.search(conn, query, text, snapshot))
        else:
            rows = self._plain_page(query, snapshot)
        page = self.with_analysis(rows[: query.limit])
        found = {}
        if text and page:
            found = self._run(lambda conn: self._text.matches(conn, page, text, speaker))
        after = None
        if len(rows) > query.limit:
            after = replace(query, after=(page[-1].sort_at, page[-1].id), max_seq=snapshot)
        return Page(page, after, found)

    def _in_country(self, query: Query) -> Query:
        """``query``, reading numbers in :attr:`country` when it names no country."""
        if query.country is None and self.country is not None:
            return replace(query, country=self.country)
        return query

    def _plain_page(self, query: Query, snapshot: int) -> list[Row]:
        """Up to ``limit + 1`` rows of a search without words."""
        common = False
        if query.q and query.q.strip():
            low, high = name_prefix(query.q)
            found = self._fetch(count_prefix(), {"qlo": low, "qhi": high,
                                                 "k": COMMON_PREFIX})
            common = int(found[0][0]) >= COMMON_PREFIX
        sql, params = select_page(query, snapshot, common)
        return [row_from_db(r) for r in self._fetch(sql, params)]

    def iter_search(self, query: Query) -> Iterator[Row]:
        """Every row matching ``query``, page by page (``limit`` is the page size)."""
        next_query: Query | None = query
        while next_query is not None:
            page = self.search(next_query)
            yield from page.items
            next_query = page.next

    def count(self, query: Query | None = None) -> int:
        """How many rows match ``query`` (its ``after`` and ``limit`` aside).

        With words, the rows are found page by page (a search by words has no cheap count).
        """
        query = self._in_country(replace(query or Query(), after=None))
        if parse_query(query.text or ""):
            return sum(1 for _ in self.iter_search(replace(query, limit=MAX_LIMIT)))
        sql, params = select_count(query)
        return int(self._fetch(sql, params)[0][0])

    def max_seq(self) -> int | None:
        """The newest row's ``seq`` (``None`` when empty): a snapshot for paging."""
        value = self._fetch(f"SELECT MAX(seq) FROM {TABLE}", {})[0][0]
        return None if value is None else int(value)

    def ids(self) -> set[str]:
        """Every row's id (for ``reindex``, which removes rows whose sidecar is gone)."""
        return {str(r[0]) for r in self._fetch(f"SELECT id FROM {TABLE}", {})}

    def locations(self) -> dict[str, str]:
        """Every row's id and location."""
        return {str(r[0]): str(r[1])
                for r in self._fetch(f"SELECT id, location FROM {TABLE}", {})}

    def get_state(self, name: str) -> str | None:
        """A named fact about the catalog (``None`` when unset)."""
        found = self._fetch(f"SELECT value FROM {STATE_TABLE} WHERE name = :name",
                            {"name": name})
        return None if not found else str(found[0][0])

    def set_state(self, name: str, value: str | None) -> None:
        """Set (or with ``None`` clear) a named fact about the catalog."""
        def run(conn: Any) -> None:
            with self.backend.transaction(conn):
                self._execute(conn, f"DELETE FROM {STATE_TABLE} WHERE name = :name",
                              {"name": name}).close()
                if value is not None:
                    self._execute(conn, f"INSERT INTO {STATE_TABLE} (name, value) "
                                  "VALUES (:name, :value)", {"name": name, "value": value}
                                  ).close()

        self._run(run)

    # -- the other tables (the search page's sessions, shares, ...) ---------------------

    def select(self, sql: str, params: Mapping[str, Any]) -> list[Any]:
        """The rows of one ``SELECT`` written with ``:name`` parameters, as tuples.

        For tables of the catalog's schema other than the recordings (the search page's,
        :mod:`kzr_wsgi.ui.tables`); retried once on a new connection, as every read is.
        """
        return self._fetch(sql, params)

    def write(self, *steps: tuple[str, Mapping[str, Any]]) -> list[int]:
        """Run ``(sql, params)`` statements in one transaction; each one's row count."""
        def run(conn: Any) -> list[int]:
            counts = []
            with self.backend.transaction(conn):
                for sql, params in steps:
                    cur = self._execute(conn, sql, params)
                    try:
                        counts.append(int(cur.rowcount))
                    finally:
                        cur.close()
            return counts

        return self._run(run)

    # -- connections ------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection this process opened (in any thread)."""
        self._connections.close()

    def release(self) -> None:
        """Close the calling thread's connection, if it has one (it reopens on next use).

        For code that runs once and must hold nothing afterwards: a start-up in
        gunicorn's master before it forks, a housekeeping pass.
        """
        self._connections.drop()

    def _connection(self) -> Any:
        if not self._migrated:
            self._migrate()
        return self._connections.get()

    def _run(self, work: Callable[[Any], T]) -> T:
        """Run ``work(connection)``; after a connection error, once more on a new connection."""
        try:
            return work(self._connection())
        except self.backend.transient as exc:
            log.warning("catalog %s: %s; reconnecting", self.url, exc)
            self._connections.drop()
            return work(self._connection())

    def _execute(self, conn: Any, sql: str, params: Mapping[str, Any]) -> Any:
        cur = conn.cursor()
        cur.execute(self.backend.sql(sql), params)
        return cur

    def _fetch(self, sql: str, params: Mapping[str, Any]) -> list[Any]:
        def run(conn: Any) -> list[Any]:
            cur = self._execute(conn, sql, params)
            try:
                return list(cur.fetchall())
            finally:
                cur.close()

        return self._run(run)

    def _migrate(self) -> None:
        """Create or bring the schema up to date (on a connection of its own)."""
        migrate(self.backend)
        self._migrated = True
