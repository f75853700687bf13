"""The word index's reads and writes on a connection (the catalog's I/O for search by words).

:class:`TextIndex` is used by :class:`~kzr_wsgi.catalog.facade.Catalog`, which owns the
connections: every method takes one. The statements are in :mod:`.text`, the plans
that find a page in :mod:`.textplans`, the grammar in :mod:`.words`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .backends.base import Backend
from .rows import Row
from .schema import SEGMENTS, TABLE, TEXT_PARTS
from .search import Query, micros
from .text import (
    Match,
    SegmentRow,
    Speakers,
    create_part,
    fts_any,
    fts_delete,
    fts_insert,
    last_key,
    matches,
    part_name,
    pg_segments_holding,
    segment_key,
    segments_at,
    segments_of,
)
from .textplans import PostgresPlans, SQLitePlans, Statements
from .words import TextQuery, fts5_terms


@dataclass
class ScrubResult:
    """What :meth:`TextIndex.scrub` did, and the longest it held the write lock."""

    #: Segments deleted (of recordings whose rows were still there, or left behind).
    segments: int = 0
    #: SQLite: the monthly FTS5 tables rewritten without the deleted words.
    merged: list[str] = field(default_factory=list)
    #: Seconds of the longest single write transaction (a merge of one table).
    longest_lock_s: float = 0.0
    #: Seconds in all.
    total_s: float = 0.0


class TextIndex(Statements):
    """The segments of transcripts, and the search by words, on ``backend``'s database."""

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend)
        self.sqlite = backend.dialect == "sqlite"
        #: How a page is found (:mod:`.textplans`).
        self.plans = SQLitePlans(backend) if self.sqlite else PostgresPlans(backend)

    # -- writing (inside the caller's transaction) -----------------------------------------

    def put(self, conn: Any, row_id: str, segments: Sequence[SegmentRow]) -> bool:
        """Replace the recording's segments; ``False`` (nothing written) without its row."""
        lock = "" if self.sqlite else " FOR UPDATE"
        found = self._all(conn, f"SELECT sort_us FROM {TABLE} WHERE id = :id{lock}",
                          {"id": row_id})
        if not found:
            return False
        self.remove(conn, row_id)
        sort_us = int(found[0][0])
        values: list[dict[str, Any]] = [
            {"recording": row_id, "sort_us": sort_us, "start_ms": s.start_ms,
             "end_ms": s.end_ms, "channel": s.channel, "text": s.text, "words": s.words}
            for s in segments]
        if not values:
            return True
        columns = "recording, sort_us, start_ms, end_ms, channel, text, words"
        if self.sqlite:
            first = self._first_free(conn, sort_us, len(values))
            for n, v in enumerate(values):
                v["seq"] = first + n
            columns = "seq, " + columns
        insert = (f"INSERT INTO {SEGMENTS} ({columns}) VALUES "
                  f"({', '.join(':' + c.strip() for c in columns.split(','))})")
        cur = conn.cursor()
        try:
            cur.executemany(self.backend.sql(insert), values)
            if self.sqlite:
                name = part_name(int(values[0]["seq"]))
                self._ensure_part(conn, name)
                cur.executemany(self.backend.sql(fts_insert(name)),
                                [{"seq": v["seq"], "words": v["words"]} for v in values])
        finally:
            cur.close()
        return True

    def _first_free(self, conn: Any, sort_us: int, n: int) -> int:
        """SQLite: the first of ``n`` free consecutive keys in ``sort_us``'s second."""
        lo, hi = segment_key(sort_us), last_key(sort_us)
        top = self._all(conn, f"SELECT MAX(seq) FROM {SEGMENTS} WHERE seq BETWEEN :lo AND :hi",
                        {"lo": lo, "hi": hi})[0][0]
        first = lo if top is None else int(top) + 1
        if first + n - 1 > hi:
            raise OverflowError("more segments in one second than a key can number")
        return first

    def _ensure_part(self, conn: Any, name: str) -> None:
        if not self._all(conn, f"SELECT 1 FROM {TEXT_PARTS} WHERE name = :n", {"n": name}):
            for statement in create_part(name):
                self._exec(conn, statement).close()

    def remove(self, conn: Any, row_id: str) -> int:
        """Delete the recording's segments; how many there were.

        SQLite: each is taken out of its FTS5 table too, which marks the table *dirty*:
        until :meth:`scrub` merges it, its index still holds the deleted words' bytes.
        """
        if not self.sqlite:
            cur = self._exec(conn, f"DELETE FROM {SEGMENTS} WHERE recording = :id",
                             {"id": row_id})
            try:
                return int(cur.rowcount)
            finally:
                cur.close()
        found = self._all(conn, f"SELECT seq, words FROM {SEGMENTS} WHERE recording = :id",
                          {"id": row_id})
        by_part: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for seq, words in found:
            by_part[part_name(int(seq))].append({"seq": int(seq), "words": words})
        cur = conn.cursor()
        try:
            for name, rows in by_part.items():
                cur.executemany(self.backend.sql(fts_delete(name)), rows)
                cur.execute(self.backend.sql(f"UPDATE {TEXT_PARTS} SET dirty = 1"
                                             " WHERE name = :n"), {"n": name})
            if found:
                cur.execute(self.backend.sql(f"DELETE FROM {SEGMENTS} WHERE recording = :id"),
                            {"id": row_id})
        finally:
            cur.close()
        return len(found)

    # -- reading ----------------------------------------------------------------------------

    def segments(self, conn: Any, ids: Sequence[str]) -> dict[str, list[SegmentRow]]:
        """The segments of each recording in ``ids``, in time order."""
        out: dict[str, list[SegmentRow]] = defaultdict(list)
        for start in range(0, len(ids), 500):
            params: dict[str, Any] = {}
            sql = segments_of(ids[start:start + 500], params)
            for rec, start_ms, end_ms, channel, text, words in self._all(conn, sql, params):
                out[rec].append(SegmentRow(int(start_ms), int(end_ms), channel, text, words))
        return out

    def matches(self, conn: Any, rows: Sequence[Row], query: TextQuery,
                speaker: Speakers) -> dict[str, tuple[Match, ...]]:
        """Each row's matches (up to three segments, time order, with snippets)."""
        found = (self._matching(conn, rows, query) if self.sqlite
                 else self._pg_matching(conn, [r.id for r in rows], query))
        return {r.id: matches(r, found.get(r.id, ()), query, speaker) for r in rows}

    def _pg_matching(self, conn: Any, ids: Sequence[str], query: TextQuery
                     ) -> dict[str, list[SegmentRow]]:
        """PostgreSQL: the segments of ``ids`` that hold a term, in time order (only
        those leave the server)."""
        out: dict[str, list[SegmentRow]] = defaultdict(list)
        for start in range(0, len(ids), 500):
            params: dict[str, Any] = {}
            sql = pg_segments_holding(ids[start:start + 500], query, params)
            for rec, start_ms, end_ms, channel, text, words in self._all(conn, sql, params):
                out[rec].append(SegmentRow(int(start_ms), int(end_ms), channel, text, words))
        return out

    def _matching(self, conn: Any, rows: Sequence[Row], query: TextQuery
                  ) -> dict[str, list[SegmentRow]]:
        """SQLite: the rows' segments that the index says hold a term, in time order
        (what :func:`~.text.matches` then confirms and makes snippets of): one index
        read over each row's second, and only those segments' rows read, not every
        segment of every row on the page."""
        known = {str(r[0]) for r in self._all(conn, f"SELECT name FROM {TEXT_PARTS}")}
        match = " OR ".join(fts5_terms(query))
        seqs: list[int] = []
        for row in rows:
            sort_us = micros(row.sort_at)
            lo, hi = segment_key(sort_us), last_key(sort_us)
            if part_name(lo) in known:
                seqs += [int(r[0]) for r in self._all(conn, fts_any(part_name(lo)),
                                                       (match, lo, hi))]
        ids = {r.id for r in rows}
        out: dict[str, list[SegmentRow]] = defaultdict(list)
        for start in range(0, len(seqs), 500):
            for rec, start_ms, end_ms, channel, text, words in self._all(
                    conn, segments_at(seqs[start:start + 500])):
                if rec in ids:
                    out[rec].append(SegmentRow(int(start_ms), int(end_ms), channel, text, words))
        return out

    def search(self, conn: Any, query: Query, text: TextQuery, snapshot: int | None) -> list[Row]:
        """Up to ``query.limit + 1`` rows matching ``query`` and ``text``, in the order."""
        return self.plans.search(conn, query, text, snapshot)

    # -- erasing -----------------------------------------------------------------------------

    def scrub(self, conn: Any, row_ids: Iterable[str]) -> ScrubResult:
        """Delete the recordings' segments, then leave none of their words' bytes behind.

        SQLite: every dirty FTS5 table is merged (``optimize``: rewritten without the
        deleted entries), one transaction each, and the write-ahead log checkpointed and
        truncated; ``secure_delete`` (set on every catalog connection) has zeroed what
        was freed. PostgreSQL: the tables are vacuumed (the manual says what WAL
        archives, replicas and backups still hold).
        """
        result = ScrubResult()
        started = time.perf_counter()
        with self.backend.transaction(conn):
            for row_id in row_ids:
                result.segments += self.remove(conn, row_id)
        result.longest_lock_s = time.perf_counter() - started
        if not self.sqlite:
            for table in (SEGMENTS, TABLE):
                self._exec(conn, f"VACUUM {table}").close()
            result.total_s = time.perf_counter() - started
            return result
        dirty = [str(r[0]) for r in self._all(conn, f"SELECT name FROM {TEXT_PARTS}"
                                              " WHERE dirty = 1 ORDER BY name")]
        for name in dirty:
            began = time.perf_counter()
            with self.backend.transaction(conn):
                self._exec(conn, f"INSERT INTO {name} ({name}) VALUES ('optimize')").close()
                self._exec(conn, f"UPDATE {TEXT_PARTS} SET dirty = 0 WHERE name = ?",
                           (name,)).close()
            result.merged.append(name)
            result.longest_lock_s = max(result.longest_lock_s, time.perf_counter() - began)
        busy, _, _ = self._all(conn, "PRAGMA wal_checkpoint(TRUNCATE)")[0]
        if busy:
            raise RuntimeError("the write-ahead log could not be checkpointed: a reader "
                               "held it; run the scrub again")
        result.total_s = time.perf_counter() - started
        return result
