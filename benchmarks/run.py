"""kzr_wsgi against the floor, the hand-written Flask route and nginx, in one run.

    python benchmarks/run.py            # full run, a few minutes
    python benchmarks/run.py --quick    # short run, about a minute and a half
    python benchmarks/run.py --only inspect   # just some row groups (see --help)

Everything is started here on 127.0.0.1, each server with 2 workers, one after another
(never two at once), and stopped again; every file written goes under one temporary
folder beside this script that is removed at the end. Only the table (results.json) and
the chart (benchmark.png) are left, in benchmarks/results/.

Rows:
- ``kzr_wsgi``: ``kzr-wsgi serve --root DIR --port P --workers 2``, the disk store as it
  ships (sha256, fsync, audio inspection, the SQLite catalog), run from this checkout
  (``python -m kzr_wsgi``);
- ``floor``: a bare WSGI app copying ``wsgi.input`` to a file in 1 MiB reads
  (:func:`apps.floor_app`), under each candidate server; the best is the reference;
- ``durable``: the floor under granian plus ``fsync`` (no hash), and the *durable hashed
  floor* (:func:`apps.durable_hashed_floor_app`): copy, sha256 and fsync one after
  another, what a receiver that promises what kzr_wsgi does would do without overlap;
- ``flask``: the hand-written route (``shutil.copyfileobj(request.stream, f)``) under
  gunicorn as most Flask shops run it (sync workers) and under kzr_wsgi's own server;
- ``nginx``: its WebDAV module (``dav_methods PUT``), when nginx is installed;
- ``inspect``: ``kzr-wsgi serve`` twice, with audio inspection (the default) and with
  ``--no-inspect``, both sent real MP3 bodies (16 kHz stereo 64 kbit/s, FreeSWITCH's shape:
  6 hours in the 173 MB one, 131 s in each 1 MB one; see audio_cost.py) instead of random
  bytes, so the inspector does its full work: its cost is the difference (issue 9).

Every row is sent the same real MP3 bodies (LAME frames, see audio_cost.py), so the
kzr_wsgi row inspects real audio as it would in service.

Workloads:
- one 173 MB upload, best of 3 (seconds);
- 1 MB uploads at concurrency 8 for a fixed time, every body different, a new
  connection per upload (uploads/s), sent by the bounded Python client in client.py
  (http.client in 8 threads) or, with ``--client wrk``, by wrk with put1m.lua;
- peak RSS growth of the server's whole process tree during one 1 GiB upload answered 2xx;
- pass-through cost of the middleware, in process (ns per call), beside werkzeug's ProxyFix
  and as a share of a small Flask app's route.

Before every timed workload the page cache's dirty data is written out (``os.sync``), so one
row's writeback does not slow the next.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from audio_cost import MARK_AT, make_mp3, mp3_1m  # noqa: E402
from client import LoadResult, load, make_file, put_file  # noqa: E402
from servers import (  # noqa: E402
    HERE,
    Nginx,
    RssPeak,
    Server,
    free_port,
    granian_argv,
    gunicorn_argv,
    kzr_argv,
    kzr_available,
    nginx_binary,
    waitress_argv,
)

RESULTS = HERE / "results"
SIZE_173 = 173_000_000
SIZE_1G = 1 << 30
# Issue 13's targets for the kzr_wsgi row (speed over the reference's; higher is better).
TARGETS = {
    "173MB vs best floor": 0.5,
    "173MB vs floor under gthread": 1.3,
    "173MB vs durable hashed floor": 1.0,
    "1MB vs best floor": 0.7,
    "1MB vs nginx": 0.6,
}
RSS_TARGET_MB = 8
#: The durable hashed floor's row (issue 13's reference for the 173 MB upload).
DURABLE_HASHED = "durable hashed floor, granian wsgi"
PASS_TARGET_PCT = 3.0
# Issue 9: what audio inspection may add to an MP3 upload, in per cent.
INSPECT_TARGET_PCT = 10.0
#: Row groups --only can pick, plus "passthrough" for the in-process pass-through cost.
GROUPS = ("kzr", "floor", "durable", "flask", "nginx", "inspect", "passthrough")


@dataclass
class Row:
    """One server configuration and what it measured."""

    name: str
    group: str  # kzr, floor, durable, flask, nginx, inspect
    note: str = ""
    #: What the row uploads: real MP3 (every row, by default), or random bytes.
    body: str = "mp3"
    available: bool = True
    seconds_173: float | None = None
    uploads_per_s: float | None = None
    load_statuses: dict[str, int] = field(default_factory=dict)
    rss_growth_mb: float | None = None
    rss_worst_process_mb: float | None = None
    rss_status: int | None = None


def kzr_server_settings() -> tuple[str, dict[str, Any]]:
    """Which server ``kzr-wsgi serve`` embeds, and its settings, read from kzr_wsgi itself."""
    try:
        from kzr_wsgi.server import gunicorn_options
    except Exception:  # not written yet, or moved away from gunicorn
        return "gunicorn gthread (assumed)", {
            "worker_class": "gthread",
            "threads": 16,
            "timeout": 60,
        }
    opts = gunicorn_options("127.0.0.1", 0, workers=2)
    return f"gunicorn {opts['worker_class']}", opts


def kzr_style_gunicorn(app: str, port: int, opts: dict[str, Any]) -> list[str]:
    """gunicorn with the worker class, threads and timeout kzr_wsgi's server uses."""
    return gunicorn_argv(
        app,
        port,
        worker_class=opts.get("worker_class", "gthread"),
        threads=int(opts.get("threads", 16)),
        timeout=opts.get("timeout"),
    )


def wrk_load(port: int, seconds: float) -> LoadResult:
    """1 MB PUTs at concurrency 8 by wrk (2 threads, keep-alive) with put1m.lua."""
    p = subprocess.run(
        [
            "wrk",
            "-t2",
            "-c8",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(HERE / "put1m.lua"),
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    m = re.search(
        r"WRK_RESULT requests=(\d+) ok=(\d+) status_errors=(\d+) socket_errors=(\d+) "
        r"duration_us=(\d+)",
        p.stdout,
    )
    if not m:
        raise RuntimeError(f"wrk gave no result: {p.stdout[-500:]} {p.stderr[-500:]}")
    req, ok, st, so, us = (int(x) for x in m.groups())
    return LoadResult(
        ok=ok,
        failed=st + so,
        seconds=us / 1e6,
        statuses={"2xx": ok, "non-2xx": st, "socket errors": so},
    )


def _load_path(row: int, round_: int) -> Callable[[int, int], str]:
    # A fresh recording name per upload: the store's idempotency never short-cuts a body.
    return lambda thread, k: f"/call_recording_c{row}-{round_}-{thread}-{k}.mp3"


class Bench:
    """The run: one scratch folder, the body files, the servers, the rows.

    All servers are started first and stay idle until their turn; each workload then goes
    round the rows several times (round-robin), so load from anything else on the machine
    falls on every row alike instead of on whichever row happened to run at that moment.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.scratch = tempfile.mkdtemp(prefix="kzr-bench-", dir=args.dir or HERE)
        # Bodies are made when a row needs them (--only may leave them unused).
        self._bodies: dict[str, str] = {}
        self._mp3_1m: bytes | None = None
        self.rows: list[Row] = []
        self.live: list[tuple[Row, Server, int, str, bool, bool]] = []

    def body_173(self, row: Row) -> str:
        """The 173 MB body file ``row`` uploads, made on first use."""
        if row.body not in self._bodies:
            path = os.path.join(self.scratch, f"body-173M-{row.body}")
            maker = make_mp3 if row.body == "mp3" else make_file
            self._bodies[row.body] = maker(path, SIZE_173)
        return self._bodies[row.body]

    def body_1g(self) -> str:
        """The 1 GiB body file of the RSS workload, made on first use."""
        if "1G" not in self._bodies:
            self._bodies["1G"] = make_file(os.path.join(self.scratch, "body-1G"), SIZE_1G)
        return self._bodies["1G"]

    def load_body(self, row: Row) -> dict[str, Any]:
        """``load()``'s keywords for ``row``'s 1 MB bodies (random unless MP3)."""
        if row.body != "mp3":
            return {}
        if self._mp3_1m is None:
            self._mp3_1m = mp3_1m()
        return {"body": self._mp3_1m, "size": len(self._mp3_1m), "mark_at": MARK_AT}

    def wanted(self, group: str) -> bool:
        """Whether --only (if given) selects this row group."""
        return not self.args.only or group in self.args.only

    def add(
        self, row: Row, start: Callable[[str, int], Server], *, rss: bool, owns_dir: bool = False
    ) -> None:
        """Start a server for ``row``, writing under its own fresh folder."""
        if not self.wanted(row.group):
            return
        self.rows.append(row)
        out = os.path.join(self.scratch, f"row{len(self.rows)}")
        os.mkdir(out)
        port = free_port()
        server = start(out, port)
        try:
            server.start()
        except Exception as exc:
            row.available = False
            row.note = f"failed to start: {exc}"[:300]
            print(f"  {row.name}: {row.note}", flush=True)
            server.stop()
            return
        self.live.append((row, server, port, out, rss, owns_dir))

    def stop_all(self) -> None:
        for _, server, *_ in self.live:
            server.stop()

    def close(self) -> None:
        self.stop_all()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _clear(self, out: str, owns_dir: bool) -> None:
        # The comparison apps and nginx keep nothing in memory about their files, so they
        # are removed between workloads; kzr_wsgi's store keeps its tree until the end.
        if owns_dir:
            return
        for name in os.listdir(out):
            p = os.path.join(out, name)
            shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)

    def _fail(self, row: Row, server: Server, exc: Exception) -> None:
        row.available = False
        row.note = f"failed: {exc}"[:300]
        print(f"  {row.name}: {row.note}\n{server.tail()}", flush=True)

    def run(self) -> None:
        """Run the workloads round-robin over the live servers."""
        times: dict[str, list[float]] = {}
        print(f"  one 173 MB upload, {self.args.repeat_173} rounds ...", flush=True)
        for i in range(self.args.repeat_173):
            for n, (row, server, port, out, _, owns) in enumerate(self.live):
                if not row.available:
                    continue
                os.sync()
                try:
                    ext = "mp3" if row.body == "mp3" else "wav"
                    status, secs = put_file(
                        port, f"/call_recording_big-{n}-{i}.{ext}", self.body_173(row)
                    )
                    if not 200 <= status < 300:
                        raise RuntimeError(f"173 MB upload answered {status}")
                except Exception as exc:
                    self._fail(row, server, exc)
                    continue
                times.setdefault(row.name, []).append(secs)
                self._clear(out, owns)
        for row, *_ in self.live:
            if row.name in times:
                row.seconds_173 = min(times[row.name])

        rounds = self.args.load_rounds
        slice_s = self.args.load_seconds / rounds
        print(
            f"  1 MB uploads at concurrency 8, {rounds} rounds of {slice_s:.1f} s ...", flush=True
        )
        ok: dict[str, tuple[int, float]] = {}
        for i in range(rounds):
            for n, (row, server, port, out, _, owns) in enumerate(self.live):
                if not row.available:
                    continue
                os.sync()
                try:
                    if self.args.client == "wrk":
                        res = wrk_load(port, slice_s)
                    else:
                        res = load(port, _load_path(n, i), seconds=slice_s,
                                   **self.load_body(row))
                except Exception as exc:
                    self._fail(row, server, exc)
                    continue
                done, secs = ok.get(row.name, (0, 0.0))
                ok[row.name] = (done + res.ok, secs + res.seconds)
                for k, v in res.statuses.items():
                    row.load_statuses[str(k)] = row.load_statuses.get(str(k), 0) + v
                self._clear(out, owns)
        for row, *_ in self.live:
            if row.name in ok:
                done, secs = ok[row.name]
                row.uploads_per_s = done / secs if secs else 0.0

        print("  one 1 GiB upload, peak RSS ...", flush=True)
        for n, (row, server, port, out, rss, owns) in enumerate(self.live):
            if not (rss and row.available):
                continue
            os.sync()
            try:
                with RssPeak(server) as peak:
                    row.rss_status, _ = put_file(
                        port, f"/call_recording_rss-{n}.wav", self.body_1g(), timeout=300
                    )
            except Exception as exc:
                self._fail(row, server, exc)
                continue
            row.rss_growth_mb = peak.growth / 2**20
            row.rss_worst_process_mb = peak.worst_process_growth / 2**20
            self._clear(out, owns)


def server_rows(bench: Bench) -> str:
    """Start a server for every row; the name of kzr_wsgi's server."""
    kzr_name, kzr_opts = kzr_server_settings()
    log = os.path.join(bench.scratch, "server-{}.log")

    def wsgi(argv: Callable[[int], list[str]], tag: str) -> Callable[[str, int], Server]:
        return lambda out, port: Server(
            argv(port), port, env={"KZR_BENCH_DIR": out}, log_path=log.format(tag)
        )

    print("  starting servers ...", flush=True)
    why = kzr_available()
    inspect_rows(bench, log)
    if why is None:
        bench.add(
            Row("kzr_wsgi (kzr-wsgi serve)", "kzr", note=kzr_name),
            lambda out, port: Server(
                kzr_argv(out, port, workers=2), port, log_path=log.format("kzr")
            ),
            rss=True,
            owns_dir=True,
        )
    elif bench.wanted("kzr"):
        bench.rows.append(
            Row(
                "kzr_wsgi (kzr-wsgi serve)",
                "kzr",
                available=False,
                note=f"not available: import kzr_wsgi.cli failed ({why})"[:200],
            )
        )
        print(f"  kzr_wsgi: not available ({why})")
    full = not bench.args.quick
    floors: list[tuple[str, Callable[[int], list[str]]]] = [
        (
            f"floor, {kzr_name} as kzr_wsgi runs it",
            lambda p: kzr_style_gunicorn("apps:floor_app", p, kzr_opts),
        ),
        ("floor, gunicorn sync", lambda p: gunicorn_argv("apps:floor_app", p)),
        ("floor, granian wsgi", lambda p: granian_argv("apps:floor_app", p)),
    ]
    if full:
        floors.append(
            (
                "floor, waitress (1 process, 8 threads)",
                lambda p: waitress_argv("apps:floor_app", p, threads=8),
            )
        )
    for i, (name, argv) in enumerate(floors):
        bench.add(Row(name, "floor"), wsgi(argv, f"floor{i}"), rss=full)
    # What fsync alone costs on this disk (no target), and issue 13's durable hashed floor.
    bench.add(
        Row("durable floor (floor + fsync), granian wsgi", "durable", note="fsync, no hash"),
        wsgi(lambda p: granian_argv("apps:durable_floor_app", p), "durable"),
        rss=False,
    )
    bench.add(
        Row(DURABLE_HASHED, "durable", note="copy, sha256, fsync in turn"),
        wsgi(lambda p: granian_argv("apps:durable_hashed_floor_app", p), "durable-hashed"),
        rss=False,
    )
    bench.add(
        Row("flask route, gunicorn sync", "flask"),
        wsgi(lambda p: gunicorn_argv("apps:flask_app", p), "flask-sync"),
        rss=False,
    )
    bench.add(
        Row(f"flask route, {kzr_name} as kzr_wsgi runs it", "flask"),
        wsgi(lambda p: kzr_style_gunicorn("apps:flask_app", p, kzr_opts), "flask-kzr"),
        rss=False,
    )
    if full:
        bench.add(
            Row("flask route, granian wsgi", "flask"),
            wsgi(lambda p: granian_argv("apps:flask_app", p), "flask-granian"),
            rss=False,
        )
    if nginx_binary():
        bench.add(
            Row("nginx dav_methods PUT", "nginx", note="no fsync"),
            lambda out, port: Nginx(out, port, workers=2),
            rss=full,
        )
    elif bench.wanted("nginx"):
        bench.rows.append(
            Row(
                "nginx dav_methods PUT",
                "nginx",
                available=False,
                note="not available: nginx is not installed",
            )
        )
        print("  nginx: not installed, row skipped")
    return kzr_name


def inspect_rows(bench: Bench, log: str) -> None:
    """Issue 9's pair: ``kzr-wsgi serve`` with and without audio inspection, MP3 bodies."""

    def start(inspect: bool) -> Callable[[str, int], Server]:
        return lambda out, port: Server(
            kzr_argv(out, port, workers=2, inspect=inspect), port,
            log_path=log.format(f"inspect-{inspect}"),
        )

    for inspect, name in ((True, "kzr_wsgi, MP3 bodies, inspecting"),
                          (False, "kzr_wsgi, MP3 bodies, --no-inspect")):
        note = "inspection on" if inspect else "--no-inspect"
        bench.add(Row(name, "inspect", note=note, body="mp3"), start(inspect), rss=False,
                  owns_dir=True)


def inspection_cost(rows: list[Row]) -> dict[str, float | None]:
    """What inspection added, in per cent, for the 173 MB upload and the 1 MB load."""
    on = next((r for r in rows if r.group == "inspect" and r.note == "inspection on"), None)
    off = next((r for r in rows if r.group == "inspect" and r.note == "--no-inspect"), None)
    out: dict[str, float | None] = {"173MB MP3 %": None, "1MB MP3 %": None}
    if on is None or off is None:
        return out
    if on.seconds_173 and off.seconds_173:
        out["173MB MP3 %"] = (on.seconds_173 / off.seconds_173 - 1) * 100
    if on.uploads_per_s and off.uploads_per_s:
        out["1MB MP3 %"] = (off.uploads_per_s / on.uploads_per_s - 1) * 100
    return out


# -- pass-through cost, in process -------------------------------------------------------


def _hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def _call(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> None:
    body = app(environ, lambda status, headers, exc_info=None: None)
    for _ in body:
        pass
    close = getattr(body, "close", None)
    if close is not None:
        close()


def _extra(took: dict[str, list[float]], name: str, base: str) -> float:
    # Median of the per-round differences: each pair ran back to back, so a burst of load
    # from elsewhere moves both sides of most pairs together.
    return statistics.median(a - b for a, b in zip(took[name], took[base], strict=True))


def passthrough(quick: bool) -> dict[str, Any]:
    """ns per call that KazooRecordings and ProxyFix add to a request they pass through.

    Each variant is timed in turn, round after round; what a wrapper adds is the median of
    its per-round difference from the unwrapped call (robust on a shared 2-core machine).
    """
    from flask import Flask
    from werkzeug.middleware.proxy_fix import ProxyFix
    from werkzeug.test import EnvironBuilder

    # Short timings, many rounds: pairs close in time are what the medians compare.
    number = 500
    rounds = 31 if quick else 101
    result: dict[str, Any] = {"requests": {}}
    wrap: Callable[[Any], Any] | None = None
    try:
        from kzr_wsgi import KazooRecordings

        def wrap(app: Any) -> Any:
            return KazooRecordings(app, lambda recording: None)
    except Exception as exc:  # the middleware is not there yet
        result["kzr_note"] = f"not available: {type(exc).__name__}: {exc}"

    # static_folder=None: Flask's own /static route would shadow the host route below.
    flask_app = Flask("kzr_bench_host", static_folder=None)

    @flask_app.route("/api/users/<int:user_id>", methods=["GET", "PUT"])
    def user(user_id: int) -> str:
        return "ok"

    @flask_app.route("/static/<path:name>")
    def static_file(name: str) -> str:
        return "ok"

    variants: dict[str, tuple[Any, int]] = {
        "bare": (_hello, number),
        "ProxyFix": (ProxyFix(_hello), number),
        "flask": (flask_app.wsgi_app, number // 10),
    }
    if wrap is not None:
        variants["KazooRecordings"] = (wrap(_hello), number)
        variants["flask+KazooRecordings"] = (wrap(flask_app.wsgi_app), number // 10)
    requests = {
        "PUT /api/users/7": dict(
            method="PUT", path="/api/users/7", data=b"{}", content_type="application/json"
        ),
        "GET /static/song.mp3": dict(method="GET", path="/static/song.mp3"),
    }
    for label, kw in requests.items():
        environ = EnvironBuilder(**kw).get_environ()  # type: ignore[arg-type]
        took: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):
            for name, (app, n) in variants.items():
                env = dict(environ)
                timer = timeit.Timer(functools.partial(_call, app, env))
                took[name].append(timer.timeit(n) / n * 1e9)

        r: dict[str, float] = {
            "bare app ns": statistics.median(took["bare"]),
            "ProxyFix adds ns": _extra(took, "ProxyFix", "bare"),
            "flask route ns": statistics.median(took["flask"]),
        }
        if wrap is not None:
            r["KazooRecordings adds ns"] = _extra(took, "KazooRecordings", "bare")
            r["KazooRecordings on flask route %"] = (
                _extra(took, "flask+KazooRecordings", "flask") / r["flask route ns"] * 100
            )
        result["requests"][label] = r
    return result


# -- report ------------------------------------------------------------------------------


def ratios(rows: list[Row]) -> dict[str, float | None]:
    """The kzr_wsgi row's ratios (higher is better: kzr speed over the reference's)."""

    def pick(
        group: str, key: Callable[[Row], float | None], best: Callable[..., Any]
    ) -> float | None:
        vals = [v for r in rows if r.group == group and r.available and (v := key(r)) is not None]
        return best(vals) if vals else None

    def named(name: str) -> Row | None:
        return next((r for r in rows if r.name == name and r.available), None)

    kzr = next((r for r in rows if r.group == "kzr" and r.available), None)
    gthread = next((r for r in rows if r.group == "floor" and r.available
                    and r.name.endswith("as kzr_wsgi runs it")), None)
    hashed = named(DURABLE_HASHED)
    flask_sync = named("flask route, gunicorn sync")
    floor173 = pick("floor", lambda r: r.seconds_173, min)
    floor1m = pick("floor", lambda r: r.uploads_per_s, max)
    nginx1m = pick("nginx", lambda r: r.uploads_per_s, max)
    out: dict[str, float | None] = dict.fromkeys(TARGETS)
    if kzr is None or kzr.seconds_173 is None or kzr.uploads_per_s is None:
        return out

    def faster(ref: Row | None) -> float | None:
        return ref.seconds_173 / kzr.seconds_173 if ref and ref.seconds_173 else None

    def more(ref: Row | None) -> float | None:
        return kzr.uploads_per_s / ref.uploads_per_s if ref and ref.uploads_per_s else None

    if floor173:
        out["173MB vs best floor"] = floor173 / kzr.seconds_173
    out["173MB vs floor under gthread"] = faster(gthread)
    out["173MB vs durable hashed floor"] = faster(hashed)
    if floor1m:
        out["1MB vs best floor"] = kzr.uploads_per_s / floor1m
    if nginx1m:
        out["1MB vs nginx"] = kzr.uploads_per_s / nginx1m
    # Informative, no target.
    out["1MB vs floor under gthread"] = more(gthread)
    out["1MB vs durable hashed floor"] = more(hashed)
    out["173MB vs flask/gunicorn"] = faster(flask_sync)
    out["1MB vs flask/gunicorn"] = more(flask_sync)
    return out


def table(rows: list[Row]) -> str:
    """The results as a fixed-width table, with each row's ratios to the references."""
    floor173 = min(
        (r.seconds_173 for r in rows if r.group == "floor" and r.seconds_173), default=None
    )
    floor1m = max(
        (r.uploads_per_s for r in rows if r.group == "floor" and r.uploads_per_s), default=None
    )
    head = (
        f"{'server':<48} {'173MB s':>8} {'MB/s':>6} {'x floor':>7} {'1MB/s':>6} {'x floor':>7} "
        f"{'RSS+ MB':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if not r.available:
            lines.append(f"{r.name:<48} {r.note}")
            continue
        s173 = r.seconds_173 or 0.0
        up = r.uploads_per_s or 0.0
        x173 = f"{floor173 / s173:.2f}" if floor173 and s173 else "-"
        x1m = f"{up / floor1m:.2f}" if floor1m else "-"
        rss = f"{r.rss_growth_mb:.1f}" if r.rss_growth_mb is not None else "-"
        mbs = SIZE_173 / s173 / 1e6 if s173 else 0.0
        lines.append(
            f"{r.name:<48} {s173:>8.3f} {mbs:>6.0f} {x173:>7} {up:>6.0f} {x1m:>7} {rss:>8}"
        )
    return "\n".join(lines)


def chart(rows: list[Row], path: str) -> str | None:
    """A PNG of both throughput workloads; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    shown = [r for r in rows if r.available and r.seconds_173]
    colors = {
        "kzr": "#d62728", "floor": "#7f7f7f", "durable": "#9467bd", "flask": "#1f77b4",
        "nginx": "#2ca02c", "inspect": "#ff7f0e",
    }
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.55 * len(shown) + 1.8), sharey=True)
    names = [r.name for r in shown]
    mbs = [SIZE_173 / (r.seconds_173 or 1) / 1e6 for r in shown]
    ups = [r.uploads_per_s or 0 for r in shown]
    for ax, vals, title in (
        (axes[0], mbs, "one 173 MB upload (MB/s, best of runs)"),
        (axes[1], ups, "1 MB uploads, concurrency 8 (uploads/s)"),
    ):
        ax.barh(names, vals, color=[colors[r.group] for r in shown])
        ax.set_title(title, fontsize=10)
        for y, v in enumerate(vals):
            ax.text(v, y, f" {v:.0f}", va="center", fontsize=8)
        ax.margins(x=0.15)
    axes[0].invert_yaxis()  # once: the y axis is shared, a second call would undo it
    fig.suptitle(
        "kzr_wsgi vs floor, Flask route and nginx (2 workers, loopback, higher is better)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; 0 even when a target is missed (it is a report)."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="shorter loads, fewer rows and repeats")
    ap.add_argument(
        "--client",
        choices=["python", "wrk"],
        default="python",
        help="load generator for the 1 MB workload (default: the Python client)",
    )
    ap.add_argument(
        "--dir", help="where bodies and uploads are written (default: beside this script)"
    )
    ap.add_argument(
        "--only",
        type=lambda text: [g.strip() for g in text.split(",") if g.strip()],
        default=None,
        metavar="GROUP[,GROUP]",
        help=f"run only these row groups ({', '.join(GROUPS)}); e.g. --only inspect",
    )
    args = ap.parse_args(argv)
    unknown = [g for g in args.only or () if g not in GROUPS]
    if unknown:
        ap.error(f"--only: unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    args.load_seconds = 3.0 if args.quick else 10.0
    args.repeat_173 = 2 if args.quick else 3
    args.load_rounds = 2 if args.quick else 4
    if args.client == "wrk" and not shutil.which("wrk"):
        ap.error("--client wrk: wrk is not installed")

    t0 = time.monotonic()
    client_name = "wrk + put1m.lua" if args.client == "wrk" else "the Python client (8 threads)"
    print(
        f"kzr_wsgi benchmark: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"1 MB load by {client_name}"
        f" for {args.load_seconds:.0f} s",
        flush=True,
    )
    load_before = os.getloadavg()
    bench = Bench(args)
    try:
        kzr_server = server_rows(bench)
        bench.run()
    finally:
        bench.close()
    passing: dict[str, Any] = {"requests": {}}
    if bench.wanted("passthrough"):
        print("  pass-through (in process) ...", flush=True)
        passing = passthrough(args.quick)
    rows = bench.rows
    rat = ratios(rows)

    print()
    print(table(rows))
    print(
        "\n'x floor' is speed over the best floor row (higher is better); RSS+ is the peak growth"
    )
    print("of the server's whole process tree during one 1 GiB upload. kzr_wsgi uses", kzr_server)
    if not nginx_binary():
        print("nginx is not installed: no nginx row.")
    print("\nkzr_wsgi targets (issue 13):")
    for name, target in TARGETS.items():
        v = rat[name]
        verdict = "n/a" if v is None else ("met" if v >= target else "MISSED")
        print(
            f"  {name:<30} {'-' if v is None else f'{v:.2f}x':>7}  target >= {target}x  {verdict}"
        )
    for name in ("1MB vs floor under gthread", "1MB vs durable hashed floor",
                 "173MB vs flask/gunicorn", "1MB vs flask/gunicorn"):
        v = rat.get(name)
        if v is not None:
            print(f"  {name:<30} {v:.2f}x  (no target)")
    kzr = next((r for r in rows if r.group == "kzr" and r.available), None)
    if kzr and kzr.rss_growth_mb is not None:
        verdict = (
            "met"
            if kzr.rss_growth_mb <= RSS_TARGET_MB and kzr.rss_status in (200, 201, 204)
            else "MISSED"
        )
        print(
            f"  {'1 GiB peak RSS growth':<26} {kzr.rss_growth_mb:>6.1f}M  "
            f"target <= {RSS_TARGET_MB} MB, answered {kzr.rss_status}  {verdict}"
        )
    cost = inspection_cost(rows)
    if any(v is not None for v in cost.values()):
        print("\naudio inspection (issue 9): MP3 bodies, inspecting vs --no-inspect:")
        for name, v in cost.items():
            verdict = "n/a" if v is None else ("met" if v <= INSPECT_TARGET_PCT else "MISSED")
            shown = "-" if v is None else f"{v:+.1f}%"
            print(f"  {name:<26} {shown:>7}  target <= +{INSPECT_TARGET_PCT:.0f}%  {verdict}")
    print("\npass-through, in process (ns per call; median of paired rounds):")
    if "kzr_note" in passing:
        print(f"  KazooRecordings {passing['kzr_note']}")
    for label, r in passing["requests"].items():
        parts = [f"{k} {v:.0f}" if "%" not in k else f"{k} {v:.2f}" for k, v in r.items()]
        print(f"  {label}: " + "; ".join(parts))
        if "KazooRecordings adds ns" in r:
            ok = (
                r["KazooRecordings adds ns"] <= r["ProxyFix adds ns"]
                and r["KazooRecordings on flask route %"] <= PASS_TARGET_PCT
            )
            print(
                f"    target: adds <= ProxyFix and <= {PASS_TARGET_PCT}% of a Flask route: "
                f"{'met' if ok else 'MISSED'}"
            )

    RESULTS.mkdir(exist_ok=True)
    png = chart(rows, str(RESULTS / "benchmark.png"))
    with open(RESULTS / "results.json", "w") as f:
        json.dump(
            {
                "rows": [asdict(r) for r in rows],
                "ratios": rat,
                "inspection_cost_pct": cost,
                "passthrough": passing,
                "client": args.client,
                "quick": args.quick,
                "kzr_server": kzr_server,
            },
            f,
            indent=1,
        )
    load_after = os.getloadavg()
    print(
        f"\nload average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f}: other "
        "processes on the machine share its cores and disk with this run"
    )
    print(
        f"\nwrote {RESULTS / 'results.json'}"
        + (f" and {png}" if png else " (no chart: pip install matplotlib)")
    )
    print(f"total {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
