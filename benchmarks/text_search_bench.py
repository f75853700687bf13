"""Search by words at a million transcribed recordings: median and p99 over HTTP.

    python benchmarks/text_search_bench.py                          # SQLite and PostgreSQL
    python benchmarks/text_search_bench.py --rows 100000 --no-postgres
    python benchmarks/text_search_bench.py --data-dir /var/tmp/kzr-text-bench

Generates the recordings (``catalog_bench.generate_rows``) and a transcript for each
(``text_corpus.py``: 100–400 words in segments of 10–30, a Zipf vocabulary of 50,000
words, planted words of known frequency), loads them once into a catalog under
``--data-dir`` (default ``/tmp/kzr-text-bench``; reused while its rows and seed
match, so only the first run pays the load), starts ``kzr-wsgi serve --ui`` (two
workers) on 127.0.0.1 and asks the API as a signed-in viewer (``ui_bench.py``'s
client), one request at a time, ``--rounds`` requests of each kind:

- a rare word (about 10 recordings), a word in 1 % and one in 30 % of recordings;
- a phrase (0.5 %); two words (30 % and 1 %);
- the 30 % word with an account and a month; a rare word with an account;
- the 30 % word as a viewer scoped to three accounts;
- deep pages: the 30 % word followed 200 pages of 500 down, then pages of 50 from there.

Each figure is printed with ``os.getloadavg()`` taken right after it (the machine is
shared). Then (SQLite) erasing 10 recordings' transcripts: the segments deleted and
their months' FTS5 tables merged (``Catalog.scrub_text``), with how long each write
transaction held the lock and how long a concurrent catalog write (an upload's row)
waited; the transcripts are put back afterwards so the cache stays whole.
PostgreSQL runs on a server of its own under the data directory (``tests/pgserver.py``:
``fsync=off``, which only the load feels), with ``shared_buffers=2GB``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent / "tests")]

from servers import Server, free_port, kzr_argv  # noqa: E402

# isort: split
from catalog_bench import END, SPAN, account, generate_rows  # noqa: E402
from text_corpus import PLANTED, load_postgres, load_sqlite, renumber  # noqa: E402
from ui_bench import SCOPED, VIEWER, Client, stats  # noqa: E402

from kzr_wsgi.catalog import Catalog, open_catalog  # noqa: E402
from kzr_wsgi.catalog.text import fts_delete  # noqa: E402
from kzr_wsgi.transcribe.model import Segment  # noqa: E402

SEED = 20
#: Changes whenever the corpus or its loading changes: an older cache is rebuilt.
CORPUS_VERSION = 1
DEEP_PAGES = 200
#: Requests of each kind made, and not counted, before it is measured: the database
#: files are larger than what the page cache kept of them since they were loaded.
WARM = 20


def cached(data: Path, label: str, rows: int) -> bool:
    marker = data / f"{label}.done"
    return marker.exists() and json.loads(marker.read_text()).get("key") == [
        rows, SEED, CORPUS_VERSION]


def mark(data: Path, label: str, rows: int, times: dict[str, float]) -> None:
    (data / f"{label}.done").write_text(json.dumps({"key": [rows, SEED, CORPUS_VERSION],
                                                   "load_s": times}))


def load_times(data: Path, label: str) -> dict[str, float]:
    loaded: dict[str, float] = json.loads((data / f"{label}.done").read_text())["load_s"]
    return loaded


def cases(rng: random.Random) -> dict[str, Any]:
    """Each kind of request, as a function making its parameters."""
    words = {kind: texts for kind, (_, texts) in PLANTED.items()}

    def month() -> dict[str, str]:
        first = (END - SPAN + timedelta(days=rng.randrange(700))).replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        return {"account_id": account(rng.randrange(1000)), "since": f"{first:%Y-%m-%d}",
                "until": f"{last:%Y-%m-%d}"}

    return {
        "rare word (~10 recordings)": lambda: {"text": rng.choice(words["rare"])},
        "word in 1 %": lambda: {"text": rng.choice(words["1%"])},
        "word in 30 %": lambda: {"text": rng.choice(words["30%"])},
        "phrase (0.5 %)": lambda: {"text": f'"{rng.choice(words["phrase"])}"'},
        "two words (30 % and 1 %)": lambda: {
            "text": f"{rng.choice(words['30%'])} {rng.choice(words['1%'])}"},
        "30 % word + account + month": lambda: {"text": rng.choice(words["30%"]), **month()},
        "rare word + account": lambda: {"text": rng.choice(words["rare"]),
                                        "account_id": account(rng.randrange(1000))},
    }


def measure(port: int, rounds: int, rows: int) -> dict[str, dict[str, Any]]:
    rng = random.Random(11)
    client = Client(port, VIEWER)
    scoped = Client(port, SCOPED)
    for _ in range(4):
        client.get({"limit": "1", "text": "juniper0"})  # each worker's connection, warm
    results: dict[str, dict[str, Any]] = {}

    def record(label: str, times: list[float], found: int) -> None:
        results[label] = {**stats(times), "items": found / max(len(times), 1),
                          "load": os.getloadavg()}
        r = results[label]
        print(f"  {label}: median {r['median_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
              f"{r['items']:.0f} items, load {r['load'][0]:.2f}", file=sys.stderr, flush=True)

    for label, params in cases(rng).items():
        client = Client(port, VIEWER)  # a fresh connection: an idle one may have timed out
        for _ in range(WARM):
            client.get(params())
        took, found = [], 0
        for _ in range(rounds):
            t, page = client.get(params())
            took.append(t)
            found += len(page["items"])
        record(label, took, found)
    for _ in range(WARM):
        scoped.get({"text": rng.choice(PLANTED["30%"][1])})
    took, found = [], 0
    for _ in range(rounds):
        t, page = scoped.get({"text": rng.choice(PLANTED["30%"][1])})
        took.append(t)
        found += len(page["items"])
    record("30 % word, viewer scoped to 3 accounts", took, found)
    walk: list[float] = []
    client = Client(port, VIEWER)
    word = PLANTED["30%"][1][0]
    _t, page = client.get({"text": word, "limit": "500"})
    # Down to 100,000 matches, or about half of them at fewer than a million rows.
    pages = max(1, min(DEEP_PAGES, int(rows * PLANTED["30%"][0] / 1000)))
    for _ in range(pages - 1):
        t, page = client.get({"text": word, "limit": "500", "cursor": page["next"]})
        walk.append(t)
    depth = pages * 500
    record(f"30 % word, paging down 500 a page to match {depth:,}", walk, 500 * len(walk))
    deep: list[float] = []
    found = 0
    for _ in range(rounds):
        if page["next"] is None:
            break
        t, page = client.get({"text": word, "limit": "50", "cursor": page["next"]})
        deep.append(t)
        found += len(page["items"])
    record(f"30 % word, pages of 50 past match {depth:,}", deep, found)
    return results


def serve(label: str, root: Path, url: str | None, rounds: int, rows: int,
          tmp: Path) -> dict[str, Any]:
    viewers = tmp / f"viewers-{label}"
    viewers.write_text(f"{':'.join(VIEWER)}\n{':'.join(SCOPED)} "
                       f"{account(1)},{account(2)},{account(3)}\n")
    port = free_port()
    argv = [*kzr_argv(root, port), "--ui", "--viewer-file", str(viewers)]
    if url:
        argv += ["--catalog", url]
    print(f"{label}: measuring ({rounds} requests of each kind)", file=sys.stderr)
    with Server(argv, port, log_path=tmp / f"serve-{label}.log", start_timeout=120):
        return measure(port, rounds, rows)


def erase(catalog: Catalog, rows: int) -> dict[str, Any]:
    """Scrub 10 recordings' transcripts while another thread adds rows (as uploads do)."""
    params = [r.id for r in generate_rows(rows)][: rows // 10][::max(rows // 100, 1)][:10]
    kept = {rid: catalog.segments(rid) for rid in params}
    waits: list[float] = []
    stop = threading.Event()

    def uploads() -> None:
        other = open_catalog(catalog.url.replace("***", ""))
        try:
            for row in generate_rows(10_000, seed=99):
                if stop.is_set():
                    break
                began = time.perf_counter()
                other.add_rows([row])
                waits.append(time.perf_counter() - began)
                time.sleep(0.02)
        finally:
            other.close()

    writer = threading.Thread(target=uploads)
    writer.start()
    time.sleep(0.5)
    try:
        result = catalog.scrub_text(params)
    finally:
        time.sleep(0.5)
        stop.set()
        writer.join()
    for rid, segs in kept.items():
        catalog.put_segments(rid, [Segment(s["start"], s["end"], s["text"], s["channel"])
                                   for s in segs])
    out = {"recordings": len(params), "segments": result.segments, "merged": result.merged,
           "longest_lock_s": result.longest_lock_s, "total_s": result.total_s,
           "upload_row_wait_max_s": max(waits, default=0.0),
           "upload_rows_written": len(waits), "load": os.getloadavg()}
    print(f"  erase: {json.dumps(out)}", file=sys.stderr)
    return out


def unpartitioned_merge(path: Path, data: Path) -> dict[str, Any]:
    """What an erase would hold the lock for with one FTS5 table for every month: the
    whole index built in a scratch database (``--data-dir``), 10 recordings' segments
    deleted from it, and the merge timed."""
    scratch = data / "one-table.sqlite3"
    scratch.unlink(missing_ok=True)
    db = sqlite3.connect(scratch, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA secure_delete = ON")
        db.execute(f"ATTACH DATABASE 'file:{path}?mode=ro' AS cat")
        db.execute("CREATE VIRTUAL TABLE onetable USING fts5(words, content='', columnsize=0,"
                   " detail=full, tokenize='ascii')")
        began = time.perf_counter()
        db.execute("BEGIN")
        db.execute("INSERT INTO onetable (rowid, words) SELECT seq, words"
                   " FROM cat.kzr_segments ORDER BY seq")
        db.execute("COMMIT")
        built = time.perf_counter() - began
        victims = db.execute("SELECT seq, words FROM cat.kzr_segments WHERE recording IN"
                             " (SELECT recording FROM cat.kzr_segments ORDER BY random()"
                             " LIMIT 10)").fetchall()
        began = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.executemany(fts_delete("onetable"), [{"seq": q, "words": w} for q, w in victims])
        db.execute("INSERT INTO onetable (onetable) VALUES ('optimize')")
        db.execute("COMMIT")
        held = time.perf_counter() - began
        out = {"build_s": built, "segments": len(victims), "lock_s": held,
               "index_bytes": db.execute("SELECT SUM(length(block)) FROM onetable_data"
                                         ).fetchone()[0], "load": os.getloadavg()}
    finally:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{scratch}{suffix}").unlink(missing_ok=True)
    print(f"  one FTS5 table for every month: {json.dumps(out)}", file=sys.stderr)
    return out


def run_sqlite(data: Path, rows: int, rounds: int, load_only: bool = False,
               whole: bool = False) -> dict[str, Any]:
    root = data / "sqlite-root"
    path = Catalog.for_root(root).backend.url.removeprefix("sqlite:///")
    if not cached(data, "sqlite", rows):
        Path(path).unlink(missing_ok=True)
        print(f"sqlite: loading {rows:,} transcribed recordings…", file=sys.stderr)
        mark(data, "sqlite", rows, load_sqlite(Path(path), rows))
    else:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            if renumber(db, "sqlite"):
                print("sqlite: cache brought to the current schema version", file=sys.stderr)
        finally:
            db.close()
    if load_only:
        return {"catalog": "sqlite", "load_s": load_times(data, "sqlite")}
    out = {"catalog": "sqlite", "load_s": load_times(data, "sqlite"),
           "size_bytes": Path(path).stat().st_size,
           "results": serve("sqlite", root, None, rounds, rows, data)}
    catalog = Catalog.for_root(root)
    try:
        out["erase"] = erase(catalog, rows)
    finally:
        catalog.close()
    if whole:
        out["erase_one_table"] = unpartitioned_merge(Path(path), data)
    return out


def run_postgres(data: Path, rows: int, rounds: int, load_only: bool = False
                 ) -> dict[str, Any]:
    from pgserver import postgres_server

    with postgres_server(keep=data / "postgres", settings={"shared_buffers": "2GB"}) as server:
        url = server.url("bench")
        if not cached(data, "postgres", rows):
            server.drop_database("bench")
            server.create_database("bench")
            print(f"postgresql: loading {rows:,} transcribed recordings…", file=sys.stderr)
            mark(data, "postgres", rows, load_postgres(url, rows))
        else:
            import psycopg

            with psycopg.connect(url, autocommit=True) as conn:
                if renumber(conn, "postgresql"):
                    print("postgresql: cache brought to the current schema version",
                          file=sys.stderr)
        if load_only:
            return {"catalog": "postgresql", "load_s": load_times(data, "postgres")}
        root = data / "pg-root"
        root.mkdir(exist_ok=True)
        out = {"catalog": "postgresql", "load_s": load_times(data, "postgres"),
               "results": serve("postgresql", root, url, rounds, rows, data)}
        catalog = open_catalog(url)
        try:
            out["erase"] = erase(catalog, rows)
        finally:
            catalog.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=200, help="requests of each kind")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/kzr-text-bench"))
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--unpartitioned-merge", action="store_true",
                        help="SQLite: also time an erase's merge with one FTS5 table for "
                             "every month (builds it in a scratch database)")
    parser.add_argument("--load-only", action="store_true",
                        help="fill the cache under --data-dir and measure nothing")
    args = parser.parse_args()
    data = args.data_dir.absolute()
    data.mkdir(parents=True, exist_ok=True)
    out = []
    if not args.no_sqlite:
        out.append(run_sqlite(data, args.rows, args.rounds, args.load_only,
                              args.unpartitioned_merge))
    if not args.no_postgres:
        out.append(run_postgres(data, args.rows, args.rounds, args.load_only))
    if args.load_only:
        for run in out:
            print(f"{run['catalog']} load: " + ", ".join(f"{k} {v:.0f} s"
                                                         for k, v in run["load_s"].items()))
        return
    print(f"\n{args.rows:,} transcribed recordings, `kzr-wsgi serve --ui` (2 workers) on "
          "127.0.0.1, one request at a time, pages of 50\n")
    print("| search | catalog | median ms | p99 ms | items | load (1 min) |")
    print("|---|---|---:|---:|---:|---:|")
    for run in out:
        for label, s in run["results"].items():
            print(f"| {label} | {run['catalog']} | {s['median_ms']:.1f} | {s['p99_ms']:.1f} "
                  f"| {s['items']:.0f} | {s['load'][0]:.2f} |")
    print()
    for run in out:
        print(f"{run['catalog']} load: " + ", ".join(f"{k} {v:.0f} s"
                                                     for k, v in run["load_s"].items()))
        print(f"{run['catalog']} erase: {json.dumps(run['erase'])}")
        if "erase_one_table" in run:
            print(f"{run['catalog']} erase, one FTS5 table for every month: "
                  f"{json.dumps(run['erase_one_table'])}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
