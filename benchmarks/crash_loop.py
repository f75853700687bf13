"""The crash loop: uploads in every form, ``serve`` SIGKILLed at random, restarted at once.

A bounded script (and, for a few rounds, ``tests/test_crash.py``)::

    python benchmarks/crash_loop.py --rounds 50 --seed 1
    python benchmarks/crash_loop.py --rounds 5 --large-mb 20 24 --workdir /tmp/loop

Each round, against ``python -m kzr_wsgi serve`` on 127.0.0.1 (its own process group):

1. concurrent uploads of real MP3s (made with LAME): small call recordings, one large
   one (``--large-mb``, sent in 1 MiB pieces so a kill can land in its middle),
   multipart storage-plan bodies (``kz_att_http``'s framing, from
   ``tests/plan_clients.py``), retries of the uploads the last kill left unanswered, and
   retries of acknowledged ones;
2. after a random delay (before, during or after the commits) the whole process group
   is SIGKILLed, and ``serve`` is started again at once on the same root and port;
3. then the store is checked: every upload that got a 2xx is there, byte-identical,
   with its sidecar, its index entry and its catalog row (naming that file and those
   bytes); no visible file is partial or unindexed; no recording has a second copy; no
   temporary file or marker (``pending``, or a legacy ``uncatalogued`` one) is left
   10 s after the restart; retries of acknowledged uploads were answered 200 (duplicate).

At the end every upload still unanswered is retried until it is acknowledged, and the
store is checked once more. It prints a line per round and the summary; the exit status
is 0 only when nothing was lost, partial, duplicated or left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests")]

from kazoo import httpc_headers, request_head  # noqa: E402
from plan_clients import (  # noqa: E402
    kazoo_boundary,
    multipart_content_type,
    multipart_head,
    multipart_tail,
)
from servers import Server, free_port, store_temporaries, wait_listening  # noqa: E402

from kzr_wsgi.catalog import Catalog, row_id  # noqa: E402
from kzr_wsgi.naming import COMPANION_SUFFIXES, SIDECAR_SUFFIX  # noqa: E402

HOST = "127.0.0.1"
MB = 1 << 20
#: A dead writer's temporary file or marker may outlive it by this much, no more.
DEBRIS_BOUND = 10.0
#: Where storage-plan uploads go (``serve --attachments-prefix``).
PLAN_PREFIX = "/store"
#: Longest wait for one reply.
TIMEOUT = 60.0


# -- real MP3s -------------------------------------------------------------------------------


class Mp3Maker:
    """Real MP3s from Debian's ``lame``: a few seconds of tones per seed, cached on disk."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "mp3"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._base: bytes | None = None

    def small(self, seed: int, seconds: float = 2.0) -> bytes:
        """A short mono 8 kHz MP3 (a call's sound), different for every ``seed``."""
        path = self.dir / f"small-{seed}-{seconds}.mp3"
        if not path.exists():
            self._encode(seed, seconds, 8000, ["-b", "32"], path)
        return path.read_bytes()

    def large(self, seed: int, size: int) -> bytes:
        """About ``size`` bytes of MP3: a unique head, then 44.1 kHz 320 kbit/s frames."""
        if self._base is None:
            path = self.dir / "base.mp3"
            if not path.exists():
                self._encode(0, 30.0, 44100, ["-b", "320"], path)
            self._base = path.read_bytes()
        head = self.small(seed, 1.0)
        reps = max(1, (size - len(head)) // len(self._base))
        return head + self._base * reps

    def _encode(self, seed: int, seconds: float, rate: int, options: list[str],
                out: Path) -> None:
        rng = random.Random(seed)
        tones = [rng.uniform(200, 1200) for _ in range(3)]
        wav = out.with_suffix(".wav")
        frames = bytearray()
        for i in range(int(seconds * rate)):
            t = i / rate
            value = sum(math.sin(2 * math.pi * f * t) for f in tones) / 3
            frames += struct.pack("<h", int(value * 12000 + rng.uniform(-300, 300)))
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(bytes(frames))
        subprocess.run(["lame", "--quiet", *options, str(wav), str(out)], check=True)
        wav.unlink()


# -- uploads ---------------------------------------------------------------------------------


@dataclass
class Upload:
    """One recording Kazoo must get stored, however many attempts it takes."""

    key: str
    form: str  # "small", "large" or "plan"
    seed: int
    size: int
    sha256: str = ""
    acknowledged: bool = False
    attempts: int = 0

    @property
    def target(self) -> str:
        if self.form == "plan":
            # {account_id}/{owner_id}/{doc_id}/{attachment}, kz_att_util's default fields.
            return (f"{PLAN_PREFIX}/acct{self.seed % 3}/owner{self.seed}/doc-{self.key}/"
                    f"{self.key}.mp3")
        return (f"/call_recording_{self.key}.mp3?recording_id=rec-{self.key}"
                f"&account_id=a{self.seed % 3}")

    def audio(self, maker: Mp3Maker) -> bytes:
        return maker.large(self.seed, self.size) if self.form == "large" else maker.small(
            self.seed, 1.0 + self.seed % 5)

    def pieces(self, maker: Mp3Maker) -> tuple[Iterator[bytes], int, str]:
        """The body as pieces to send, its length, its content type."""
        audio = self.audio(maker)
        self.sha256 = hashlib.sha256(audio).hexdigest()
        if self.form == "plan":
            boundary = kazoo_boundary(hashlib.sha512(self.key.encode()).digest()[:48])
            document = {"_id": f"doc-{self.key}", "name": "crash loop", "media_source": "recording"}
            head = multipart_head(boundary, f"doc-{self.key}", document, f"{self.key}.mp3",
                                  "audio/mpeg")
            tail = multipart_tail(boundary)
            return (iter([head, audio, tail]), len(head) + len(audio) + len(tail),
                    multipart_content_type(boundary))
        return _chunks(audio, MB), len(audio), "audio/mpeg"


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


#: Retries of each upload still unanswered after the last round, with backoff.
FINAL_RETRIES = 10


def send(port: int, upload: Upload, maker: Mp3Maker, pace: float) -> int | None:
    """One attempt, as httpc sends it; the status, or ``None`` when no answer came."""
    pieces, length, content_type = upload.pieces(maker)
    upload.attempts += 1
    headers = httpc_headers(HOST, port, length, content_type=content_type)
    try:
        with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
            sock.sendall(request_head("PUT", upload.target, headers))
            for piece in pieces:
                sock.sendall(piece)
                if pace:
                    time.sleep(pace)  # spread a large body so a kill can land inside it
            reply = b""
            while b"\r\n" not in reply:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                reply += chunk
        return int(reply.split()[1])
    except OSError:
        return None


# -- the server ------------------------------------------------------------------------------


class Serve:
    """``python -m kzr_wsgi serve`` on one root and port, in its own process group."""

    def __init__(self, root: Path, port: int, log_dir: Path) -> None:
        self.root, self.port, self.log_dir = root, port, log_dir
        self.server: Server | None = None
        self.starts = 0

    def start(self) -> float:
        """Start and wait until it listens; the monotonic time it was started."""
        self.starts += 1
        cmd = [sys.executable, "-m", "kzr_wsgi", "serve", "--root", str(self.root),
               "--host", HOST, "--port", str(self.port), "--workers", "2", "--threads", "8",
               "--attachments-prefix", PLAN_PREFIX]
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        log_path = self.log_dir / f"serve-{self.starts}.log"
        started = time.monotonic()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    cwd=REPO, start_new_session=True)
        self.server = Server(HOST, self.port, proc, log_path)
        try:
            wait_listening(HOST, self.port, proc, timeout=60)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"serve did not start ({exc}), see {log_path}") from exc
        return started

    def log(self) -> str:
        """What the running ``serve`` printed so far."""
        assert self.server is not None
        return self.server.log()

    def kill(self) -> None:
        """SIGKILL the whole process group (master and workers) and reap it."""
        assert self.server is not None
        self.server.stop(signal.SIGKILL)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


# -- checking the store ----------------------------------------------------------------------


@dataclass
class Summary:
    """What the loop did, and every way the store fell short (all must stay 0)."""

    rounds: int = 0
    attempts: int = 0
    acknowledged: int = 0
    kills: int = 0
    killed_unanswered: int = 0
    #: Commits a kill interrupted after the file was placed, finished at start-up.
    commits_finished: int = 0
    lost: int = 0
    partial: int = 0
    second_copies: int = 0
    debris: int = 0
    duplicate_misanswered: int = 0
    retry_failed: int = 0
    catalog_missing: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    PROBLEMS = ("lost", "partial", "second_copies", "debris", "duplicate_misanswered",
                "retry_failed", "catalog_missing")

    def problems(self) -> dict[str, int]:
        """The problem counters that are not 0."""
        return {name: getattr(self, name) for name in self.PROBLEMS if getattr(self, name)}

    def line(self) -> str:
        shown = [f.name for f in fields(self) if f.name != "notes"]
        return " ".join(f"{name}={getattr(self, name):.1f}" if name == "seconds"
                        else f"{name}={getattr(self, name)}" for name in shown)


class Checker:
    """Reads the store as it is on disk: index entries, sidecars, files (hashed once)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._hashes: dict[tuple[str, int, int, int], str] = {}

    def sha256(self, path: Path) -> str | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
        if key not in self._hashes:
            sha = hashlib.sha256()
            with open(path, "rb") as fh:
                while block := fh.read(MB):
                    sha.update(block)
            self._hashes[key] = sha.hexdigest()
        return self._hashes[key]

    def entries(self) -> list[dict[str, Any]]:
        found = []
        for path in (self.root / ".kzr" / "index").glob("*/*.json"):
            with contextlib.suppress(FileNotFoundError, ValueError):
                found.append(json.loads(path.read_text()))
        return found

    def data_files(self) -> list[Path]:
        return [p for p in self.root.rglob("*") if p.is_file()
                and ".kzr" not in p.relative_to(self.root).parts
                and not p.name.endswith((SIDECAR_SUFFIX, *COMPANION_SUFFIXES))]

    def companion_files(self) -> list[Path]:
        """The files kept beside recordings (their analysis): part of one, never debris."""
        return [p for p in self.root.rglob("*") if p.is_file()
                and ".kzr" not in p.relative_to(self.root).parts
                and p.name.endswith(COMPANION_SUFFIXES)]

    def check(self, uploads: Iterable[Upload], summary: Summary, catalog: Catalog) -> None:
        """Count what is lost, partial or doubled; note each problem."""
        entries = self.entries()
        by_sha: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            by_sha.setdefault(entry["sha256"], []).append(entry)
        indexed_paths = {entry["path"] for entry in entries}
        for upload in uploads:
            if not upload.acknowledged:
                continue
            found = by_sha.get(upload.sha256, [])
            if not found:
                summary.lost += 1
                summary.notes.append(f"lost: {upload.key} ({upload.form})")
                continue
            entry = found[0]
            path = self.root / entry["path"]
            sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
            record = _read_json(sidecar)
            if self.sha256(path) != upload.sha256 or record is None or (
                    record.get("sha256") != upload.sha256):
                summary.lost += 1
                summary.notes.append(f"lost: {upload.key} at {path} differs or has no sidecar")
            elif not _in_catalog(catalog, record, path):
                summary.catalog_missing += 1
                summary.notes.append(f"no catalog row: {upload.key}")
        copies: dict[str, int] = {}
        for path in self.data_files():
            relative = path.relative_to(self.root).as_posix()
            record = _read_json(path.with_name(path.name + SIDECAR_SUFFIX))
            digest = self.sha256(path)
            if record is None or relative not in indexed_paths or digest != record.get("sha256"):
                summary.partial += 1
                summary.notes.append(f"partial or unindexed: {relative}")
                continue
            copies[record["sha256"]] = copies.get(record["sha256"], 0) + 1
        for path in self.companion_files():
            # Beside an indexed recording, or it is left over.
            base = path.relative_to(self.root).as_posix()
            if not any(base == f"{indexed}{end}" for indexed in indexed_paths
                       for end in COMPANION_SUFFIXES):
                summary.partial += 1
                summary.notes.append(f"a file beside no recording: {base}")
        for digest, count in copies.items():
            if count > 1:
                summary.second_copies += count - 1
                summary.notes.append(f"{count} copies of sha256 {digest[:12]}")

    def debris(self, since: float) -> list[str]:
        """Temporary files and markers still there; waits up to the bound.

        Markers: ``pending`` (an upload in flight: its commit or its row) and the
        legacy ``uncatalogued`` (which no store writes now); with no upload in flight,
        any left belongs to a writer the kill took.
        """
        while True:
            left = store_temporaries(self.root)
            for markers in ("pending", "uncatalogued"):
                directory = self.root / ".kzr" / markers
                left += [str(p) for p in directory.iterdir()] if directory.is_dir() else []
            if not left or time.monotonic() - since >= DEBRIS_BOUND:
                return left
            time.sleep(0.1)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _open_catalog(root: Path) -> Catalog:
    """The store's own SQLite catalog, through the catalog's Python API."""
    return Catalog.for_root(root)


def _in_catalog(catalog: Catalog, record: dict[str, Any], path: Path) -> bool:
    """Whether the catalog has this copy's row, naming this file and these bytes."""
    row = catalog.get(row_id(record))
    return row is not None and row.sha256 == record["sha256"] and row.location == str(path)


# -- the loop --------------------------------------------------------------------------------


def run(rounds: int, seed: int, workdir: Path, large_mb: tuple[int, int] = (20, 40),
        out: Any = None) -> Summary:
    """Run the loop over a fresh root in ``workdir``; print as it goes; the summary."""
    rng = random.Random(seed)
    root = workdir / "recordings"
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    maker = Mp3Maker(workdir)
    checker = Checker(root)
    summary = Summary()
    uploads: list[Upload] = []
    unanswered: list[Upload] = []
    counter = 0
    started = time.monotonic()
    port = free_port(HOST)
    server = Serve(root, port, logs)

    def new(form: str, size: int = 0) -> Upload:
        nonlocal counter
        counter += 1
        upload = Upload(f"s{seed}-{counter}", form, rng.randrange(1 << 30), size)
        uploads.append(upload)
        return upload

    def attempt(upload: Upload, pace: float, acked_retry: bool) -> None:
        status = send(port, upload, maker, pace)
        with lock:
            summary.attempts += 1
            if status is None:
                return
            if 200 <= status < 300:
                if acked_retry and status != 200:
                    summary.duplicate_misanswered += 1
                    summary.notes.append(f"retry of acknowledged {upload.key}: {status}")
                upload.acknowledged = True
            else:
                summary.retry_failed += 1
                summary.notes.append(f"{upload.key}: HTTP {status}")

    lock = threading.Lock()
    try:
        server.start()
        for n in range(1, rounds + 1):
            batch: list[tuple[Upload, float, bool]] = []
            batch += [(new("small"), 0.0, False) for _ in range(rng.randint(2, 4))]
            batch += [(new("plan"), 0.0, False) for _ in range(rng.randint(1, 2))]
            size = rng.randint(*large_mb) * MB
            batch.append((new("large", size), 0.01, False))
            batch += [(u, 0.0 if u.form != "large" else 0.01, False) for u in unanswered]
            acked = [u for u in uploads if u.acknowledged and u.form != "large"]
            batch += [(u, 0.0, True) for u in rng.sample(acked, min(2, len(acked)))]
            rng.shuffle(batch)
            threads = [threading.Thread(target=attempt, args=item, daemon=True)
                       for item in batch]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.05, 2.0))  # before, during or after the commits
            server.kill()
            summary.kills += 1
            for t in threads:
                t.join(timeout=TIMEOUT)
            restarted = server.start()
            unanswered = [u for u, _, _ in batch if not u.acknowledged]
            summary.killed_unanswered += len(unanswered)
            left = checker.debris(restarted)
            summary.commits_finished += server.log().count("finished the commit of")
            if left:
                summary.debris += len(left)
                summary.notes.append(f"round {n}: debris {left}")
            catalog = _open_catalog(root)
            try:
                checker.check(uploads, summary, catalog)
            finally:
                catalog.close()
            summary.rounds = n
            summary.acknowledged = sum(u.acknowledged for u in uploads)
            summary.seconds = time.monotonic() - started
            print(f"round {n}: {summary.line()}", file=out, flush=True)
        # Kazoo keeps retrying what it never got an answer for.
        # Kazoo keeps retrying for minutes (5 s apart, then 1-10 minutes): a restarted
        # server still booting its workers must not count as a failure, so back off.
        for upload in unanswered:
            for tries in range(1, FINAL_RETRIES + 1):
                attempt(upload, 0.0, False)
                if upload.acknowledged:
                    break
                time.sleep(min(0.5 * tries, 3.0))
            else:
                summary.notes.append(f"{upload.key}: no 2xx after {FINAL_RETRIES} retries")
        final = Summary(rounds=summary.rounds, kills=summary.kills)
        catalog = _open_catalog(root)
        try:
            checker.check(uploads, final, catalog)
        finally:
            catalog.close()
        for name in Summary.PROBLEMS:
            setattr(summary, name, max(getattr(summary, name), getattr(final, name)))
        summary.notes += final.notes
        summary.acknowledged = sum(u.acknowledged for u in uploads)
        summary.retry_failed += sum(not u.acknowledged for u in uploads)
    finally:
        server.stop()
    summary.seconds = time.monotonic() - started
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--large-mb", type=int, nargs=2, default=(20, 40), metavar=("MIN", "MAX"),
                        help="size range of the large upload in each round (MiB)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the store and logs go (default: a temporary directory, "
                             "removed afterwards)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kzr-crash-loop-"))
    try:
        summary = run(args.rounds, args.seed, workdir, tuple(args.large_mb))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    for note in summary.notes:
        print(f"  {note}")
    print(f"summary: {summary.line()}")
    return 0 if not summary.problems() else 1


if __name__ == "__main__":
    sys.exit(main())
