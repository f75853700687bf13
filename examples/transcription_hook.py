"""Queue every stored recording for transcription; a separate worker takes them off.

The ``on_stored`` callback (:class:`RecordingQueue`) writes one row per newly stored
recording into a SQLite file, after the recording is committed; a worker process
(:func:`work`) claims rows one at a time and runs a transcriber on the file. SQLite
keeps the queue on disk, so a restart of either side loses nothing (unlike an
in-memory webhook queue), and no service has to run beside the receiver.

Why it is built the way it is:

* The insert runs on the request thread, after the commit and before Kazoo gets its
  ``201``: a few milliseconds, and it makes "stored" imply "queued". If it fails, the
  middleware logs it and the recording still counts as stored.
* Rows are keyed by the notification id (location + sha256), so a callback run twice
  queues one job.
* A claimed job carries a lease: a worker that dies mid-job lets it go back to the
  queue when the lease runs out, so jobs are done at least once.
* A connection per call: safe across gunicorn's fork and across threads.

Run it::

    python examples/transcription_hook.py serve --root /srv/rec --queue /srv/jobs.db --port 8080
    python examples/transcription_hook.py work --queue /srv/jobs.db        # in another shell

Plug in a real transcriber (Whisper, Vosk, a cloud API) by passing your own
``transcriber`` to :func:`work`; the default only describes the file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kzr_wsgi import DirectoryStore, KazooRecordings, Recording, Stored
from kzr_wsgi.notify import notification

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("transcription")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id          TEXT PRIMARY KEY,       -- the notification id: one job per stored copy
    location    TEXT NOT NULL,
    document    TEXT NOT NULL,          -- the JSON notification (call id, Kazoo metadata…)
    state       TEXT NOT NULL DEFAULT 'queued',   -- queued | working | done | failed
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_until REAL,
    transcript  TEXT,
    error       TEXT,
    queued_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, queued_at);
"""


def _connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    # autocommit mode (isolation_level=None): transactions are explicit below.
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")  # the receiver writes while the worker reads
    db.execute("PRAGMA synchronous=FULL")  # a queued job survives a power cut
    return db


@dataclass(frozen=True)
class Job:
    """One claimed job: the stored file and what the receiver knew about it."""

    id: str
    location: str
    document: dict[str, object]
    attempts: int


class RecordingQueue:
    """An ``on_stored`` callback that queues each stored recording in a SQLite file."""

    def __init__(self, path: str | os.PathLike[str], *, lease: float = 600.0,
                 max_attempts: int = 3) -> None:
        self.path = Path(path)
        #: Seconds a claimed job stays claimed; then another worker may take it.
        self.lease = lease
        #: Failures after which a job stays ``failed`` instead of being retried.
        self.max_attempts = max_attempts
        db = _connect(self.path)
        try:
            db.executescript(_SCHEMA)
        finally:
            db.close()

    def __call__(self, recording: Recording, result: Stored | None) -> None:
        """Queue ``recording`` (called by the middleware after the commit)."""
        if result is None:
            return  # a handler that says nothing of where it stored: nothing to read
        doc = notification(recording, result)
        db = _connect(self.path)
        try:
            db.execute(
                "INSERT OR IGNORE INTO jobs (id, location, document, queued_at) "
                "VALUES (?, ?, ?, ?)",
                (doc["id"], result.location, json.dumps(doc), time.time()),
            )
        finally:
            db.close()

    def claim(self) -> Job | None:
        """Take the oldest queued job (or one whose worker's lease ran out), if any."""
        db = _connect(self.path)
        try:
            now = time.time()
            db.execute("BEGIN IMMEDIATE")  # one claimer at a time
            row = db.execute(
                "SELECT id, location, document, attempts FROM jobs "
                "WHERE state = 'queued' OR (state = 'working' AND lease_until < ?) "
                "ORDER BY queued_at LIMIT 1", (now,),
            ).fetchone()
            if row is None:
                db.execute("COMMIT")
                return None
            db.execute(
                "UPDATE jobs SET state = 'working', lease_until = ?, attempts = attempts + 1 "
                "WHERE id = ?", (now + self.lease, row[0]),
            )
            db.execute("COMMIT")
            return Job(row[0], row[1], json.loads(row[2]), row[3] + 1)
        finally:
            db.close()

    def finish(self, job: Job, transcript: str) -> None:
        """Record the transcript: the job is done."""
        self._update(job, "UPDATE jobs SET state = 'done', transcript = ?, lease_until = NULL "
                          "WHERE id = ?", (transcript, job.id))

    def fail(self, job: Job, error: str) -> None:
        """Put the job back (or give it up after ``max_attempts``)."""
        state = "failed" if job.attempts >= self.max_attempts else "queued"
        self._update(job, "UPDATE jobs SET state = ?, error = ?, lease_until = NULL "
                          "WHERE id = ?", (state, error, job.id))

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state."""
        db = _connect(self.path)
        try:
            return dict(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"))
        finally:
            db.close()

    def _update(self, job: Job, sql: str, args: tuple[object, ...]) -> None:
        db = _connect(self.path)
        try:
            db.execute(sql, args)
        finally:
            db.close()


def describe(path: Path) -> str:
    """The stand-in transcriber: says what it would transcribe."""
    return f"[no transcriber configured] {path.name}: {path.stat().st_size} bytes of audio"


def work(queue: RecordingQueue, transcriber: Callable[[Path], str] = describe, *,
         once: bool = False, poll: float = 1.0) -> int:
    """Transcribe queued recordings until interrupted (``once``: until the queue is empty).

    Returns how many jobs were done.
    """
    done = 0
    while True:
        job = queue.claim()
        if job is None:
            if once:
                return done
            time.sleep(poll)
            continue
        try:
            text = transcriber(Path(job.location))
        except Exception as exc:  # one bad file must not stop the worker
            log.exception("job %s (%s) failed", job.id, job.location)
            queue.fail(job, repr(exc))
            continue
        queue.finish(job, text)
        done += 1
        log.info("transcribed %s", job.location)


def _not_found(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not a Kazoo recording URL\n"]


def make_app(root: str | os.PathLike[str], queue: str | os.PathLike[str]) -> WSGIApplication:
    """The receiver: recordings under ``root``, each one queued in ``queue``."""
    return KazooRecordings(_not_found, DirectoryStore(root), accept_caller=True,
                           on_stored=[RecordingQueue(queue)])


def main(argv: list[str] | None = None) -> None:
    """``serve`` the receiver, or ``work`` the queue."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the receiver (gunicorn)")
    serve.add_argument("--root", default="./recordings")
    serve.add_argument("--queue", default="./transcription.db")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    worker = sub.add_parser("work", help="transcribe queued recordings")
    worker.add_argument("--queue", default="./transcription.db")
    worker.add_argument("--once", action="store_true", help="stop when the queue is empty")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.command == "serve":
        from kzr_wsgi.server import gunicorn_options, run

        run(make_app(args.root, args.queue), gunicorn_options(args.host, args.port))
    else:
        count = work(RecordingQueue(args.queue), once=args.once)
        print(f"transcribed {count} recording(s)")


if __name__ == "__main__":
    main()
