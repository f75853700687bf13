"""The two ways a search by words finds its page, for each database (see the manual's
catalog page, "How a page is found"). Used by :class:`~kzr_wsgi.catalog.textindex.TextIndex`.

**SQLite** (:class:`SQLitePlans`): *by the words* reads the lead term's FTS5 matches
newest first (the tables are keyed in time order, see :mod:`.text`), each recording
then checked against the other filters and terms; *in order* walks the rows the other
filters pass, newest first, checking each for the words. Both are read incrementally
and :func:`race` steps them in turn, by the time each has used, until one has filled
the page: never slower than twice the better plan, with no estimate that could be wrong.

**PostgreSQL** (:class:`PostgresPlans`): the GIN index gives its matches in no order,
so collecting them costs what the word's frequency costs. The planner's statistics
estimate it, and how many rows the other filters pass, and the cheaper plan runs:
collect the rarest term's recordings then page them, or walk the listing a batch at
a time testing each batch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator
from dataclasses import replace
from typing import Any

from .backends.base import Backend
from .codec import row_from_db
from .rows import Row
from .schema import TABLE, TEXT_PARTS
from .search import MAX_LIMIT, Query, micros, select_page, where_clause
from .text import (
    SECOND_SHIFT,
    fts_own,
    fts_span,
    fts_walk,
    key_window,
    last_key,
    part_name,
    pg_collect,
    pg_estimate,
    pg_holding,
    recordings_of,
    rows_in,
    second_of,
    segment_key,
)
from .words import TextQuery, fts5_terms, pg_terms

#: The index matches read by the first step of the plan by the words (each later step
#: reads twice as many, up to :data:`MAX_HITS_PER_STEP`): few, because each costs a
#: segment's and a recording's row, and when the walk in order wins (one account's
#: month) this step is what it waited for.
FIRST_HITS = 16
#: The most index matches read per step of the plan by the words.
MAX_HITS_PER_STEP = 64
#: Rows read per step of the plan in the listing's order.
ROWS_PER_STEP = 32
#: The most index matches of a step's span of keys read to check its rows at once
#: (per row in the step); past it the rows are checked one at a time.
SPAN_HITS_PER_ROW = 4
#: Matches of the most common term at which the count that chooses the lead term stops.
PROBE = 2000
#: PostgreSQL: relative cost of testing a row for a word, against reading a match from
#: the GIN index (measured at a million recordings: see the manual's performance page).
WALK_COST = 10.0

#: A recording's place in the order: ``(sort_us, id)``.
Key = tuple[int, str]
#: A plan: stepped by ``next()``, returning the keys of up to ``limit + 1`` rows.
Step = Generator[None, None, list[Key]]


class Statements:
    """Runs statements written with ``:name`` (or SQLite's ``?``) parameters."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

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


class SQLitePlans(Statements):
    """SQLite's two plans and the race between them."""

    def search(self, conn: Any, query: Query, text: TextQuery, snapshot: int | None
               ) -> list[Row]:
        """Up to ``query.limit + 1`` rows matching ``query`` and ``text``, in the order."""
        keys = race([self.by_words(conn, query, text, snapshot),
                     self.in_order(conn, query, text, snapshot)])
        if not keys:
            return []
        params: dict[str, Any] = {}
        found = {r.id: r for r in (row_from_db(v) for v in self._all(
            conn, rows_in([k[1] for k in keys], "1 = 1", params), params))}
        return [found[k[1]] for k in keys if k[1] in found]

    def by_words(self, conn: Any, query: Query, text: TextQuery, snapshot: int | None) -> Step:
        """SQLite: the lead term's index matches, newest first (see the module docstring).

        Reads more matches per step as it goes (:data:`FIRST_HITS` first): a page of a
        common word is in the first few, a rare word's matches are all read anyway."""
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
        step = FIRST_HITS
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
        dense = True
        cur = self._exec(conn, f"SELECT sort_us, id FROM {TABLE} WHERE {where}"
                         " ORDER BY sort_us DESC, id DESC", params)
        try:
            while len(kept) < want:
                batch = [(int(u), str(i)) for u, i in cur.fetchmany(ROWS_PER_STEP)]
                if not batch:
                    break
                found = self._check_span(conn, batch, terms, known) if dense else None
                if found is None:
                    # Rows spread thin stay thin: no span is read again for this page.
                    dense = False
                    found = self._check(conn, batch, terms, known)
                kept += found[:want - len(kept)]
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

    def _check_span(self, conn: Any, keys: list[Key], terms: list[str], known: set[str]
                    ) -> list[Key] | None:
        """:meth:`_check` of a step's rows (newest first), the first term checked for
        all of them by one index read over the keys from the oldest row's second to the
        newest's: when the rows are most of what that span holds (few other filters),
        it has few matches, and only the matching segments' rows are read. ``None``
        when the span has more matches than :data:`SPAN_HITS_PER_ROW` per row (rows
        spread thin by other filters: check them one at a time). A span across two
        tables is checked one row at a time."""
        if not terms or len(keys) < 2:
            return self._check(conn, keys, terms, known)
        lo, hi = segment_key(keys[-1][0]), last_key(keys[0][0])
        name = part_name(lo)
        cap = SPAN_HITS_PER_ROW * len(keys)
        if name != part_name(hi) or name not in known:
            return self._check(conn, keys, terms, known)
        hits = [int(r[0]) for r in self._all(conn, fts_span(name), (terms[0], lo, hi, cap))]
        if len(hits) >= cap:
            return None
        holding = {str(r[0]) for r in self._all(conn, recordings_of(hits))} if hits else set()
        return self._check(conn, [k for k in keys if k[1] in holding], terms[1:], known)

    def _check(self, conn: Any, keys: list[Key], terms: list[str], known: set[str]
               ) -> list[Key]:
        """The recordings whose segments hold every one of ``terms`` (FTS5 strings).

        A recording's segments are keyed within its second: each term is one index
        lookup over that second's keys, and a match is confirmed to be this recording's
        by its segment row (read only for a match). ``known``: the FTS5 tables there are.
        """
        if not terms or not keys:
            return keys
        out = []
        for key in keys:
            lo, hi = segment_key(key[0]), last_key(key[0])
            name = part_name(lo)
            if name in known and all(self._all(conn, fts_own(name), (term, lo, hi, key[1]))
                                     for term in terms):
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


class PostgresPlans(Statements):
    """PostgreSQL's two plans and the estimate that chooses between them."""

    def search(self, conn: Any, query: Query, text: TextQuery, snapshot: int | None
               ) -> list[Row]:
        """Up to ``query.limit + 1`` rows matching ``query`` and ``text``, in the order."""
        return self._pg_search(conn, query, text, snapshot)

    def _pg_search(self, conn: Any, query: Query, text: TextQuery,
                   snapshot: int | None) -> list[Row]:
        where, params = where_clause(query, snapshot)
        terms = pg_terms(text)
        estimates = [self._estimate(conn, *pg_estimate(t)) for t in terms]
        lead = estimates.index(min(estimates))
        ordered = TextQuery((text.terms[lead], *(t for i, t in enumerate(text.terms)
                                                 if i != lead)))
        if not self.choose_collect(conn, query, where, params, estimates[lead]):
            return self._pg_walk(conn, query, pg_terms(ordered), snapshot)
        params["limit"] = query.limit + 1
        upper = [_us(query.until), _us(query.after[0]) if query.after else None]
        bounds = [b for b in upper if b is not None]
        sql = pg_collect(ordered, where, params,
                         window=(_us(query.since), min(bounds) if bounds else None))
        return [row_from_db(r) for r in self._all(conn, sql, params)]

    def _pg_walk(self, conn: Any, query: Query, terms: list[str],
                 snapshot: int | None) -> list[Row]:
        """PostgreSQL: the rows passing the other filters, a batch at a time in the
        listing's order (the plain search's own statement, planned as it always is),
        each batch tested for the terms through its segments, until a page is full."""
        want = query.limit + 1
        kept: list[Row] = []
        plain = replace(query, text=None)
        size = 2 * want
        while True:
            sql, params = select_page(replace(plain, limit=min(size, MAX_LIMIT)), snapshot)
            rows = [row_from_db(r) for r in self._all(conn, sql, params)]
            batch = rows[:min(size, MAX_LIMIT)]
            holding = {r.id for r in batch}
            for term in terms:
                if holding:
                    p: dict[str, Any] = {}
                    holding = {str(r[0]) for r in self._all(
                        conn, pg_holding(sorted(holding), term, p), p)}
            found = [r for r in batch if r.id in holding]
            kept += found
            if len(kept) >= want or len(rows) <= len(batch):
                return kept[:want]
            plain = replace(plain, after=(batch[-1].sort_at, batch[-1].id))
            # The next batch as large as the share of matches so far says is needed
            # (a quarter more; at most four times the last), so a common word reads few
            # rows beyond its page.
            share = max(len(found) / len(batch), 1 / MAX_LIMIT)
            size = min(4 * len(batch), max(want, int((want - len(kept)) / share * 1.25)))

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
