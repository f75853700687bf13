"""The worker: claim a job, decode the recording once, keep what it found, repeat.

One :class:`Worker` per process (``kzr-wsgi worker``, or each of ``serve``'s background
workers). For each job it claims (:class:`~kzr_wsgi.catalog.jobs.JobQueue`):

1. a ``kzr-wsgi check`` upload is skipped (``self_test``);
2. a done result of the same audio (sha256) and settings (fingerprint) on another copy
   is copied beside this one rather than decoded again (unless the job is a
   ``--reanalyze``): one decoding per audio, whichever host stored it;
3. otherwise the recording is opened (a disk copy directly; an object through the
   :class:`~kzr_wsgi.pipeline.spool.Spool`) and analysed in bounded memory
   (:func:`kzr_wsgi.analysis.analyse`); what is not MP3 or WAV is skipped with its
   reason;
4. the result and the waveform are written beside the recording in every store that
   holds it (:class:`~kzr_wsgi.stores.base.CompanionKeeper`), then the job is marked
   done with the result's summary and the files' sha256s, and the row its flags.

A lease keeps the job this worker's while it works: a thread renews it every third of
its length, and a worker that loses it (it was too slow, or the catalog was out of reach
for a whole lease) abandons the decoding at the next block. A failed attempt is retried
after a backoff (:meth:`~kzr_wsgi.pipeline.settings.PipelineSettings.retry_in`) until
its attempts are spent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, BinaryIO

from ..catalog import Catalog, Row
from ..catalog.analysis import Origin, summary_of
from ..catalog.jobs import Claim, JobQueue
from ..errors import KzrError, NotFound
from ..faults import crash_point
from ..naming import ANALYSIS_SUFFIX, PEAKS_SUFFIX
from .settings import DEFAULT_SETTINGS, PipelineSettings
from .spool import Spool

if TYPE_CHECKING:
    from ..analysis import Block, StreamInfo
    from ..stores.base import Store
    from .metrics import WorkerMetrics
    from .transcription import Transcription

log = logging.getLogger("kzr_wsgi.pipeline")

#: Seconds an idle worker waits before looking at the queue again.
POLL = 2.0


class LeaseLost(KzrError):
    """The job is no longer this worker's: its lease ended and another may have it."""


def worker_name() -> str:
    """This process's name in the queue: host, process id, and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def document(data: Mapping[str, Any]) -> bytes:
    """A JSON document as it is written beside a recording (compact, ASCII)."""
    return json.dumps(data, ensure_ascii=True, separators=(",", ":")).encode("ascii")


@dataclass(frozen=True)
class Outcome:
    """What became of one job: its state, and the seconds of audio decoded."""

    state: str
    audio_seconds: float = 0.0


class _Lease:
    """Renews a claim every third of the lease in a thread; says when it is lost."""

    def __init__(self, queue: JobQueue, claim: Claim, lease: float) -> None:
        self.claim = claim
        self.lost = threading.Event()
        self._queue, self._lease = queue, lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kzr-lease", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._lease / 3):
                try:
                    renewed = self._queue.renew(self.claim, self._lease)
                except Exception as exc:  # the catalog out of reach: again, lease permitting
                    log.warning("job %s: the lease could not be renewed: %s",
                                self.claim.row_id, exc)
                    if time.time_ns() // 1000 >= self.claim.lease_until:
                        self.lost.set()
                    continue
                if renewed is None:
                    self.lost.set()
                    return
                self.claim = renewed
        finally:
            self._queue.catalog.release()  # this thread's connection: it ends here


class _Watch:
    """A step of the decoding that abandons it once the lease is lost (or told to stop)."""

    def __init__(self, lease: _Lease, stop: threading.Event) -> None:
        self._lease, self._stop = lease, stop

    def start(self, stream: StreamInfo) -> None:
        """Nothing to know of the stream."""

    def feed(self, block: Block) -> None:
        """Between two blocks: go on only while the job is still ours."""
        crash_point("worker.decoding")
        if self._lease.lost.is_set():
            raise LeaseLost("the lease ended during the decoding")
        if self._stop.is_set():
            raise LeaseLost("the worker is stopping")

    def finish(self) -> None:
        """Nothing to give."""


class Worker:
    """Works through ``catalog``'s queue for ``store``; see the module docstring."""

    def __init__(self, store: Store, catalog: Catalog, *,
                 settings: PipelineSettings = DEFAULT_SETTINGS, spool: Spool | None = None,
                 name: str | None = None, metrics: WorkerMetrics | None = None,
                 transcription: Transcription | None = None) -> None:
        self.store = store
        self.catalog = catalog
        self.settings = settings
        self.spool = spool or Spool()
        #: This worker's name in the queue (who holds a lease).
        self.name = name or worker_name()
        self.metrics = metrics
        self.queue = catalog.jobs
        #: Set to end :meth:`run` (and abandon a decoding at its next block).
        self.stop = threading.Event()
        #: The transcription step, when this worker transcribes (claimed when no
        #: analysis is due).
        self.transcription = transcription
        #: Until when (monotonic) :meth:`_transcribing` trusts what it last read.
        self._transcribing: tuple[float, bool] = (0.0, False)

    def prepare(self) -> tuple[int, int]:
        """At start-up: load the decoder, sweep the spool of dead workers' files and write
        the jobs owed (rows whose job could not be written with them); returns the counts.

        The decoder (numpy, libsndfile, soxr, webrtcvad) is loaded now rather than at the
        first job, so a worker is at its working size before it takes one.
        """
        import_module("kzr_wsgi.analysis.analyse")
        import_module("kzr_wsgi.analysis.resample")
        swept = self.spool.sweep()
        try:
            owed = self.queue.repair()
        except Exception as exc:  # the catalog out of reach: the run waits for it
            log.error("the queue cannot be read: %s", exc)
            owed = 0
        if self.transcription is not None:
            try:
                owed += self.transcription.prepare()
            except Exception as exc:  # the catalog out of reach: the run waits for it
                log.error("the queue cannot be read: %s", exc)
        if swept:
            log.warning("removed %d spool file(s) left by workers that died", swept)
        if owed:
            log.warning("queued %d recording(s) stored while the queue could not be written",
                        owed)
        return swept, owed

    def run(self, *, once: bool = False, poll: float = POLL,
            idle: Callable[[], bool] | None = None) -> int:
        """Work until :attr:`stop` is set (with ``once``: until the queue has nothing
        due); returns how many jobs were worked on. ``idle`` is asked between looks at an
        empty queue; it returning ``False`` ends the run."""
        worked = 0
        while not self.stop.is_set():
            try:
                claimed = self.step()
            except Exception:  # the catalog out of reach: look again later
                log.exception("the queue cannot be read")
                claimed = False
            if claimed:
                worked += 1
                continue
            if once or (idle is not None and not idle()):
                break
            self.stop.wait(poll)
        return worked

    def step(self) -> bool:
        """Claim one due job and work on it; ``False`` when none is due."""
        settings = self.settings
        claim = self.queue.claim(self.name, lease=settings.lease.total_seconds(),
                                 max_attempts=settings.attempts)
        if claim is None:
            return self._transcribe_one()
        crash_point("worker.claimed")
        started = time.monotonic()
        try:
            outcome = self.work(claim)
        except LeaseLost as exc:
            log.warning("job %s abandoned: %s", claim.row_id, exc)
            return True
        except Exception as exc:
            outcome = self._failed(claim, exc)
        self._finished(claim, outcome, started)
        if outcome.state in ("done", "skipped", "failed") and self._transcribing_on():
            from ..catalog.transcripts import queue_after

            # A new upload's, or else a backfill's (a re-analysis is no reason to ask an
            # engine again rather than copy a transcript of the same audio).
            queue_after(self.catalog, claim.row_id, claim.sha256,
                        claim.origin if claim.origin == Origin.UPLOAD else Origin.BACKFILL)
        return True

    def _finished(self, claim: Claim, outcome: Outcome, started: float) -> None:
        log.info("job %s %s: %s after attempt %d in %.1fs", claim.job, claim.row_id,
                 outcome.state, claim.attempts, time.monotonic() - started)
        if self.metrics is not None and outcome.state == "done":
            self.metrics.finished(claim.job, time.monotonic() - started, outcome.audio_seconds)

    def _transcribe_one(self) -> bool:
        """Claim and work on one due transcription (when this worker transcribes)."""
        if self.transcription is None:
            return False
        started = time.monotonic()
        try:
            outcome = self.transcription.step(self.name, self.stop)
        except LeaseLost as exc:
            log.warning("a transcription was abandoned: %s", exc)
            return True
        if outcome is None:
            return False
        claim = self.transcription.last
        if claim is not None:
            self._finished(claim, outcome, started)
        return True

    def _transcribing_on(self) -> bool:
        """Whether an ended analysis queues its transcription: this worker transcribes,
        or the catalog says a worker somewhere does (read once a minute)."""
        if self.transcription is not None:
            return True
        until, on = self._transcribing
        if time.monotonic() < until:
            return on
        from ..catalog.transcripts import TRANSCRIBING

        try:
            on = self.catalog.get_state(TRANSCRIBING) is not None
        except Exception as exc:  # the catalog out of reach: the start-up catch-up covers it
            log.warning("the catalog cannot be read: %s", exc)
        self._transcribing = (time.monotonic() + 60.0, on)
        return on

    def work(self, claim: Claim) -> Outcome:
        """Do ``claim``'s job; what became of it (raises what fails the attempt)."""
        row = self.catalog.get(claim.row_id)
        if row is None:
            return Outcome("gone")  # removed since it was claimed (its job with it)
        if row.self_test:
            self.queue.skip(claim, "self_test")
            return Outcome("skipped")
        fingerprint = self.settings.analysis.fingerprint()
        if claim.origin != Origin.REANALYZE:
            copied = self._copy_done(claim, row, fingerprint)
            if copied is not None:
                return copied
        return self._analyse(claim, row, fingerprint)

    # -- the two ways to a result -----------------------------------------------------

    def _copy_done(self, claim: Claim, row: Row, fingerprint: str) -> Outcome | None:
        """The same audio's done result from another copy, copied beside this one."""
        done = self.queue.done_result(row.sha256, fingerprint, besides=row.id)
        source = self.catalog.get(done.row_id) if done is not None else None
        if done is None or source is None or not done.files:
            return None
        files: dict[str, bytes] = {}
        try:
            for suffix, digest in done.files.items():
                data = self.store.get_companion(source.copy_record(), suffix)
                if hashlib.sha256(data).hexdigest() != digest:
                    return None  # changed since: decode afresh
                files[suffix] = data
        except KzrError as exc:
            log.info("job %s: the result of %s cannot be copied (%s); decoding", row.id,
                     source.id, exc)
            return None
        return self._keep(claim, row, files, done.summary, fingerprint, audio_seconds=0.0)

    def _analyse(self, claim: Claim, row: Row, fingerprint: str) -> Outcome:
        from ..analysis import Skipped, analyse

        with ExitStack() as stack:
            lease = stack.enter_context(_Lease(self.queue, claim,
                                               self.settings.lease.total_seconds()))
            source = self._open(stack, row)
            found = analyse(source, self.settings.analysis, steps=[_Watch(lease, self.stop)])
            claim = lease.claim
        if isinstance(found, Skipped):
            self.queue.skip(claim, found.reason)
            return Outcome("skipped")
        doc = found.result.to_json()
        files = {ANALYSIS_SUFFIX: document(doc), PEAKS_SUFFIX: document(found.peaks.to_json())}
        return self._keep(claim, row, files, summary_of(doc), fingerprint,
                          audio_seconds=found.result.duration_ms / 1000)

    def _keep(self, claim: Claim, row: Row, files: Mapping[str, bytes],
              summary: Mapping[str, Any], fingerprint: str, audio_seconds: float) -> Outcome:
        """Write ``files`` beside the recording everywhere it is, then mark the job done."""
        if not self.store.put_companions(row.copy_record(), files):
            # Removed meanwhile: nothing was left written, and its job went with its row.
            return Outcome("gone")
        digests = {suffix: hashlib.sha256(data).hexdigest() for suffix, data in files.items()}
        if not self.queue.finish(claim, summary, digests, fingerprint):
            raise LeaseLost("the job was taken by another worker before it was done")
        if self.metrics is not None and claim.origin == Origin.UPLOAD:
            self.metrics.upload_flags(summary.get("flags") or (), row.flags)
        return Outcome("done", audio_seconds)

    def _open(self, stack: ExitStack, row: Row) -> BinaryIO:
        """The recording's bytes, seekable: the file itself, or a spooled copy."""
        from .decoding import open_recording

        return open_recording(self.store, self.spool, stack, row)

    def _failed(self, claim: Claim, exc: Exception) -> Outcome:
        """Record a failed attempt: retried after the backoff, or failed for good."""
        from ..analysis import DecodeError

        if isinstance(exc, (DecodeError, KzrError)):
            error = str(exc) or type(exc).__name__
            if isinstance(exc, NotFound):
                error = f"the recording cannot be read: {error}"
            log.warning("job %s %s, attempt %d: %s", claim.job, claim.row_id, claim.attempts,
                        error)
        else:
            error = f"{type(exc).__name__}: {exc}"
            log.exception("job %s %s, attempt %d failed", claim.job, claim.row_id,
                          claim.attempts)
        state = self.queue.fail(claim, error, max_attempts=self.settings.attempts,
                                retry_in=self.settings.retry_in(claim.attempts))
        return Outcome(state or "lost")
