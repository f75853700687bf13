"""Searches: :class:`Query`, :class:`Page`, and the SQL a query becomes (pure, no I/O).

One order everywhere (``ls``, the Python API, the search page): newest first by
``sort_at`` (Kazoo's ``start``, else ``received_at``), ties broken by ``id``, both
descending. Paging is by keyset (``after``), never by offset, so a deep page costs
what the first one does; ``max_seq`` pins a snapshot so rows that arrive while an
operator pages do not shift the pages.

The SQL is written once, with ``:name`` parameters; the backends translate the
parameter style where their drivers differ (see :mod:`kzr_wsgi.catalog.backends.base`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ..numbers import match_keys
from .analysis import ALL_FLAGS, DEFECT_FLAGS, bits_of
from .analysis import FLAG_BITS as FLAG_BITS  # imported from here before it moved
from .rows import Row, clean_text
from .schema import COLUMNS, TABLE

if TYPE_CHECKING:
    from .text import Match

#: The most rows one page may hold.
MAX_LIMIT = 10_000

#: Greater than any character: ``prefix <= x < prefix + _TOP`` is "x starts with prefix"
#: under a byte-wise (C) collation.
_TOP = "\U0010ffff"


@dataclass(frozen=True)
class Query:
    """What to find. Every field is optional; different fields combine with AND.

    See the manual's catalog page for each field's meaning; ``flags`` is OR within itself
    and takes the inspection's and the analysis's flags
    (:data:`~kzr_wsgi.catalog.analysis.ALL_FLAGS`); ``flagged`` means a defect
    (:data:`~kzr_wsgi.catalog.analysis.DEFECT_FLAGS`).
    """

    #: Call id or number matched exactly, or a case-insensitive prefix of caller_id_name.
    q: str | None = None
    call_id: str | None = None
    #: Matches from, to, caller_id_number and a caller_id_name that is itself a number,
    #: by the one number rule (:mod:`kzr_wsgi.numbers`).
    number: str | None = None
    #: The ISO 3166 country national forms of ``number`` and ``q`` are read in.
    country: str | None = None
    account_id: str | None = None
    #: The accounts a viewer may see; ``None`` is unscoped (rows without an account too).
    scope: tuple[str, ...] | None = None
    #: Compared with ``sort_at``; ``until`` is inclusive.
    since: datetime | None = None
    until: datetime | None = None
    flags: tuple[str, ...] = ()
    flagged: bool = False
    kinds: tuple[str, ...] = ()
    #: False hides ``kzr-wsgi check``'s own uploads.
    self_test: bool = False
    #: Compared with ``received_at`` (``verify --since``, retention).
    received_since: datetime | None = None
    #: Words said in the recording (:func:`~kzr_wsgi.catalog.words.parse_query`'s
    #: grammar: every word required, a quoted phrase within one segment).
    text: str | None = None
    limit: int = 50
    #: Keyset: only rows strictly after this ``(sort_at, id)`` in the order.
    after: tuple[datetime, str] | None = None
    #: Only rows with ``seq <= max_seq``: a snapshot, so paging is stable.
    max_seq: int | None = None

    def __post_init__(self) -> None:
        unknown = [f for f in self.flags if f not in FLAG_BITS]
        if unknown:
            raise ValueError(f"unknown flag(s): {', '.join(unknown)}; "
                             f"known: {', '.join(ALL_FLAGS)}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")


@dataclass(frozen=True)
class Page:
    """One page of a search: its rows, and the query for the next page (``None`` at the end).

    A search by words (``Query.text``) gives each row's matches, by row id.
    """

    items: list[Row] = field(default_factory=list)
    next: Query | None = None
    matches: Mapping[str, tuple[Match, ...]] = field(default_factory=dict)


def micros(when: datetime) -> int:
    """An aware datetime as integer microseconds since the Unix epoch (how times are stored)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    """The inverse of :func:`micros` (aware UTC)."""
    return _EPOCH + timedelta(microseconds=value)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


#: A caller-name prefix matching at least this many rows is "common" (see
#: :func:`where_clause`'s ``common_prefix``).
COMMON_PREFIX = 2000


def name_prefix(q: str) -> tuple[str, str]:
    """The range of ``cid_name_lower`` values that start with ``q`` (case-insensitive)."""
    low = clean_text(q.strip()).lower()
    return low, low + _TOP


def count_prefix() -> str:
    """How many rows (up to :data:`COMMON_PREFIX`) have a caller name starting with ``:qlo``."""
    return (f"SELECT COUNT(*) FROM (SELECT 1 FROM {TABLE} WHERE cid_name_lower >= :qlo"
            " AND cid_name_lower < :qhi LIMIT :k) AS probe")


def where_clause(query: Query, snapshot: int | None,
                 common_prefix: bool = False) -> tuple[str, dict[str, Any]]:
    """The ``WHERE`` condition for ``query`` (``"1=1"`` for none) and its parameters.

    Every field but ``text``, which the word index answers (:mod:`.textindex`).

    ``common_prefix``: ``q``'s caller-name prefix matches many rows (the caller has
    counted, :func:`count_prefix`). Then the name test is written so that no index can
    serve it (``cid_name_lower || ''``): both databases walk the order's index and stop
    after a page, instead of collecting every match through the name index and
    sorting them all (800 ms for a prefix shared by 5 % of a million rows).
    """
    terms: list[str] = []
    params: dict[str, Any] = {}
    if query.q:
        text = clean_text(query.q.strip())
        low, high = name_prefix(text)
        params.update(q=text, qlo=low, qhi=high)
        name = "(cid_name_lower || '')" if common_prefix else "cid_name_lower"
        numbers = number_terms(query.q, query.country, "qn", params)
        terms.append(any_of(["call_id = :q", numbers,
                             f"({name} >= :qlo AND {name} < :qhi)"]))
    if query.call_id is not None:
        params["call_id"] = clean_text(query.call_id)
        terms.append("call_id = :call_id")
    if query.number is not None:
        terms.append(number_terms(query.number, query.country, "number", params))
    if query.account_id is not None:
        params["account_id"] = clean_text(query.account_id)
        terms.append("account_id = :account_id")
    if query.scope is not None:
        terms.append(_one_of("account_id", "scope", map(clean_text, query.scope), params))
    if query.since is not None:
        params["since"] = micros(query.since)
        terms.append("sort_us >= :since")
    if query.until is not None:
        params["until"] = micros(query.until)
        terms.append("sort_us <= :until")
    if query.flags:
        params["mask"] = bits_of(query.flags)
        # "flagged = 1" / "noted = 1" as written: each selects its partial indexes, of
        # the rows with a defect, or with any flag (a fact such as dead_air too).
        rows_with = "flagged" if all(f in DEFECT_FLAGS for f in query.flags) else "noted"
        terms.append(f"{rows_with} = 1 AND ((flag_bits | analysis_bits) & :mask) <> 0")
    elif query.flagged:
        terms.append("flagged = 1")
    if query.kinds:
        terms.append(_one_of("kind", "kind", query.kinds, params))
    if not query.self_test:
        terms.append("self_test = 0")
    if query.received_since is not None:
        params["received_since"] = micros(query.received_since)
        terms.append("received_us >= :received_since")
    if query.after is not None:
        at, after_id = query.after
        params.update(after_us=micros(at), after_id=after_id)
        # A row value: both databases seek the (sort_us, id) index with it.
        terms.append("(sort_us, id) < (:after_us, :after_id)")
    if snapshot is not None:
        params["max_seq"] = snapshot
        terms.append("seq <= :max_seq")
    return (" AND ".join(terms) or "1 = 1"), params


#: The condition no row meets (a search for no value at all).
NOTHING = "1 = 0"

#: The columns a number is searched in (each holds :func:`~kzr_wsgi.numbers.number_key`).
NUMBER_COLUMNS = ("from_norm", "to_norm", "cid_norm", "cname_norm")


def number_terms(text: str, country: str | None, name: str, params: dict[str, Any]) -> str:
    """The condition "one of the number columns is ``text``", by the one number rule.

    Every key the number may be stored under (:func:`~kzr_wsgi.numbers.match_keys`) in
    every number column; ``1 = 0`` for text that is not a number.
    """
    keys = sorted(match_keys(text, country))
    if not keys:
        return NOTHING
    return any_of([_one_of(column, f"{name}{i}_", keys, params)
                   for i, column in enumerate(NUMBER_COLUMNS)])


def any_of(conditions: list[str]) -> str:
    """The conditions joined by ``OR``, those that are :data:`NOTHING` left out
    (:data:`NOTHING` when every one is).

    A constant false branch keeps SQLite from answering an ``OR`` with one index per
    branch: it walks every row instead (3 s at a million rows for a page's ``q`` that
    is a call id, when its number branch was written as ``1 = 0``).
    """
    kept = [c for c in conditions if c != NOTHING]
    if not kept:
        return NOTHING
    return kept[0] if len(kept) == 1 else "(" + " OR ".join(kept) + ")"


def _one_of(column: str, name: str, values: Iterable[str], params: dict[str, Any]) -> str:
    """``column IN (:name0, …)`` for the distinct ``values``, added to ``params``.

    Sorted, so that one set of values is always one statement; ``1 = 0`` for none.
    """
    names = []
    for i, value in enumerate(sorted(set(values))):
        params[f"{name}{i}"] = value
        names.append(f":{name}{i}")
    return f"{column} IN ({', '.join(names)})" if names else NOTHING


def select_page(query: Query, snapshot: int | None,
                common_prefix: bool = False) -> tuple[str, dict[str, Any]]:
    """The statement fetching one page (one row more than ``limit``, to know if more follow)."""
    where, params = where_clause(query, snapshot, common_prefix)
    params["limit"] = query.limit + 1
    sql = (f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE {where}"
           " ORDER BY sort_us DESC, id DESC LIMIT :limit")
    return sql, params


def select_count(query: Query) -> tuple[str, dict[str, Any]]:
    """The statement counting every row ``query`` matches (``after`` and ``limit`` aside)."""
    where, params = where_clause(query, query.max_seq)
    return f"SELECT COUNT(*) FROM {TABLE} WHERE {where}", params
