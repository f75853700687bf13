"""Search by words: the segment index's rows, keys, statements and matches (pure, no I/O).

The catalog keeps one row per transcript segment in ``kzr_segments``: the recording's
id and ``sort_us``, the segment's times (milliseconds), channel, its text as spoken
(after redaction) and its *words*, :func:`~kzr_wsgi.catalog.words.index_text` of the
text. A match's time comes from here, never from the store; a speaker is derived from
the channel when read (:data:`DEFAULT_SPEAKERS`, or the caller's mapping).

**SQLite** indexes the words in FTS5 tables (``tokenize = 'ascii'``, contentless: the
words are in ``kzr_segments``), one per month of ``sort_us`` (:func:`part_name`), so
that erasing a recording rewrites only its month's index (see the manual's catalog
page). A segment's ``seq`` is its FTS5 rowid and is chosen in time order
(:func:`segment_key`): the recording's second in the high bits, so reading an FTS5
match by descending rowid is reading it newest first, and a common word's first page
is found without collecting every match.

**PostgreSQL** keeps a ``tsvector`` (configuration ``simple``) of the words, with a GIN
index: :func:`pg_collect` finds a page through it, :func:`pg_holding` tests a batch of
rows (see :mod:`kzr_wsgi.catalog.textindex` for when each is used).

>>> from kzr_wsgi.catalog.words import parse_query
>>> q = parse_query('"my subscription" hello')
>>> recording_matches(["hello there", "cancel my subscription"], q)
True
>>> recording_matches(["cancel my", "subscription"], parse_query('"my subscription"'))
False
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .rows import Row, clean_text
from .schema import COLUMNS, SEGMENTS, TABLE, TEXT_PARTS
from .words import Snippet, TextQuery, index_text, pg_terms, snippet

#: Who speaks on each channel unless the caller says otherwise (Kazoo puts the
#: recorded leg's party on the left of a stereo recording).
DEFAULT_SPEAKERS: Mapping[str, str] = {"left": "caller", "right": "callee", "mono": "all"}
#: The most matches an item of a page carries.
MATCHES_PER_ITEM = 3
#: A segment key's low bits: segments within one second of ``sort_us``.
SECOND_SHIFT = 30
#: The latest second a key can hold (2242): later times share it (the order is kept).
_MAX_SECOND = (1 << 33) - 1

#: Who speaks on ``channel`` of ``row``'s recording.
Speakers = Callable[[Row, str], str]


def default_speaker(row: Row, channel: str) -> str:
    """:data:`DEFAULT_SPEAKERS`' name for ``channel`` (the channel itself when unknown)."""
    return DEFAULT_SPEAKERS.get(channel, channel)


@dataclass(frozen=True)
class SegmentRow:
    """One segment as the catalog keeps it (times in milliseconds)."""

    start_ms: int
    end_ms: int
    channel: str
    text: str
    words: str


def segment_rows(segments: Iterable[Any]) -> list[SegmentRow]:
    """Catalog rows for transcript segments (anything with ``start``, ``end`` in seconds,
    ``text`` and ``channel``, such as :class:`kzr_wsgi.transcribe.model.Segment`), in
    time order. Segments with no words are kept (they have a time) but match nothing."""
    out = []
    for s in segments:
        text = clean_text(str(s.text))
        out.append(SegmentRow(round(float(s.start) * 1000), round(float(s.end) * 1000),
                              clean_text(str(s.channel)), text, index_text(text)))
    return sorted(out, key=lambda r: (r.start_ms, r.end_ms))


@dataclass(frozen=True)
class Match:
    """Where a recording says what was searched: a segment's time, speaker and snippet."""

    start: float
    end: float
    speaker: str
    snippet: Snippet

    def to_json(self) -> dict[str, Any]:
        """``{"start", "end", "speaker", "snippet", "highlights"}`` (seconds; offsets
        into the plain-text snippet)."""
        return {"start": self.start, "end": self.end, "speaker": self.speaker,
                "snippet": self.snippet.text,
                "highlights": [list(h) for h in self.snippet.highlights]}


def segment_json(row: Row, segment: SegmentRow, speaker: Speakers) -> dict[str, Any]:
    """A segment as the transcript view shows it: ``{"start", "end", "channel",
    "speaker", "text"}`` (seconds)."""
    return {"start": segment.start_ms / 1000, "end": segment.end_ms / 1000,
            "channel": segment.channel, "speaker": speaker(row, segment.channel),
            "text": segment.text}


# -- matching in Python (the reference, and the check of a recording's other words) ------


def holds(words: Sequence[str], term: tuple[str, ...]) -> bool:
    """Whether the token list ``words`` holds ``term`` (its tokens side by side)."""
    n = len(term)
    if n == 1:
        return term[0] in words
    first = term[0]
    return any(words[i] == first and tuple(words[i:i + n]) == term
               for i in range(len(words) - n + 1))


def recording_matches(segment_words: Iterable[str], query: TextQuery) -> bool:
    """Whether a recording whose segments have these ``words`` (index texts) matches:
    every term in some segment, a phrase within one."""
    split = [w.split() for w in segment_words]
    return all(any(holds(w, term) for w in split) for term in query.terms)


def matches(row: Row, segments: Iterable[SegmentRow], query: TextQuery, speaker: Speakers,
            most: int = MATCHES_PER_ITEM) -> tuple[Match, ...]:
    """Up to ``most`` segments that hold a term of ``query``, in time order, as matches."""
    found: list[Match] = []
    for segment in segments:
        words = segment.words.split()
        if any(holds(words, term) for term in query.terms):
            found.append(Match(segment.start_ms / 1000, segment.end_ms / 1000,
                               speaker(row, segment.channel), snippet(segment.text, query)))
            if len(found) >= most:
                break
    return tuple(found)


# -- SQLite: time-ordered keys, monthly FTS5 tables ---------------------------------------


def second_of(sort_us: int) -> int:
    """The second a key holds for ``sort_us`` (clamped to what a key can hold)."""
    return min(max(sort_us // 1_000_000, 0), _MAX_SECOND)


def segment_key(sort_us: int) -> int:
    """The first segment key of ``sort_us``'s second: keys grow with ``sort_us``."""
    return second_of(sort_us) << SECOND_SHIFT


def last_key(sort_us: int) -> int:
    """The last segment key of ``sort_us``'s second."""
    return segment_key(sort_us) | ((1 << SECOND_SHIFT) - 1)


def part_name(key: int) -> str:
    """The FTS5 table holding the segment with this key: ``kzr_text_YYYYMM``."""
    when = datetime.fromtimestamp(key >> SECOND_SHIFT, timezone.utc)
    return f"kzr_text_{when.year:04d}{when.month:02d}"


def part_range(name: str) -> tuple[int, int]:
    """The first and last key a monthly table (:func:`part_name`) can hold."""
    year, month = int(name[-6:-2]), int(name[-2:])
    start = datetime(year, month, 1, tzinfo=timezone.utc)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=timezone.utc)
    return (segment_key(int(start.timestamp()) * 1_000_000),
            segment_key(int(end.timestamp()) * 1_000_000) - 1)


def create_part(name: str) -> list[str]:
    """The statements that create a monthly FTS5 table (if missing) and register it.

    Contentless (the words are in ``kzr_segments``, from which a deletion takes them),
    without per-row sizes (no ranking is done), positions kept (phrases)."""
    lo, hi = part_range(name)
    return [f"CREATE VIRTUAL TABLE IF NOT EXISTS {name} USING fts5(words, content='', "
            "columnsize=0, detail=full, tokenize='ascii')",
            f"INSERT INTO {TEXT_PARTS} (name, lo, hi) VALUES ('{name}', {lo}, {hi})"
            " ON CONFLICT (name) DO NOTHING"]


def fts_insert(name: str) -> str:
    """Index one segment (``:seq``, ``:words``) in a monthly table."""
    return f"INSERT INTO {name} (rowid, words) VALUES (:seq, :words)"


def fts_delete(name: str) -> str:
    """Take one segment (``:seq`` with the ``:words`` it was indexed with) out of a table."""
    return f"INSERT INTO {name} ({name}, rowid, words) VALUES ('delete', :seq, :words)"


def fts_walk(name: str) -> str:
    """A table's segments matching ``:match`` within keys ``:lo``..``:hi``, newest first,
    with their recording."""
    return (f"SELECT f.rowid, s.recording FROM {name} f JOIN {SEGMENTS} s ON s.seq = f.rowid"
            f" WHERE f.{name} MATCH :match AND f.rowid BETWEEN :lo AND :hi"
            " ORDER BY f.rowid DESC")


def fts_own(name: str) -> str:
    """Whether a table has a segment matching ``?`` with a key from ``?`` to ``?`` that
    belongs to the recording ``?``."""
    return (f"SELECT 1 FROM {name} f JOIN {SEGMENTS} s ON s.seq = f.rowid"
            f" WHERE f.{name} MATCH ? AND f.rowid BETWEEN ? AND ? AND s.recording = ? LIMIT 1")


def fts_span(name: str) -> str:
    """A table's segments matching ``?`` with keys from ``?`` to ``?``, at most ``?``
    of them (the index alone: no segment row is read)."""
    return (f"SELECT rowid FROM {name} WHERE {name} MATCH ? AND rowid BETWEEN ? AND ?"
            " LIMIT ?")


def recordings_of(seqs: Sequence[int]) -> str:
    """The recordings of the segments ``seqs`` (integers, written into the statement)."""
    return (f"SELECT DISTINCT recording FROM {SEGMENTS}"
            f" WHERE seq IN ({', '.join(str(int(q)) for q in seqs)})")


def fts_any(name: str) -> str:
    """A table's segments matching ``?`` (a query's terms joined by OR) with keys from
    ``?`` to ``?`` (the index alone)."""
    return f"SELECT rowid FROM {name} WHERE {name} MATCH ? AND rowid BETWEEN ? AND ?"


def key_window(query_since: int | None, query_until: int | None,
               after_us: int | None) -> tuple[int, int]:
    """The keys a search may find segments at, from its time bounds and keyset."""
    lo = segment_key(query_since) if query_since is not None else 0
    hi = last_key(_MAX_SECOND * 1_000_000)
    for bound in (query_until, after_us):
        if bound is not None:
            hi = min(hi, last_key(bound))
    return lo, hi


# -- both: reading segments, and PostgreSQL's two plans -----------------------------------

#: The columns a :class:`SegmentRow` is read from, with its recording first.
SEGMENT_COLUMNS = "recording, start_ms, end_ms, channel, text, words"


def segments_of(ids: Sequence[str], params: dict[str, Any]) -> str:
    """The segments of the recordings ``ids`` (added to ``params``), in time order."""
    names = []
    for i, value in enumerate(ids):
        params[f"r{i}"] = value
        names.append(f":r{i}")
    return (f"SELECT {SEGMENT_COLUMNS} FROM {SEGMENTS} WHERE recording IN ({', '.join(names)})"
            " ORDER BY recording, start_ms, seq")


def segments_at(seqs: Sequence[int]) -> str:
    """The segments ``seqs`` (integers, written into the statement), with their recording,
    in time order."""
    return (f"SELECT {SEGMENT_COLUMNS} FROM {SEGMENTS}"
            f" WHERE seq IN ({', '.join(str(int(q)) for q in seqs)})"
            " ORDER BY recording, start_ms, seq")


def rows_in(ids: Sequence[str], where: str, params: dict[str, Any],
            columns: str = ", ".join(COLUMNS)) -> str:
    """The recordings among ``ids`` that pass ``where`` (a search's own condition)."""
    names = []
    for i, value in enumerate(ids):
        params[f"c{i}"] = value
        names.append(f":c{i}")
    return f"SELECT {columns} FROM {TABLE} WHERE id IN ({', '.join(names)}) AND {where}"


def pg_collect(query: TextQuery, where: str, params: dict[str, Any], *,
               window: tuple[int | None, int | None]) -> str:
    """PostgreSQL: one page of recordings passing ``where`` that match ``query``, found
    through the first term's GIN index matches.

    Every recording holding the first term, with the sort time its segments carry;
    then in the listing's order each row is looked up and checked (the other terms
    through its own segments) until the page is full. ``window`` bounds ``sort_us``
    (since/until, the keyset).
    """
    terms = pg_terms(query)
    for i, term in enumerate(terms):
        params[f"t{i}"] = term
    # IS TRUE: a row's test reads its own segments (the (recording, start_ms) index),
    # never the term's whole posting list intersected once per row.
    rest = "".join(f" AND (SELECT true FROM {SEGMENTS} s WHERE s.recording = {TABLE}.id"
                   f" AND (s.tsv @@ to_tsquery('simple', :t{i})) IS TRUE LIMIT 1)"
                   for i in range(1, len(terms)))
    bounds = ""
    if window[0] is not None:
        params["wlo"] = window[0]
        bounds += " AND sort_us >= :wlo"
    if window[1] is not None:
        params["whi"] = window[1]
        bounds += " AND sort_us <= :whi"
    columns = ", ".join(f"{TABLE}.{c}" for c in COLUMNS)
    # The hits in their own (sort_us, recording) order, which is the rows' (sort_us, id):
    # each row is then looked up in the listing's order, and the lookups stop after a page.
    return (f"WITH hits AS MATERIALIZED (SELECT recording, MAX(sort_us) AS sort_us"
            f" FROM {SEGMENTS} WHERE tsv @@ to_tsquery('simple', :t0){bounds}"
            " GROUP BY recording)"
            f" SELECT {', '.join('r.' + c for c in COLUMNS)}"
            " FROM (SELECT recording, sort_us FROM hits"
            " ORDER BY sort_us DESC, recording DESC) h"
            f" CROSS JOIN LATERAL (SELECT {columns} FROM {TABLE}"
            f" WHERE {TABLE}.id = h.recording AND {where}{rest}) r"
            " ORDER BY h.sort_us DESC, h.recording DESC LIMIT :limit")


def pg_holding(ids: Sequence[str], term: str, params: dict[str, Any]) -> str:
    """PostgreSQL: which of the recordings ``ids`` have a segment matching ``term``
    (read through their own segments, not the GIN index)."""
    params.update(ids=list(ids), term=term)
    return (f"SELECT DISTINCT recording FROM {SEGMENTS} WHERE recording = ANY(:ids)"
            " AND (tsv @@ to_tsquery('simple', :term)) IS TRUE")


def pg_segments_holding(ids: Sequence[str], query: TextQuery, params: dict[str, Any]) -> str:
    """PostgreSQL: the segments of the recordings ``ids`` that hold a term of ``query``
    (read through their own segments, not the GIN index), in time order."""
    params.update(ids=list(ids), any=" | ".join(pg_terms(query)))
    return (f"SELECT {SEGMENT_COLUMNS} FROM {SEGMENTS} WHERE recording = ANY(:ids)"
            " AND (tsv @@ to_tsquery('simple', :any)) IS TRUE"
            " ORDER BY recording, start_ms, seq")


def pg_estimate(term: str) -> tuple[str, dict[str, Any]]:
    """A statement whose plan's row estimate is how many segments hold ``term``
    (PostgreSQL's statistics of the ``tsvector`` column: no row is read)."""
    return (f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {SEGMENTS}"
            " WHERE tsv @@ to_tsquery('simple', :term)", {"term": term})
