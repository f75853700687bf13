"""The catalog at a million rows: how long typical searches take, in process.

    python benchmarks/catalog_bench.py                       # SQLite, 1,000,000 rows
    python benchmarks/catalog_bench.py --rows 100000         # quicker
    python benchmarks/catalog_bench.py --postgresql postgresql://postgres@127.0.0.1:5432/bench
    python benchmarks/catalog_bench.py --start-postgresql    # a throw-away server

Fills a fresh catalog with generated rows (:func:`generate_rows`, importable: the
search page's HTTP benchmark builds on it), then times each kind of search a UI or
``kzr-wsgi ls`` makes, many times with varied values, and prints the median and the
99th percentile in milliseconds (``--json`` for a machine-readable line per backend).
The SQLite file goes in a temporary directory (``$TMPDIR``) removed at the end; a given
PostgreSQL database must be empty (its tables are dropped at the end).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests")]

from kzr_wsgi.audio import FLAGS, AudioInfo  # noqa: E402
from kzr_wsgi.catalog import Catalog, Query, Row, open_catalog  # noqa: E402

#: The generated rows span this period, ending at :data:`END`.
SPAN = timedelta(days=730)
END = datetime(2026, 1, 1, tzinfo=timezone.utc)
ACCOUNTS = 1000
NUMBERS = 100_000
NAMES = ["Alice", "Bob", "Carol", "Dave", "Émilie", "Frank", "Grace", "Heidi", "Ivan",
         "Judy", "Mallory", "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor",
         "Walter", "Zoë"]
#: Share of rows whose audio carries a flag.
FLAGGED = 0.03


def account(i: int) -> str:
    """The ``i``-th generated account id (32 hex digits, as Kazoo's)."""
    return f"{i:08x}" + "a" * 24


def number(i: int) -> str:
    """The ``i``-th generated phone number."""
    return f"+1555{i:07d}"


def generate_rows(n: int, seed: int = 1) -> Iterator[Row]:
    """``n`` plausible rows: spread over two years, 1,000 accounts, 100,000 numbers,
    3 % flagged, a few self-tests; the same ``seed`` gives the same rows.
    """
    rng = random.Random(seed)
    span_us = int(SPAN.total_seconds() * 1e6)
    start0 = END - SPAN
    for i in range(n):
        start = start0 + timedelta(microseconds=rng.randrange(span_us))
        start = start.replace(microsecond=0)
        call_id = f"{rng.getrandbits(64):016x}-{i}@pbx"
        flags: tuple[str, ...] = ()
        if rng.random() < FLAGGED:
            flags = (rng.choice(FLAGS),)
        audio = AudioInfo("mp3", rng.randrange(1000, 600_000), 16000, 2, 64, flags)
        realm = f"acct{rng.randrange(ACCOUNTS)}.example"
        yield Row(
            id=f"{rng.getrandbits(128):032x}",
            kind="call",
            call_id=call_id,
            recording_id=f"{rng.getrandbits(64):016x}",
            account_id=account(rng.randrange(ACCOUNTS)),
            owner_id=None,
            from_=f"{number(rng.randrange(NUMBERS))}@{realm}",
            to=f"{number(rng.randrange(NUMBERS))}@{realm}",
            caller_id_name=f"{rng.choice(NAMES)} {rng.randrange(1000)}",
            caller_id_number=number(rng.randrange(NUMBERS)),
            start=start,
            duration_ms=audio.duration_ms,
            received_at=start + timedelta(seconds=rng.randrange(1, 600)),
            size=rng.randrange(10_000, 5_000_000),
            sha256=f"{rng.getrandbits(256):064x}",
            content_type="audio/mpeg",
            location=f"/srv/rec/call/{i}.mp3",
            segments=(),
            filename=f"call_recording_{call_id}.mp3",
            audio=audio,
            self_test=i % 5000 == 0,
        )


def fill(catalog: Catalog, n: int, batch: int = 10_000) -> float:
    """Add ``n`` generated rows in batches; return the seconds it took."""
    started = time.perf_counter()
    rows: list[Row] = []
    for row in generate_rows(n):
        rows.append(row)
        if len(rows) >= batch:
            catalog.add_rows(rows)
            rows.clear()
            print(f"\r  filled {catalog.max_seq():,} rows", end="", file=sys.stderr, flush=True)
    catalog.add_rows(rows)
    print(file=sys.stderr)
    return time.perf_counter() - started


def searches(catalog: Catalog, n: int) -> dict[str, Callable[[random.Random], Query]]:
    """Each kind of search, as a function of a random source (values vary per run)."""
    sample = catalog.search(Query(limit=1000)).items  # real call ids to look up
    snapshot = catalog.max_seq()
    # Keys deep in the listing (every 10,000th row, down to about half of it), found
    # once by walking pages: a page after any of them costs what the first one does.
    page = catalog.search(Query(limit=10_000))
    deep_keys = []
    while page.next is not None and page.next.after is not None \
            and len(deep_keys) < n // 20_000 + 1:
        deep_keys.append(page.next.after)
        page = catalog.search(page.next)

    def month(rng: random.Random) -> tuple[datetime, datetime]:
        first = (END - SPAN + timedelta(days=rng.randrange(700))).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0)
        return first, first + timedelta(days=31) - timedelta(microseconds=1)

    return {
        "first page (no filter)": lambda rng: Query(),
        "call id": lambda rng: Query(call_id=rng.choice(sample).call_id),
        "number (from/to/caller id)": lambda rng: Query(number=number(rng.randrange(NUMBERS))),
        "account + month": lambda rng: Query(account_id=account(rng.randrange(ACCOUNTS)),
                                             since=(m := month(rng))[0], until=m[1]),
        "flagged": lambda rng: Query(flagged=True),
        "flag (one of two)": lambda rng: Query(flags=tuple(rng.sample(FLAGS, 2))),
        "flagged + account": lambda rng: Query(flagged=True,
                                               account_id=account(rng.randrange(ACCOUNTS))),
        "q: caller-name prefix": lambda rng: Query(q=rng.choice(NAMES)[:3].lower()),
        "deep keyset page": lambda rng: Query(after=rng.choice(deep_keys), max_seq=snapshot),
    }


def measure(catalog: Catalog, n: int, repeat: int) -> dict[str, dict[str, float]]:
    """Median and p99 (ms) of each search over ``repeat`` runs with varied values."""
    rng = random.Random(7)
    results: dict[str, dict[str, float]] = {}
    for name, make in searches(catalog, n).items():
        catalog.search(make(rng))  # warm the cache and the plan
        times = []
        found = 0
        for _ in range(repeat):
            query = make(rng)
            started = time.perf_counter()
            page = catalog.search(query)
            times.append((time.perf_counter() - started) * 1000)
            found += len(page.items)
        times.sort()
        results[name] = {
            "median_ms": round(statistics.median(times), 3),
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3),
            "rows_per_page": round(found / repeat, 1),
        }
    return results


def measure_writes(catalog: Catalog, repeat: int) -> dict[str, float]:
    """Median and p99 (ms) of adding one new row: what each upload costs the catalog."""
    times = []
    for row in generate_rows(repeat, seed=99):
        started = time.perf_counter()
        catalog.add_rows([row])
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"median_ms": round(statistics.median(times), 3),
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3)}


def run(url: str, n: int, repeat: int, label: str) -> dict[str, object]:
    from kzr_wsgi.catalog.backends import sqlite

    # Filling a million rows into eleven indexes with random keys is bound by the page
    # cache: give the filling connection a large one. The searches and single adds are
    # then measured on fresh connections with the cache the catalog ships with.
    shipped = sqlite.CACHE_KIB
    sqlite.CACHE_KIB = 1 << 20
    catalog = open_catalog(url)
    try:
        if catalog.max_seq() is not None:
            raise SystemExit(f"{label}: the catalog is not empty")
        seconds = fill(catalog, n)
    finally:
        catalog.close()
        sqlite.CACHE_KIB = shipped
    catalog = open_catalog(url)
    try:
        results = measure(catalog, n, repeat)
        writes = measure_writes(catalog, repeat)
    finally:
        catalog.close()
    print(f"\n{label}: {n:,} rows filled in {seconds:.1f} s "
          f"({n / seconds:,.0f} rows/s, in batches of 10,000)")
    print(f"  {'search':32} {'median ms':>10} {'p99 ms':>10} {'rows':>6}")
    for name, r in results.items():
        print(f"  {name:32} {r['median_ms']:>10.3f} {r['p99_ms']:>10.3f} "
              f"{r['rows_per_page']:>6.0f}")
    print(f"  {'add one row (an upload)':32} {writes['median_ms']:>10.3f} "
          f"{writes['p99_ms']:>10.3f}")
    return {"backend": label, "rows": n, "fill_seconds": round(seconds, 1),
            "searches": results, "add_one_row": writes}


def _drop(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS kzr_recordings, kzr_schema_version")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=200, help="runs of each search")
    parser.add_argument("--postgresql", metavar="URL", help="also an empty PostgreSQL database")
    parser.add_argument("--start-postgresql", action="store_true",
                        help="also a throw-away PostgreSQL server (tests/pgserver.py)")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    out = []
    if not args.no_sqlite:
        tmp = Path(tempfile.mkdtemp(prefix="kzr-catalog-bench-"))
        try:
            out.append(run(f"sqlite:///{tmp / 'catalog.sqlite3'}", args.rows, args.repeat,
                           "sqlite"))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.postgresql:
        try:
            out.append(run(args.postgresql, args.rows, args.repeat, "postgresql"))
        finally:
            _drop(args.postgresql)
    if args.start_postgresql:
        from pgserver import postgres_server

        with postgres_server() as server:
            out.append(run(server.create_database("bench"), args.rows, args.repeat,
                           "postgresql"))
    if args.json:
        for result in out:
            print(json.dumps(result))


if __name__ == "__main__":
    main()
