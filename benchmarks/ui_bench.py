"""The UI's JSON API at a million rows: median and p99 answer times over HTTP.

    python benchmarks/ui_bench.py                     # 1,000,000 rows, SQLite (+ PostgreSQL)
    python benchmarks/ui_bench.py --rows 100000 --no-postgres

Fills a catalog with generated rows (``benchmarks/catalog_bench.py``'s generator: two
years of calls, 1,000 accounts, 100,000 numbers, 3 % flagged), starts
``kzr-wsgi serve --root DIR --ui --viewer-file F`` on 127.0.0.1 (two workers, as it
ships) with a viewer file of hashes (argon2id for the operator, bcrypt cost 10 for the
scoped customer, as ``kzr-wsgi viewer add`` and ``htpasswd -B -C 10`` write them;
``--plaintext-viewers`` for plaintext passwords), and asks the API, one request at a time
over a kept-alive connection, with HTTP Basic:

- the first page with no filter; ``number=N``; ``q=N``; ``call_id=ID``; ``q=ID``;
- ``account_id=A&since=…&until=…`` (a month of one account); ``flagged=true``; one ``flag``;
- the first page as a viewer scoped to three accounts;
- paging: following ``next`` 400 times at ``limit=500`` (down to row 200,000), then
  on from there at the page's ``limit=50``; each page timed;
- as a viewer signed in through the form (a session cookie, looked up in the catalog on
  every request): the page itself (``GET /ui/``) and the first page of the listing.

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
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent / "tests")]

# benchmarks/servers.py, before catalog_bench puts tests/ (its own servers.py) first.
from servers import HOST, Server, free_port, kzr_argv  # noqa: E402

# isort: split
from catalog_bench import END, SPAN, account, fill, generate_rows  # noqa: E402

from kzr_wsgi.catalog import Catalog, open_catalog  # noqa: E402

VIEWER = ("bench", "bench-pw")
SCOPED = ("customer", "customer-pw")
#: How deep the paging case goes: pages of 500 from the first, each timed.
DEEP_PAGES = 400


class Client:
    """One kept-alive connection asking the API as a viewer; times each answer.

    With ``session=True`` the viewer signs in through the form first and every request
    carries the session cookie instead of HTTP Basic. A kept-alive connection the server
    closed while it sat idle is opened again, as any HTTP client does (GETs are safe to
    repeat); only the answered attempt is timed, and :attr:`reopened` counts them.
    """

    def __init__(self, port: int, viewer: tuple[str, str], session: bool = False) -> None:
        self.conn = http.client.HTTPConnection(HOST, port, timeout=60)
        #: How often the server had closed the idle connection (printed with the results).
        self.reopened = 0
        token = base64.b64encode(":".join(viewer).encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}
        if session:
            self.headers = {"Cookie": self._sign_in(viewer)}

    def _sign_in(self, viewer: tuple[str, str]) -> str:
        self.conn.request("GET", "/ui/signin")
        reply = self.conn.getresponse()
        page = reply.read().decode()
        nonce = reply.getheader("Set-Cookie", "").split(";")[0]
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found, page
        form = urlencode({"username": viewer[0], "password": viewer[1], "csrf": found[1]})
        self.conn.request("POST", "/ui/signin", body=form, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": nonce})
        reply = self.conn.getresponse()
        reply.read()
        if reply.status != 303:
            raise RuntimeError(f"sign-in: {reply.status}")
        cookies = [c.split(";")[0] for c in reply.headers.get_all("Set-Cookie") or []]
        return next(c for c in cookies if c.startswith("kzr_session="))

    def get(self, params: dict[str, str], path: str = "/ui/api/recordings"
            ) -> tuple[float, dict[str, Any]]:
        query = "?" + urlencode(params) if params else ""
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                self.conn.request("GET", path + query, headers=self.headers)
                reply = self.conn.getresponse()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if attempt == 2:
                    raise
                self.conn.close()  # the next request opens a new connection
                self.reopened += 1
        body = reply.read()
        took = time.perf_counter() - started
        if reply.status != 200:
            raise RuntimeError(f"{params}: {reply.status} {body[:200]!r}")
        return took, json.loads(body) if reply.getheader("Content-Type", "").startswith(
            "application/json") else {}


def stats(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"n": len(times), "median_ms": statistics.median(ordered) * 1000, "p99_ms": p99 * 1000}


def measure(port: int, rounds: int, rows: int) -> dict[str, dict[str, float]]:
    """Median and p99 (ms) of each search, ``rounds`` requests each with varied values."""
    rng = random.Random(11)
    sample = list(generate_rows(2000))  # rows the catalog holds (same generator, same seed)
    client = Client(port, VIEWER)
    scoped = Client(port, SCOPED)
    for _ in range(4):
        # Warm every worker's catalog connection, and its remembered credentials: the
        # first Basic request of a viewer in each worker verifies the hash (what that
        # costs is benchmarks/viewer_check.py's).
        client.get({"limit": "1"})
        scoped.get({"limit": "1"})

    def month() -> dict[str, str]:
        first = (END - SPAN + timedelta(days=rng.randrange(700))).replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        return {"account_id": account(rng.randrange(1000)), "since": f"{first:%Y-%m-%d}",
                "until": f"{last:%Y-%m-%d}"}

    cases: dict[str, Any] = {
        "first page, no filter": lambda: {},
        "number": lambda: {"number": (rng.choice(sample).from_ or "").partition("@")[0]},
        "q = a number": lambda: {"q": rng.choice(sample).caller_id_number or ""},
        "call id": lambda: {"call_id": rng.choice(sample).call_id or ""},
        "q = a call id": lambda: {"q": rng.choice(sample).call_id or ""},
        "account + month": month,
        "flagged only": lambda: {"flagged": "true"},
        "one flag": lambda: {"flag": rng.choice(["empty", "truncated", "silent"])},
    }
    results: dict[str, dict[str, float]] = {}
    for label, params in cases.items():
        results[label] = stats([client.get(params())[0] for _ in range(rounds)])
    results["scoped viewer (3 accounts)"] = stats([scoped.get({})[0] for _ in range(rounds)])
    signed_in = Client(port, VIEWER, session=True)
    results["the page, signed in (a session)"] = stats(
        [signed_in.get({}, "/ui/")[0] for _ in range(rounds)])
    results["first page, no filter, signed in (a session)"] = stats(
        [signed_in.get({})[0] for _ in range(rounds)])
    # Deep paging: walk down with pages of 500 (each timed too), then go on from
    # there with the page's own size, 50 (a cursor is bound to the filters, not to the
    # limit), and time those.
    walk: list[float] = []
    _took, page = client.get({"limit": "500"})
    # Down to 200,000 rows, or half the rows when there are fewer than 400,000.
    for _ in range(min(DEEP_PAGES, rows // 1000) - 1):
        took, page = client.get({"limit": "500", "cursor": page["next"]})
        walk.append(took)
    deep: list[float] = []
    for _ in range(rounds):
        if page["next"] is None:
            break
        took, page = client.get({"limit": "50", "cursor": page["next"]})
        deep.append(took)
    depth = (len(walk) + 1) * 500
    results[f"paging on, 50 a page, past row {depth:,}"] = stats(deep)
    results[f"paging down, 500 a page, to row {depth:,}"] = stats(walk)
    reopened = client.reopened + scoped.reopened + signed_in.reopened
    print(f"idle connections the server had closed (opened again): {reopened}",
          file=sys.stderr, flush=True)
    return results


def viewer_file(path: Path, plaintext: bool) -> None:
    """The operator (every account) and a customer (three accounts), hashed unless asked."""
    from kzr_wsgi.ui.passwords import SecretKind, hash_password

    def secret(password: str, kind: SecretKind) -> str:
        return password if plaintext else hash_password(password, kind)

    path.write_text(f"{VIEWER[0]}:{secret(VIEWER[1], SecretKind.ARGON2ID)}\n"
                    f"{SCOPED[0]}:{secret(SCOPED[1], SecretKind.BCRYPT)} "
                    f"{account(1)},{account(2)},{account(3)}\n")


def run_one(label: str, catalog_url: str | None, rows: int, rounds: int, tmp: Path,
            extra: list[str], plaintext: bool = False) -> dict[str, Any]:
    root = tmp / f"root-{label}"
    root.mkdir()
    catalog = open_catalog(catalog_url) if catalog_url else Catalog.for_root(root)
    print(f"{label}: filling {rows:,} rows…", file=sys.stderr, flush=True)
    fill_s = fill(catalog, rows)
    catalog.close()
    print(f"{label}: filled in {fill_s:.0f} s", file=sys.stderr, flush=True)
    viewers = tmp / f"viewers-{label}"
    viewer_file(viewers, plaintext)
    port = free_port()
    argv = [*kzr_argv(root, port), "--ui", "--viewer-file", str(viewers), *extra]
    if catalog_url:
        argv += ["--catalog", catalog_url]
    with Server(argv, port, log_path=tmp / f"serve-{label}.log", start_timeout=120):
        results = measure(port, rounds, rows)
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
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plaintext-viewers", action="store_true",
                        help="plaintext passwords in the viewer file (the last round's)")
    args = parser.parse_args()
    out = []
    with tempfile.TemporaryDirectory(prefix="kzr-ui-bench-", dir=HERE) as name:
        tmp = Path(name)
        if not args.no_sqlite:
            out.append(run_one("sqlite", None, args.rows, args.rounds, tmp, [],
                               args.plaintext_viewers))
        if not args.no_postgres:
            with postgres() as url:
                if url is None:
                    print("PostgreSQL: not available, skipped", file=sys.stderr)
                else:
                    out.append(run_one("postgresql", url, args.rows, args.rounds, tmp, [],
                                       args.plaintext_viewers))
    said = "plaintext" if args.plaintext_viewers else "hashed (argon2id, bcrypt cost 10)"
    print(f"\n{out[0]['rows']:,} rows, `kzr-wsgi serve --ui` (2 workers) on 127.0.0.1, "
          f"one request at a time, viewer passwords {said}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
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
