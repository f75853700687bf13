"""What the analysis pipeline costs uploads: ``serve`` as shipped against ``--no-analyze``.

    python benchmarks/pipeline_load.py              # about four minutes
    python benchmarks/pipeline_load.py --quick      # about a minute and a half
    python benchmarks/pipeline_load.py --engine-down   # transcription with its engine down

Two ``kzr-wsgi serve --root DIR --workers 2`` run side by side on 127.0.0.1: one as it
ships (each upload's analysis queued, one background worker at idle priority working
through them) and one with ``--no-analyze``. Both are first sent a backlog of MP3 uploads
(1 MB each: 131 s of 16 kHz stereo at 64 kbit/s, FreeSWITCH's shape), so the worker has
work waiting for the whole measurement; then both take 1 MB MP3 uploads at concurrency 8
(the bounded Python client of client.py, a new connection per upload, every body
different), in alternating slices so that load from anything else on the machine falls
on both alike. Printed: uploads/s of each with the 1-minute load average during its
slices, the ratio (target: at least 0.9), and the backlog before and after (the worker
kept working throughout). Everything is written under one temporary folder, removed at
the end.

With ``--engine-down`` the two are ``serve --transcribe openai`` pointed at an engine that
refuses every connection (a closed port on 127.0.0.1: every transcription is retried
with backoff, then failed) and ``serve`` with the analysis alone: what an engine that is
down costs uploads.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from audio_cost import MARK_AT, mp3_1m  # noqa: E402
from client import load  # noqa: E402
from servers import HERE, Server, free_port, kzr_argv  # noqa: E402

#: The ratio issue's target: uploads/s with the pipeline on over with it off.
TARGET = 0.9


def pending(root: Path) -> int:
    """Analyses not done yet in the store at ``root`` (0 when it keeps no queue)."""
    path = root / ".kzr" / "catalog.sqlite3"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        found = conn.execute("SELECT COUNT(*) FROM kzr_jobs WHERE state = 'pending'").fetchone()
        return int(found[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def pairs(engine_down: bool) -> list[tuple[str, list[str]]]:
    """The two servers compared: (name, extra options), the one measured first."""
    if not engine_down:
        return [("as shipped (analysis on)", []), ("--no-analyze", ["--no-analyze"])]
    down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    return [("transcribe, engine down", ["--transcribe", "openai", "--transcribe-url", down,
                                         "--transcribe-model", "m"]),
            ("analysis alone", [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter slices, less backlog")
    parser.add_argument("--seconds", type=float, default=None,
                        help="seconds of load per server (default 90, quick 30)")
    parser.add_argument("--rounds", type=int, default=6, help="alternating slices per server")
    parser.add_argument("--backlog", type=int, default=None,
                        help="uploads sent before measuring (default 400, quick 150)")
    parser.add_argument("--dir", default=None, help="where the scratch folder goes")
    parser.add_argument("--engine-down", action="store_true",
                        help="transcription with its engine down against the analysis alone")
    args = parser.parse_args(argv)
    seconds = args.seconds or (30.0 if args.quick else 90.0)
    backlog = args.backlog or (150 if args.quick else 400)
    scratch = Path(tempfile.mkdtemp(prefix="kzr-pipeline-bench-", dir=args.dir or HERE))
    body = mp3_1m()
    servers: dict[str, tuple[Server, Path]] = {}
    try:
        for name, extra in pairs(args.engine_down):
            root = scratch / name.split()[0].strip("-")
            port = free_port()
            server = Server([*kzr_argv(root, port, workers=2), *extra], port,
                            log_path=scratch / f"{root.name}.log")
            server.start()
            servers[name] = (server, root)
        print(f"backlog: {backlog} uploads of {len(body)} bytes to each ...", flush=True)
        for name, (server, _) in servers.items():
            sent = load(server.port, lambda t, k, n=name[:2]: f"/call_recording_bl{n}-{t}-{k}.mp3",
                        seconds=3600, max_requests=backlog, body=body, size=len(body),
                        mark_at=MARK_AT)
            if sent.ok < backlog:
                raise RuntimeError(f"{name}: backlog answered {sent.statuses}")
        first, second = list(servers)
        on_root = servers[first][1]
        before = pending(on_root)
        slice_s = seconds / args.rounds
        print(f"1 MB uploads at concurrency 8: {args.rounds} alternating slices of "
              f"{slice_s:.1f} s each; {before} analyses waiting", flush=True)
        done: dict[str, list[float]] = {name: [0.0, 0.0] for name in servers}
        loads: dict[str, list[float]] = {name: [] for name in servers}
        for i in range(args.rounds):
            order = list(servers) if i % 2 == 0 else list(reversed(servers))
            for name in order:
                server, _ = servers[name]
                os.sync()
                res = load(server.port, lambda t, k, i=i, n=name[:2]:
                           f"/call_recording_m{n}-{i}-{t}-{k}.mp3", seconds=slice_s,
                           body=body, size=len(body), mark_at=MARK_AT)
                if res.failed:
                    raise RuntimeError(f"{name}: {res.statuses}")
                done[name][0] += res.ok
                done[name][1] += res.seconds
                loads[name].append(os.getloadavg()[0])
        after = pending(on_root)
        rates = {name: ok / secs for name, (ok, secs) in done.items()}
        print()
        print(f"{'server':<28} {'uploads/s':>10} {'load avg (1 min) during its slices':>36}")
        for name, rate in rates.items():
            shown = ", ".join(f"{x:.2f}" for x in loads[name])
            print(f"{name:<28} {rate:>10.1f}   mean {statistics.mean(loads[name]):.2f} "
                  f"({shown})")
        ratio = rates[first] / rates[second]
        verdict = "meets" if ratio >= TARGET else "misses"
        print(f"\nratio ({first} / {second}): {ratio:.3f}x ({verdict} the "
              f"{TARGET}x target)")
        print(f"jobs waiting: {before} before the measurement, {after} after "
              f"(the worker kept working throughout)")
        print(f"load average now: {', '.join(f'{x:.2f}' for x in os.getloadavg())}; "
              f"{os.cpu_count()} CPUs")
        return 0
    finally:
        for server, _ in servers.values():
            server.stop()
        time.sleep(0.5)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
