"""Generated transcripts for the word-search benchmark, and loading them fast.

Recordings are ``catalog_bench.generate_rows`` (two years of calls, 1,000 accounts);
each gets a transcript of 100–400 words in segments of 10–30 words, drawn from a
Zipf-distributed vocabulary (50,000 made-up words, s = 1.1), with planted words of
known frequency (:data:`PLANTED`) whose letters no vocabulary word has. The same
``seed`` gives the same corpus.

Loading (:func:`load_sqlite`, :func:`load_postgres`) writes straight into the
catalog's tables, the secondary indexes dropped first and rebuilt at the end (the
catalog's own DDL, so the result is what the catalog makes), in big transactions,
segments in time order (so FTS5 appends).
"""

from __future__ import annotations

import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from catalog_bench import generate_rows  # noqa: E402

from kzr_wsgi.catalog import open_catalog  # noqa: E402
from kzr_wsgi.catalog.codec import UPSERT, write_params  # noqa: E402
from kzr_wsgi.catalog.schema import (  # noqa: E402
    JOBS_TABLE,
    MIGRATIONS,
    QUEUED,
    SEGMENTS,
    TABLE,
    VERSION_TABLE,
    WRITTEN,
    statements,
)
from kzr_wsgi.catalog.text import create_part, fts_insert, part_name, segment_key  # noqa: E402
from kzr_wsgi.catalog.words import index_text  # noqa: E402

VOCABULARY = 50_000
ZIPF_S = 1.1
#: Seconds per word (segment times).
WORD_S = 0.35
_CONSONANTS = "bdfgklmnprstv"
_VOWELS = "aeiou"
_SYLLABLES = [c + v for c in _CONSONANTS for v in _VOWELS]

#: Planted words and phrases: kind -> (share of recordings, or a count when >= 1; texts).
PLANTED: dict[str, tuple[float, list[str]]] = {
    "rare": (10, [f"quartz{k}" for k in range(20)]),
    "1%": (0.01, [f"juniper{k}" for k in range(5)]),
    "30%": (0.30, [f"wavelength{k}" for k in range(2)]),
    "phrase": (0.005, ["cancel my subscription", "close my account", "speak to a manager"]),
    # The phrases' words on their own too, so a phrase is not the same as its words.
    "words of phrases": (0.02, ["my", "subscription", "account", "manager", "cancel"]),
}


def vocabulary() -> list[str]:
    """The made-up words, most common first (two or three syllables of :data:`_SYLLABLES`)."""
    n = len(_SYLLABLES)
    words = []
    for i in range(n, n + VOCABULARY):
        parts = []
        while i:
            i, d = divmod(i, n)
            parts.append(_SYLLABLES[d])
        words.append("".join(reversed(parts)))
    return words


@dataclass
class Recording:
    """One generated recording: its catalog parameters and its segments."""

    params: dict[str, Any]
    segments: list[tuple[int, int, str, str, str]]  # start_ms, end_ms, channel, text, words


def time_order(n: int) -> list[dict[str, Any]]:
    """Every row's upsert parameters, sorted by (sort_us, id) (the segments' key order)."""
    rows = [write_params(r) for r in generate_rows(n)]
    rows.sort(key=lambda p: (p["sort_us"], p["id"]))
    return rows


def transcripts(rows: list[dict[str, Any]], seed: int = 20) -> Iterator[Recording]:
    """A transcript for each row, in the order given."""
    vocab = vocabulary()
    weights = 1.0 / np.arange(1, VOCABULARY + 1) ** ZIPF_S
    cumulative = np.cumsum(weights / weights.sum())
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    rare_rows = {w: set(pick.sample(range(len(rows)), int(PLANTED["rare"][0])))
                 for w in PLANTED["rare"][1]}
    batch = 10_000
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        counts = rng.integers(100, 401, len(chunk))
        drawn = np.searchsorted(cumulative, rng.random(int(counts.sum()))).tolist()
        at = 0
        for i, (params, count) in enumerate(zip(chunk, counts.tolist(), strict=True)):
            words = [vocab[k] for k in drawn[at:at + count]]
            at += count
            plant(words, start + i, rare_rows, pick)
            yield Recording(params, cut(words, pick))


def plant(words: list[str], index: int, rare_rows: dict[str, set[int]],
          pick: random.Random) -> None:
    """Put the planted words this recording gets at random places."""
    for kind, (share, texts) in PLANTED.items():
        for text in texts:
            hit = index in rare_rows[text] if kind == "rare" else pick.random() < share
            if hit:
                at = pick.randrange(len(words))
                words[at:at] = text.split()


def cut(words: list[str], pick: random.Random) -> list[tuple[int, int, str, str, str]]:
    """Segments of 10–30 words, alternately left and right, with times."""
    out = []
    at = 0
    n = 0
    while at < len(words):
        size = pick.randint(10, 30)
        part = words[at:at + size]
        folded = " ".join(part)
        text = folded[0].upper() + folded[1:] + "."
        out.append((round(at * WORD_S * 1000), round((at + len(part)) * WORD_S * 1000),
                    "left" if n % 2 == 0 else "right", text, folded))
        at += size
        n += 1
    return out


def check_folding(sample: Recording) -> None:
    """The generator writes the folded words itself (fast); they are index_text's."""
    for _, _, _, text, words in sample.segments:
        assert index_text(text) == words, (text, words)


def _secondary_indexes(dialect: str) -> list[str]:
    """The catalog's CREATE INDEX statements for the recordings and segments."""
    return [s for m in MIGRATIONS for s in statements(m, dialect)
            if s.startswith("CREATE INDEX") and (f" ON {TABLE} " in s or f" ON {SEGMENTS} " in s)]


def _index_name(statement: str) -> str:
    return statement.split()[2]


def load_sqlite(path: Path, n: int) -> dict[str, float]:
    """Fill an SQLite catalog at ``path`` with ``n`` recordings and their transcripts."""
    times: dict[str, float] = {}
    open_catalog(f"sqlite:///{path}").close()  # the schema, as the catalog makes it
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    db.execute("PRAGMA cache_size = -2000000")
    indexes = _secondary_indexes("sqlite")
    for statement in indexes:
        db.execute(f"DROP INDEX {_index_name(statement)}")
    began = time.perf_counter()
    rows = time_order(n)
    times["generate rows"] = time.perf_counter() - began
    began = time.perf_counter()
    db.execute("BEGIN")
    for start in range(0, n, 50_000):
        db.executemany(UPSERT, rows[start:start + 50_000])
    db.execute("COMMIT")
    times["insert rows"] = time.perf_counter() - began
    began = time.perf_counter()
    _sqlite_segments(db, rows)
    times["generate + insert segments and FTS5"] = time.perf_counter() - began
    began = time.perf_counter()
    for statement in indexes:
        db.execute(statement)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    times["build indexes"] = time.perf_counter() - began
    return times


def _sqlite_segments(db: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
    used: dict[int, int] = {}
    part = ""
    pending: list[tuple[Any, ...]] = []
    fts: list[tuple[int, str]] = []

    def flush() -> None:
        db.executemany(f"INSERT INTO {SEGMENTS} (seq, recording, sort_us, start_ms, end_ms,"
                       " channel, text, words) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", pending)
        db.executemany(fts_insert(part).replace(":seq", "?").replace(":words", "?"), fts)
        pending.clear()
        fts.clear()

    db.execute("BEGIN")
    for k, rec in enumerate(transcripts(rows)):
        if k == 0:
            check_folding(rec)
        sort_us = rec.params["sort_us"]
        base = segment_key(sort_us)
        first = base + used.get(base, 0)
        used[base] = used.get(base, 0) + len(rec.segments)
        name = part_name(first)
        if name != part:
            if pending:
                flush()
            part = name
            for statement in create_part(name):
                db.execute(statement)
        for j, (start_ms, end_ms, channel, text, words) in enumerate(rec.segments):
            pending.append((first + j, rec.params["id"], sort_us, start_ms, end_ms, channel,
                            text, words))
            fts.append((first + j, words))
        if len(pending) >= 100_000:
            flush()
        if k % 100_000 == 99_999:
            db.execute("COMMIT")
            db.execute("BEGIN")
            print(f"\r  sqlite: {k + 1:,} transcripts", end="", file=sys.stderr, flush=True)
    if pending:
        flush()
    db.execute("COMMIT")
    print(file=sys.stderr)


def load_postgres(url: str, n: int) -> dict[str, float]:
    """Fill a PostgreSQL catalog with ``n`` recordings and their transcripts (COPY)."""
    import psycopg

    times: dict[str, float] = {}
    open_catalog(url).close()
    indexes = _secondary_indexes("postgresql")
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in indexes:
            conn.execute(f"DROP INDEX {_index_name(statement)}")
        began = time.perf_counter()
        rows = time_order(n)
        times["generate rows"] = time.perf_counter() - began
        began = time.perf_counter()
        with conn.cursor() as cur, cur.copy(
                f"COPY {TABLE} ({', '.join(WRITTEN)}) FROM STDIN") as copy:
            for params in rows:
                copy.write_row([params[c] for c in WRITTEN])
        times["insert rows"] = time.perf_counter() - began
        began = time.perf_counter()
        with conn.cursor() as cur, cur.copy(
                f"COPY {SEGMENTS} (recording, sort_us, start_ms, end_ms, channel, text, words)"
                " FROM STDIN") as copy:
            for k, rec in enumerate(transcripts(rows)):
                for start_ms, end_ms, channel, text, words in rec.segments:
                    copy.write_row((rec.params["id"], rec.params["sort_us"], start_ms, end_ms,
                                    channel, text, words))
                if k % 100_000 == 99_999:
                    print(f"\r  postgresql: {k + 1:,} transcripts", end="", file=sys.stderr,
                          flush=True)
        print(file=sys.stderr)
        times["generate + copy segments (tsvector computed)"] = time.perf_counter() - began
        began = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '1GB'")
        for statement in indexes:
            conn.execute(statement)
        times["build indexes"] = time.perf_counter() - began
        began = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        times["vacuum analyze"] = time.perf_counter() - began
    return times


#: A cache loaded when the word index was the catalog's second migration: its schema
#: version is 2 with the segments in it, and neither the job queue nor the search page's
#: tables (the migrations that are now second and third).
OLD_TEXT_VERSION = 2


def renumber(db: Any, dialect: str) -> bool:
    """Bring a cache made at the old numbering (:data:`OLD_TEXT_VERSION`) to the
    catalog's version: the job queue's and the search page's migrations (now 2 and 3)
    applied, the rows' new columns as a load today writes them (``queued`` 1, ``noted``
    from the flags, before the indexes on them are built), the version set to the
    migrations' count; PostgreSQL: the rows' table rewritten, as a load leaves it.
    ``db``: an sqlite3 or psycopg connection in autocommit mode. False when the cache
    is not at the old numbering (nothing done)."""
    def one(sql: str) -> Any:
        found = db.execute(sql).fetchone()
        return found[0] if found else None

    listed = ("SELECT count(*) FROM sqlite_master WHERE name = '{}'" if dialect == "sqlite"
              else "SELECT count(*) FROM pg_tables WHERE tablename = '{}'")
    if (one(f"SELECT version FROM {VERSION_TABLE}") != OLD_TEXT_VERSION
            or not one(listed.format(SEGMENTS)) or one(listed.format(JOBS_TABLE))):
        return False
    todo = [s for m in MIGRATIONS[1:3] for s in statements(m, dialect)]
    on_rows = [s for s in todo if s.startswith("CREATE INDEX") and f" ON {TABLE} " in s]
    db.execute("BEGIN")
    for statement in todo:
        if statement not in on_rows:
            db.execute(statement)
    db.execute(f"UPDATE {TABLE} SET queued = {QUEUED},"
               " noted = CASE WHEN flag_bits <> 0 THEN 1 ELSE 0 END")
    for statement in on_rows:
        db.execute(statement)
    db.execute(f"UPDATE {VERSION_TABLE} SET version = {len(MIGRATIONS)}")
    db.execute("COMMIT")
    if dialect == "postgresql":
        # The update left a dead version of every row: rewritten compact, as loaded.
        db.execute(f"VACUUM (FULL, ANALYZE) {TABLE}")
    return True
