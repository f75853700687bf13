"""Load held, nothing lost: N concurrent uploaders against a real ``kzr-wsgi serve``.

A bounded script, not a timed test::

    python benchmarks/load_test.py                       # 32 uploaders, 60 s, 1 MiB bodies
    python benchmarks/load_test.py --concurrency 16 --seconds 5

It starts ``kzr-wsgi serve`` on 127.0.0.1 (a free port, a temporary root unless
``--root`` is given), and runs ``--concurrency`` threads, each PUTting distinct 1 MiB
bodies as Kazoo does (a new connection per recording, ``Content-Length``, a
``recording_id``) until ``--seconds`` have passed. After every acknowledged (2xx)
upload the thread finds the stored file through the store's own reader
(:meth:`DirectoryStore.open`), checks its sha256 against what it sent, and deletes it
and its sidecar, so the disk never fills.

It prints uploads/s and the counts: ``acknowledged`` (2xx), ``lost`` (acknowledged
but not found), ``mismatched`` (found, but other bytes, or a wrong ETag), ``failed``
(not acknowledged: Kazoo would retry). The exit status is 0 only when every upload
was acknowledged and none was lost or mismatched. The server is stopped (its process
group only) whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests")]

from servers import free_port, spawn  # noqa: E402

from kzr_wsgi import DirectoryStore, Kind, Name  # noqa: E402
from kzr_wsgi.errors import NotFound  # noqa: E402
from kzr_wsgi.naming import SIDECAR_SUFFIX  # noqa: E402

HOST = "127.0.0.1"


@dataclass
class Counts:
    """What happened to the uploads; shared by the uploader threads under ``lock``."""

    started: int = 0
    acknowledged: int = 0
    lost: int = 0
    mismatched: int = 0
    failed: int = 0
    bytes_acknowledged: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: int) -> None:
        with self.lock:
            for key, value in deltas.items():
                setattr(self, key, getattr(self, key) + value)

    def error(self, what: str) -> None:
        with self.lock:
            self.failed += 1
            self.errors[what] = self.errors.get(what, 0) + 1


def _put(port: int, path: str, body: bytes, timeout: float) -> tuple[int, str | None]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("PUT", path, body=body, headers={"Content-Type": "audio/mpeg"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("ETag")
    finally:
        conn.close()


def _verify_and_delete(store: DirectoryStore, filename: str, recording_id: str,
                       digest: str, counts: Counts) -> None:
    try:
        stored = store.open(Name(Kind.CALL, (), filename), recording_id)
    except NotFound:
        counts.add(lost=1)
        return
    try:
        sha = hashlib.sha256()
        while block := stored.fileobj.read(1 << 20):
            sha.update(block)
    finally:
        stored.close()
    if sha.hexdigest() != digest:
        counts.add(mismatched=1)
        return
    # Keep the disk flat: the recording and its sidecar go (index entries are tiny).
    for path in (stored.location, stored.location + SIDECAR_SUFFIX):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def uploader(n: int, port: int, store: DirectoryStore, size: int, deadline: float,
             counts: Counts, timeout: float) -> None:
    """Upload distinct bodies until ``deadline``; verify and delete each acknowledged one."""
    body = bytearray(os.urandom(size))
    i = 0
    while time.monotonic() < deadline:
        i += 1
        # A new head each time: no two bodies are the same, so a lost or swapped
        # file cannot pass for another.
        body[:16] = os.urandom(16)
        data = bytes(body)
        digest = hashlib.sha256(data).hexdigest()
        filename = f"call_recording_load-{n}-{i}.mp3"
        recording_id = f"{n}-{i}-{digest[:8]}"
        counts.add(started=1)
        try:
            status, etag = _put(port, f"/{filename}?recording_id={recording_id}", data, timeout)
        except (OSError, http.client.HTTPException) as exc:
            counts.error(type(exc).__name__)
            continue
        if not 200 <= status < 300:
            counts.error(f"HTTP {status}")
            continue
        counts.add(acknowledged=1, bytes_acknowledged=len(data))
        if etag != f'"{digest}"':
            counts.add(mismatched=1)
            continue
        _verify_and_delete(store, filename, recording_id, digest, counts)


def run(concurrency: int, seconds: float, size: int, root: Path, workers: int,
        threads: int, timeout: float, log_path: Path) -> dict[str, object]:
    """Run the load against a fresh server over ``root``; the summary as a dict."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port(HOST)
    counts = Counts()
    # ``kzr-wsgi serve`` in its own process group, stopped (that group only) on exit.
    cmd = [sys.executable, "-m", "kzr_wsgi", "serve", "--root", str(root), "--host", HOST,
           "--port", str(port), "--workers", str(workers), "--threads", str(threads)]
    with spawn(cmd, HOST, port, log_path) as server:
        store = DirectoryStore(root)
        started = time.monotonic()
        deadline = started + seconds
        pool = [threading.Thread(target=uploader, name=f"uploader-{n}", daemon=True,
                                 args=(n, port, store, size, deadline, counts, timeout))
                for n in range(concurrency)]
        for t in pool:
            t.start()
        for t in pool:
            # Bounded: an upload in flight at the deadline gets its own timeout to finish.
            t.join(timeout=max(0.0, deadline - time.monotonic()) + timeout + 30)
        elapsed = time.monotonic() - started
        stuck = sum(t.is_alive() for t in pool)
        alive = server.proc.poll() is None
    leftovers = [p for p in root.rglob("*") if p.is_file() and ".kzr" not in p.parts]
    with counts.lock:
        summary: dict[str, object] = {
            f.name: getattr(counts, f.name) for f in fields(counts) if f.name != "lock"
        }
    summary.update({
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "body_bytes": size,
        "uploads_per_s": round(counts.acknowledged / elapsed, 1) if elapsed else 0.0,
        "mb_per_s": round(counts.bytes_acknowledged / elapsed / 1e6, 1) if elapsed else 0.0,
        "stuck_threads": stuck,
        "server_alive": alive,
        "files_left": len(leftovers),
    })
    return summary


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print the summary; 0 when nothing failed or was lost."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=32, help="uploaders (default 32)")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration (default 60)")
    parser.add_argument("--size", type=int, default=1 << 20, help="body bytes (default 1 MiB)")
    parser.add_argument("--root", type=Path, default=None,
                        help="store root (default: a temporary directory, removed after)")
    parser.add_argument("--workers", type=int, default=2, help="serve --workers (default 2)")
    parser.add_argument("--threads", type=int, default=16, help="serve --threads (default 16)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-upload timeout")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    if not (1 <= args.concurrency <= 512 and 0 < args.seconds <= 3600):
        parser.error("--concurrency must be 1..512 and --seconds 0..3600")
    work = Path(tempfile.mkdtemp(prefix="kzr-load-"))
    root = args.root if args.root is not None else work / "recordings"
    log_path = work / "serve.log"
    summary: dict[str, object] = {}
    try:
        summary = run(args.concurrency, args.seconds, args.size, root, args.workers,
                      args.threads, args.timeout, log_path)
    finally:
        if not summary or summary["failed"] or summary["lost"] or summary["mismatched"]:
            print(f"server log kept: {log_path}", file=sys.stderr)
            if args.root is None:
                shutil.rmtree(root, ignore_errors=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(
            f"{summary['concurrency']} uploaders x {summary['seconds']} s, "
            f"{summary['body_bytes']} byte bodies: {summary['uploads_per_s']} uploads/s "
            f"({summary['mb_per_s']} MB/s)\n"
            f"started={summary['started']} acknowledged={summary['acknowledged']} "
            f"lost={summary['lost']} mismatched={summary['mismatched']} "
            f"failed={summary['failed']} errors={summary['errors']} "
            f"stuck_threads={summary['stuck_threads']} server_alive={summary['server_alive']}"
        )
    ok = (summary["failed"] == 0 and summary["lost"] == 0 and summary["mismatched"] == 0
          and summary["stuck_threads"] == 0 and summary["server_alive"]
          and summary["acknowledged"] == summary["started"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
