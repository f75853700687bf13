"""The word index's reads and writes on a connection (the catalog's I/O for search by words).

:class:`TextIndex` is used by :class:`~kzr_wsgi.catalog.facade.Catalog`, which owns the
connections: every method takes one. The statements are in :mod:`.text` and
:mod:`.search`; the grammar in :mod:`.words`.

**The plans.** A search by words finds its page one of two ways:

- *by the words*: the index's matches of the rarest term, newest first, each
  recording then checked against the other filters and terms;
- *in the listing's order*: the rows passing the other filters, newest first, each
  checked for the words.

The first is fast for a rare word and for a common word with few other filters; the
second for a word of any frequency among few rows (an account's month). SQLite reads
both incrementally (its FTS5 tables are keyed in time order, see :mod:`.text`) and
runs them side by side, a step of each in turn by the time each has used, until one
has filled the page: never slower than twice the better plan, with no estimate that
could be wrong. PostgreSQL's GIN index gives its matches in no order, so collecting
them costs what the word's frequency costs: the planner's statistics of the
``tsvector`` column estimate it, and of the other filters, and the cheaper plan runs
(:meth:`TextIndex.choose_collect`).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .backends.base import Backend
from .codec import row_from_db
from .rows import Row
from .schema import COLUMNS, SEGMENTS, TABLE, TEXT_PARTS
from .search import Query, micros, where_clause
from .text import (
    SECOND_SHIFT,
    Match,
    SegmentRow,
    Speakers,
    create_part,
    fts_any,
    fts_delete,
    fts_insert,
    fts_walk,
    key_spans,
    key_window,
    last_key,
    matches,
    part_name,
    pg_estimate,
    pg_search,
    rows_in,
    second_of,
    segment_key,
    segments_of,
)
from .words import TextQuery, fts5_terms, pg_terms

#: The most index matches read per step of the plan by the words.
MAX_HITS_PER_STEP = 64
#: Rows read per step of the plan in the listing's order.
ROWS_PER_STEP = 32
#: Matches of the most common term at which the count that chooses the lead term stops.
PROBE = 2000
#: PostgreSQL: relative cost of testing a row for a word, against reading a match from
#: the GIN index (measured at a million recordings: see the manual's performance page).
WALK_COST = 10.0

#: A recording's place in the order: ``(sort_us, id)``.
Key = tuple[int, str]
#: A plan: stepped by ``next()``, returning the keys of up to ``limit + 1`` rows.
Step = Generator[None, None, list[Key]]


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


class TextIndex:
    """The segments of transcripts, and the search by words, on ``backend``'s database."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.sqlite = backend.dialect == "sqlite"

    def _exec(self, conn: Any, sql: str, params: Any = ()) -> Any:
        cur = conn.cursor()
        cur.execute(self.backend.sql(sql) if isinstance(params, dict) else sql, params)
        return cur

    def _all(self, conn: Any, sql: str, params: Any = ()) -> list[Any]:
        cur = self._exec(conn, sql, params)
        try:
            return list(cur.fetchall())
        finally:
            cur.close()

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
        found = self.segments(conn, [r.id for r in rows])
        return {r.id: matches(r, found.get(r.id, ()), query, speaker) for r in rows}

    def search(self, conn: Any, query: Query, text: TextQuery, snapshot: int | None) -> list[Row]:
        """Up to ``query.limit + 1`` rows matching ``query`` and ``text``, in the order."""
        if not self.sqlite:
            return self._pg_search(conn, query, text, snapshot)
        keys = race([self.by_words(conn, query, text, snapshot),
                     self.in_order(conn, query, text, snapshot)])
        if not keys:
            return []
        params: dict[str, Any] = {}
        found = {r.id: r for r in (row_from_db(v) for v in self._all(
            conn, rows_in([k[1] for k in keys], "1 = 1", params), params))}
        return [found[k[1]] for k in keys if k[1] in found]

    # -- SQLite's two plans ----------------------------------------------------------------

    def by_words(self, conn: Any, query: Query, text: TextQuery, snapshot: int | None) -> Step:
        """SQLite: the lead term's index matches, newest first (see the module docstring).

        Reads more matches per step as it goes: a page of a common word is in the
        first few, a rare word's matches are all read anyway."""
        where, params = where_clause(query, snapshot)
        want = query.limit + 1
        window = key_window(_us(query.since), _us(query.until),
                            _us(query.after[0]) if query.after else None)
        parts = [p for p in self._parts(conn) if p[2] >= window[0] and p[1] <= window[1]]
        terms = fts5_terms(text)
        lead = self._lead(conn, terms, parts, window) if len(terms) > 1 else 0
        others = terms[:lead] + terms[lead + 1:]
        known = {p[0] for p in parts}
        kept: list[Key] = []
        seen: set[str] = set()
        step = want + 8
        for name, lo, hi in reversed(parts):
            cur = self._exec(conn, fts_walk(name), {"match": terms[lead],
                                                    "lo": max(lo, window[0]),
                                                    "hi": min(hi, window[1])})
            try:
                while hits := cur.fetchmany(step):
                    step = min(step * 2, MAX_HITS_PER_STEP)
                    fresh = list(dict.fromkeys(r for _, r in hits if r not in seen))
                    seen.update(fresh)
                    kept += self._check(conn, self._keys_in(conn, fresh, where, params),
                                        others, known)
                    if len(kept) >= want:
                        kept = sorted(kept, reverse=True)[:want]
                        if int(hits[-1][0]) >> SECOND_SHIFT < second_of(kept[-1][0]):
                            return kept
                    yield
            finally:
                cur.close()
        return sorted(kept, reverse=True)[:want]

    def in_order(self, conn: Any, query: Query, text: TextQuery, snapshot: int | None) -> Step:
        """SQLite: the rows passing the other filters, newest first, checked for the words."""
        where, params = where_clause(query, snapshot)
        kept: list[Key] = []
        want = query.limit + 1
        known = {p[0] for p in self._parts(conn)}
        terms = fts5_terms(text)
        cur = self._exec(conn, f"SELECT sort_us, id FROM {TABLE} WHERE {where}"
                         " ORDER BY sort_us DESC, id DESC", params)
        try:
            while len(kept) < want:
                batch = [(int(u), str(i)) for u, i in cur.fetchmany(ROWS_PER_STEP)]
                if not batch:
                    break
                kept += self._check(conn, batch, terms, known)[:want - len(kept)]
                yield
        finally:
            cur.close()
        return kept

    def _keys_in(self, conn: Any, ids: list[str], where: str,
                 params: dict[str, Any]) -> list[Key]:
        """The ``(sort_us, id)`` of the recordings among ``ids`` that pass ``where``."""
        if not ids:
            return []
        mine = dict(params)
        return [(int(u), str(i)) for u, i in self._all(
            conn, rows_in(ids, where, mine, "sort_us, id"), mine)]

    def _check(self, conn: Any, keys: list[Key], terms: list[str], known: set[str]
               ) -> list[Key]:
        """The recordings whose segments hold every one of ``terms`` (FTS5 strings).

        A recording's segments have consecutive keys: each term is one index lookup
        over them (``known``: the FTS5 tables that exist)."""
        if not terms or not keys:
            return keys
        params: dict[str, Any] = {}
        spans = {str(r): (int(lo), int(hi)) for r, lo, hi in self._all(
            conn, key_spans([k[1] for k in keys], params), params)}
        out = []
        for key in keys:
            span = spans.get(key[1])
            name = part_name(span[0]) if span else ""
            if span and name in known and all(
                    self._all(conn, fts_any(name), (term, *span)) for term in terms):
                out.append(key)
        return out

    def _parts(self, conn: Any) -> list[tuple[str, int, int]]:
        return [(str(n), int(lo), int(hi)) for n, lo, hi in
                self._all(conn, f"SELECT name, lo, hi FROM {TEXT_PARTS} ORDER BY lo")]

    def _lead(self, conn: Any, terms: list[str], parts: list[tuple[str, int, int]],
              window: tuple[int, int]) -> int:
        """The term with the fewest matches among the newest ones: every term is counted
        in the same tables, newest first, until one has :data:`PROBE` matches."""
        counts = [0] * len(terms)
        for name, lo, hi in reversed(parts):
            for i, term in enumerate(terms):
                counts[i] += self._all(
                    conn, f"SELECT count(*) FROM (SELECT rowid FROM {name} WHERE {name}"
                    " MATCH ? AND rowid BETWEEN ? AND ? LIMIT ?)",
                    (term, max(lo, window[0]), min(hi, window[1]), PROBE))[0][0]
            if max(counts) >= PROBE:
                break
        return counts.index(min(counts))

    # -- PostgreSQL ------------------------------------------------------------------------

    def _pg_search(self, conn: Any, query: Query, text: TextQuery,
                   snapshot: int | None) -> list[Row]:
        where, params = where_clause(query, snapshot)
        terms = pg_terms(text)
        estimates = [self._estimate(conn, *pg_estimate(t)) for t in terms]
        lead = estimates.index(min(estimates))
        ordered = TextQuery((text.terms[lead], *(t for i, t in enumerate(text.terms)
                                                 if i != lead)))
        collect = self.choose_collect(conn, query, where, params, estimates[lead])
        params["limit"] = query.limit + 1
        upper = [_us(query.until), _us(query.after[0]) if query.after else None]
        bounds = [b for b in upper if b is not None]
        sql = pg_search(ordered, where, params, collect=collect,
                        window=(_us(query.since), min(bounds) if bounds else None))
        return [row_from_db(r) for r in self._all(conn, sql, params)]

    def choose_collect(self, conn: Any, query: Query, where: str, params: dict[str, Any],
                       hits: float) -> bool:
        """PostgreSQL: whether collecting the lead term's ``hits`` (estimated segments)
        costs less than walking the rows the other filters pass until a page is full."""
        total = self._estimate(conn, f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {TABLE}", {})
        passing = self._estimate(conn, f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {TABLE}"
                                 f" WHERE {where}", params)
        walked = min(passing, (query.limit + 1) * total / max(hits, 1.0))
        return hits < walked * WALK_COST

    def _estimate(self, conn: Any, sql: str, params: dict[str, Any]) -> float:
        plan = self._all(conn, sql, params)[0][0]
        if isinstance(plan, str):
            plan = json.loads(plan)
        return float(plan[0]["Plan"]["Plan Rows"])

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


def race(plans: list[Step]) -> list[Key]:
    """Step the plans in turn, the one that has used the least time first, until one
    returns; the others are closed. Each plan's answer is the same: the fastest wins."""
    spent = [0.0] * len(plans)
    try:
        while True:
            i = spent.index(min(spent))
            began = time.perf_counter()
            try:
                next(plans[i])
            except StopIteration as done:
                result: list[Key] = done.value
                return result
            spent[i] += time.perf_counter() - began
    finally:
        for plan in plans:
            plan.close()


def run_plan(plan: Step) -> list[Key]:
    """Run one plan to its end (tests compare each plan with the reference)."""
    return race([plan])


def _us(when: Any) -> int | None:
    return None if when is None else micros(when)


_COLUMNS = ", ".join(COLUMNS)

__all__ = ["ScrubResult", "TextIndex", "race", "run_plan"]
