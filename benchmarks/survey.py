"""Which WSGI server should ``kzr-wsgi serve`` run? The measurements behind the choice.

``python benchmarks/survey.py`` (about 3 minutes) starts each candidate with 2 workers on
127.0.0.1 around :func:`apps.probe_app` and checks, for each:

- streaming: peak RSS of the whole process tree during a 1 GiB PUT, and whether the app
  was called before the client finished sending (a server that buffers calls it after);
- long uploads: a client that trickles a body for longer than the default worker timeout;
- speed: one 173 MB PUT (best of 3) and 1 MB PUTs at concurrency 8;
- edges: curl's ``Expect: 100-continue``, a chunked body (and ``wsgi.input_terminated``),
  and a body cut short (what the app sees).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import IO, Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from client import load, make_file, put_file, raw_request  # noqa: E402
from servers import (  # noqa: E402
    HERE,
    RssPeak,
    Server,
    free_port,
    granian_argv,
    gunicorn_argv,
    waitress_argv,
)

APP = "apps:probe_app"
Argv = Callable[[int], list[str]]

CANDIDATES: dict[str, Argv] = {
    "gunicorn sync": lambda p: gunicorn_argv(APP, p, worker_class="sync"),
    "gunicorn gthread": lambda p: gunicorn_argv(APP, p, worker_class="gthread", threads=4),
    "granian wsgi": lambda p: granian_argv(APP, p),
    "waitress (1 proc, 4 threads)": lambda p: waitress_argv(APP, p, threads=4),
}


class Run:
    """One candidate server with its own folder and probe log."""

    def __init__(self, base: str, name: str, argv: Argv) -> None:
        self.dir = tempfile.mkdtemp(prefix="srv-", dir=base)
        self.out = os.path.join(self.dir, "out")
        os.mkdir(self.out)
        self.log = os.path.join(self.dir, "probe.jsonl")
        self.port = free_port()
        self.server = Server(
            argv(self.port),
            self.port,
            env={"KZR_BENCH_DIR": self.out, "KZR_BENCH_LOG": self.log},
            log_path=os.path.join(self.dir, "server.log"),
        )
        self.name = name

    def entries(self) -> list[dict[str, Any]]:
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return [json.loads(line) for line in f]

    def reset(self) -> None:
        if os.path.exists(self.log):
            os.remove(self.log)
        shutil.rmtree(self.out)
        os.mkdir(self.out)


def streaming(run: Run, big: str) -> dict[str, Any]:
    with RssPeak(run.server) as rss:
        start = time.time()
        status, secs = put_file(run.port, "/big", big, timeout=300)
    entries = run.entries()
    called = entries[-1]["called"] - start if entries else None
    finished = entries[-1]["finished"] - start if entries else None
    run.reset()
    return {
        "status": status,
        "seconds": round(secs, 2),
        "tree_rss_growth_MB": rss.growth >> 20,
        "worst_process_growth_MB": rss.worst_process_growth >> 20,
        "app_called_after_s": None if called is None else round(called, 3),
        "app_finished_after_s": None if finished is None else round(finished, 3),
    }


def slow(run: Run, seconds: int) -> dict[str, Any]:
    size = seconds * 4096
    pids = run.server.pids()
    head = (
        f"PUT /slow HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n"
        "Content-Type: audio/mpeg\r\n\r\n"
    ).encode()
    start = time.time()
    reply = raw_request(run.port, head, [b"x" * 4096] * seconds, pause=1.0, timeout=seconds + 30)
    entries = run.entries()
    out = {
        "trickle_s": seconds,
        "reply": reply.split(b"\r\n", 1)[0].decode("latin-1") or "<closed>",
        "after_s": round(time.time() - start, 1),
        "app_read": entries[-1]["read"] if entries else None,
        "app_exception": entries[-1].get("exception") if entries else None,
        "worker_replaced": bool(pids - run.server.pids()),
    }
    run.reset()
    return out


def speed(run: Run, f173: str, load_seconds: float) -> dict[str, Any]:
    times = []
    for _ in range(3):
        status, secs = put_file(run.port, "/173", f173)
        assert status == 201, status
        times.append(secs)
    run.reset()
    res = load(run.port, lambda n, i: f"/w{n}/{i}", seconds=load_seconds)
    run.reset()
    return {
        "173MB_best_s": round(min(times), 3),
        "1MB_c8_per_s": round(res.per_second),
        "1MB_statuses": res.statuses,
    }


def _curl_put(port: int, path: str, source: str, header: str, stdin: IO[bytes] | None = None,
              ) -> str:
    """``curl -T SOURCE -H HEADER``; the status it printed ("-": the body from ``stdin``)."""
    p = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", source, "-H", header,
         f"http://127.0.0.1:{port}{path}"],
        stdin=stdin, capture_output=True, text=True, timeout=30,
    )
    return p.stdout


def edges(run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {}
    body = os.path.join(run.dir, "body2m")
    make_file(body, 2 << 20)
    # curl's own Expect handling: it waits up to 1 s for "100 Continue" before sending.
    t0 = time.time()
    status = _curl_put(run.port, "/expect", body, "Expect: 100-continue")
    e = run.entries()
    out["expect_100"] = {
        "status": status,
        "s": round(time.time() - t0, 2),
        "read": e[-1]["read"] if e else None,
    }
    run.reset()
    # Chunked (curl from stdin with Transfer-Encoding: chunked).
    with open(body, "rb") as stdin:
        status = _curl_put(run.port, "/chunked", "-", "Transfer-Encoding: chunked", stdin)
    e = run.entries()
    out["chunked"] = {
        "status": status,
        "read": e[-1]["read"] if e else None,
        "input_terminated": e[-1]["input_terminated"] if e else None,
        "content_length": e[-1]["content_length"] if e else None,
        "transfer_encoding": e[-1]["transfer_encoding"] if e else None,
    }
    run.reset()
    # Cut short: promise 8 MiB, send 1 MiB, close.
    head = b"PUT /short HTTP/1.1\r\nHost: x\r\nContent-Length: 8388608\r\n\r\n"
    reply = raw_request(run.port, head, [os.urandom(1 << 20)], close_early=True, timeout=10)
    time.sleep(1.0)
    e = run.entries()
    out["cut_short"] = {
        "reply": reply.split(b"\r\n", 1)[0].decode("latin-1") or "<none>",
        "app_called": bool(e),
        "app_read": e[-1]["read"] if e else None,
        "app_exception": e[-1].get("exception") if e else None,
        "files_left": len(os.listdir(run.out)),
    }
    run.reset()
    os.remove(body)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--slow-seconds", type=int, default=40)
    ap.add_argument("--load-seconds", type=float, default=8.0)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="kzr-survey-", dir=HERE)
    results: dict[str, dict[str, Any]] = {}
    try:
        big = make_file(os.path.join(base, "1g"), 1 << 30)
        f173 = make_file(os.path.join(base, "173m"), 173_000_000)
        runs = {name: Run(base, name, argv) for name, argv in CANDIDATES.items()}
        # gunicorn with a short timeout, to show what the timeout does without a long wait.
        runs["gunicorn sync --timeout 10"] = Run(
            base, "gs10", lambda p: gunicorn_argv(APP, p, worker_class="sync", timeout=10)
        )
        runs["gunicorn gthread --timeout 10"] = Run(
            base, "gt10", lambda p: gunicorn_argv(APP, p, worker_class="gthread", timeout=10)
        )
        for r in runs.values():
            r.server.start()
        try:
            # Trickling uploads run side by side (one thread each) while nothing else runs.
            slow_out: dict[str, Any] = {}
            threads = [
                threading.Thread(
                    target=lambda n=n, r=r: slow_out.__setitem__(n, slow(r, args.slow_seconds))
                )
                for n, r in runs.items()
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for name, r in runs.items():
                results[name] = {"slow_upload": slow_out[name]}
                if name in CANDIDATES:
                    results[name]["stream_1GiB"] = streaming(r, big)
                    results[name]["speed"] = speed(r, f173, args.load_seconds)
                    results[name]["edges"] = edges(r)
                print(name, json.dumps(results[name], indent=1), flush=True)
        finally:
            for r in runs.values():
                r.server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
