"""The UI's JSON API at a million rows: median and p99 answer times over HTTP.

    python benchmarks/ui_bench.py                     # 1,000,000 rows, SQLite (+ PostgreSQL)
    python benchmarks/ui_bench.py --rows 100000 --no-postgres

Fills a catalog with generated rows (the catalog benchmark's generator when there is
one, else the one below: 200 accounts, one of them big, a year of calls, 2 % flagged),
starts ``kzr-wsgi serve --root DIR --ui --viewer …`` on 127.0.0.1 (two workers, as it
ships), and asks the API, one request at a time over a kept-alive connection:

- ``number``: ``?number=N`` for a number with a handful of calls;
- ``q number``: the same through the search field (``?q=N``);
- ``call id``: ``?call_id=ID``;
- ``account + month``: ``?account_id=A&since=2026-03-01&until=2026-03-31`` (the big account);
- ``flagged``: ``?flagged=true``;
- ``scoped viewer``: the first page as a viewer scoped to three accounts;
- ``deep paging``: following ``next`` from page 1 to page 400 (20,000 rows in), each
  page timed.

PostgreSQL runs when its binaries are there (``/usr/lib/postgresql/*/bin``), started by
``tests/pgserver.py`` in a temporary directory on a loopback port. Prints a Markdown table;
``--json FILE`` writes the numbers too. The target: p99 under 100 ms.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent / "tests")]

from servers import HOST, Server, free_port, kzr_argv  # noqa: E402

from kzr_wsgi.audio import FLAGS, AudioInfo  # noqa: E402
from kzr_wsgi.catalog import Catalog, Row, open_catalog  # noqa: E402

VIEWER = ("bench", "bench-pw")
SCOPED = ("customer", "customer-pw")
BATCH = 20_000
YEAR = datetime(2026, 1, 1, tzinfo=timezone.utc)


def generate(n: int, root: str, seed: int = 7) -> Iterator[Row]:
    """``n`` plausible rows: the same for the same seed."""
    rng = random.Random(seed)
    accounts = [f"{i:032x}" for i in range(1, 201)]
    numbers = [f"+1555{i:07d}" for i in range(200_000)]
    names = ["Alice", "Bob", "Carol", "Dave", "Eve", "Mallory", "Oscar", "Peggy", "Trent"]
    seconds = 365 * 86400
    for i in range(n):
        # One account in five calls is the big one: an "account + month" finds thousands.
        account = accounts[0] if rng.random() < 0.2 else rng.choice(accounts)
        start = YEAR + timedelta(seconds=rng.randrange(seconds))
        flags: tuple[str, ...] = ()
        if rng.random() < 0.02:
            flags = (rng.choice(FLAGS),)
        duration = rng.randrange(1_000, 600_000)
        caller = rng.choice(numbers)
        call_id = f"{i:08x}-{rng.getrandbits(64):016x}@10.0.0.{i % 250}"
        sha = f"{rng.getrandbits(256):064x}"
        yield Row(
            id=sha[:32], kind="call", call_id=call_id, recording_id=f"2026-{sha[32:48]}",
            account_id=account, owner_id=None, from_=f"{caller}@{account[:8]}.example",
            to=f"{rng.choice(numbers)}@{account[:8]}.example",
            caller_id_name=f"{rng.choice(names)} {i % 1000}", caller_id_number=caller,
            start=start, duration_ms=duration,
            received_at=start + timedelta(seconds=duration // 1000 + 2),
            size=duration * 2, sha256=sha, content_type="audio/mpeg",
            location=f"{root}/call/{account}/{start:%Y/%m/%d}/call_recording_{i:08x}.mp3",
            segments=(), filename=f"call_recording_{call_id}.mp3",
            audio=AudioInfo("mp3", duration, 8000, 1, 16, flags), self_test=False)


def fill(catalog: Catalog, n: int, root: str) -> float:
    """Insert ``n`` generated rows in batches; return the seconds it took."""
    started = time.monotonic()
    batch: list[Row] = []
    for row in generate(n, root):
        batch.append(row)
        if len(batch) == BATCH:
            catalog.add_rows(batch)
            batch.clear()
    if batch:
        catalog.add_rows(batch)
    return time.monotonic() - started


class Client:
    """One kept-alive connection asking the API as a viewer; times each answer."""

    def __init__(self, port: int, viewer: tuple[str, str]) -> None:
        self.conn = http.client.HTTPConnection(HOST, port, timeout=60)
        token = base64.b64encode(":".join(viewer).encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}

    def get(self, params: dict[str, str]) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        self.conn.request("GET", "/ui/api/recordings?" + urlencode(params), headers=self.headers)
        reply = self.conn.getresponse()
        body = reply.read()
        took = time.perf_counter() - started
        if reply.status != 200:
            raise RuntimeError(f"{params}: {reply.status} {body[:200]!r}")
        return took, json.loads(body)


def stats(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"n": len(times), "median_ms": statistics.median(ordered) * 1000, "p99_ms": p99 * 1000}


def measure(port: int, rounds: int) -> dict[str, dict[str, float]]:
    rng = random.Random(11)
    sample = list(generate(2000, ""))[::10]  # rows known to be there (same seed)
    client = Client(port, VIEWER)
    scoped = Client(port, SCOPED)
    client.get({"limit": "1"})  # warm both workers' connections
    results: dict[str, dict[str, float]] = {}
    cases: dict[str, Any] = {
        "number": lambda: {"number": rng.choice(sample).caller_id_number or ""},
        "q number": lambda: {"q": rng.choice(sample).caller_id_number or ""},
        "call id": lambda: {"call_id": rng.choice(sample).call_id or ""},
        "account + month": lambda: {"account_id": f"{1:032x}", "since": "2026-03-01",
                                    "until": "2026-03-31"},
        "flagged": lambda: {"flagged": "true"},
    }
    for label, params in cases.items():
        times = [client.get(params())[0] for _ in range(rounds)]
        results[label] = stats(times)
    results["scoped viewer"] = stats([scoped.get({})[0] for _ in range(rounds)])
    times: list[float] = []
    took, page = client.get({"limit": "50"})
    for _ in range(399):
        took, page = client.get({"limit": "50", "cursor": page["next"]})
        times.append(took)
    results["deep paging (pages 2-400)"] = stats(times)
    return results


def run_one(label: str, catalog_url: str | None, rows: int, rounds: int, tmp: Path,
            extra: list[str]) -> dict[str, Any]:
    root = tmp / f"root-{label}"
    root.mkdir()
    catalog = open_catalog(catalog_url) if catalog_url else Catalog.for_root(root)
    print(f"{label}: filling {rows:,} rows…", file=sys.stderr, flush=True)
    fill_s = fill(catalog, rows, str(root))
    print(f"{label}: filled in {fill_s:.0f} s", file=sys.stderr, flush=True)
    viewers = tmp / f"viewers-{label}"
    viewers.write_text(f"{':'.join(VIEWER)}\n{':'.join(SCOPED)} "
                       f"{1:032x},{2:032x},{3:032x}\n")
    port = free_port()
    argv = [*kzr_argv(root, port), "--ui", "--viewer-file", str(viewers), *extra]
    if catalog_url:
        argv += ["--catalog", catalog_url]
    with Server(argv, port, log_path=tmp / f"serve-{label}.log"):
        results = measure(port, rounds)
    catalog.close()
    return {"catalog": label, "rows": rows, "fill_s": fill_s, "results": results}


@contextlib.contextmanager
def postgres() -> Iterator[str | None]:
    try:
        from pgserver import postgres_server  # tests/pgserver.py, the catalog's own harness
    except ImportError:
        yield None
        return
    with postgres_server() as server:
        yield server.create_database()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=200, help="requests per search")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    out = []
    with tempfile.TemporaryDirectory(prefix="kzr-ui-bench-", dir=HERE) as name:
        tmp = Path(name)
        out.append(run_one("sqlite", None, args.rows, args.rounds, tmp, []))
        if not args.no_postgres:
            with postgres() as url:
                if url is None:
                    print("PostgreSQL: not available, skipped", file=sys.stderr)
                else:
                    out.append(run_one("postgresql", url, args.rows, args.rounds, tmp, []))
    print(f"\n{out[0]['rows']:,} rows, `kzr-wsgi serve --ui` (2 workers) on 127.0.0.1, "
          "one request at a time\n")
    print("| search | catalog | median ms | p99 ms |")
    print("|---|---|---:|---:|")
    for run in out:
        for label, s in run["results"].items():
            print(f"| {label} | {run['catalog']} | {s['median_ms']:.1f} | {s['p99_ms']:.1f} |")
    print()
    for run in out:
        print(f"filling {run['rows']:,} rows into {run['catalog']}: {run['fill_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
