"""The transcription step: claim a ``transcribe`` job, ask the engine, keep the transcript.

One :class:`Transcription` per worker process (``serve --transcribe ENGINE``'s background
workers, ``kzr-wsgi worker --transcribe ENGINE``), used by the
:class:`~kzr_wsgi.pipeline.worker.Worker` when no analysis is due. For each job:

1. the recording's analysis decides first: one that was skipped or failed, or found
   the recording ``silent`` or ``no_speech``, makes the transcription ``skipped`` with
   that reason (no engine call); so do the ``[transcribe]`` filters (``accounts``,
   ``kinds``, ``min-duration``, ``max-duration``);
2. a done transcript of the same audio by the same engine and model on another copy is
   copied beside this one (no engine call);
3. otherwise the recording is decoded again (see :mod:`~kzr_wsgi.pipeline.decoding`),
   each channel with speech is cut at the analysis's silences into pieces
   (:func:`~kzr_wsgi.transcribe.cut_pieces`), up to ``concurrency`` pieces are sent at
   once, and each answer is kept in the catalog as it arrives (by audio, channel, piece
   bounds, engine and model), so a retry asks only for what is missing;
4. the transcript is redacted, written beside the recording in every store that holds it
   (``<name>.kzr.transcript.json``), its segments indexed for search, and the job marked
   done; the kept pieces are deleted.

An engine that is down, busy (5xx) or slow is retried with the queue's backoff; a
``401``/``403`` or a request the engine rejects fails the job at once, with its reason.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..catalog import Catalog, Row
from ..catalog.analysis import Origin
from ..catalog.jobs import Claim, JobQueue
from ..catalog.transcripts import (
    TRANSCRIBE,
    catch_up,
    defer,
    fingerprint,
    first_holder,
    forget_orphan_pieces,
    forget_pieces,
    keep_piece,
    known_piece,
    mark_transcribing,
    summary_of,
)
from ..errors import KzrError, NotFound
from ..naming import ANALYSIS_SUFFIX, TRANSCRIPT_SUFFIX
from ..transcribe import (
    Piece,
    Redactor,
    Settings,
    TranscribeError,
    Transcriber,
    Transcript,
    create,
    cut_pieces,
    merge_channels,
    outcome_of,
    transcribe_channel,
)
from .settings import CallerMap, PipelineSettings
from .worker import LeaseLost, Outcome, _Lease, document

if TYPE_CHECKING:
    from ..stores.base import Store
    from .spool import Spool

log = logging.getLogger("kzr_wsgi.pipeline")

#: Analysis flags that mean there is nothing to transcribe.
NOTHING_SAID = ("silent", "no_speech")
#: Seconds a transcription waits while the same audio is transcribed by another worker.
SAME_AUDIO_WAIT = 5.0
#: How far before the catalog's mark the start-up catch-up looks (microseconds).
CATCH_UP_MARGIN_US = 600 * 1_000_000


class Transcription:
    """Transcribes recordings for one worker; see the module docstring."""

    def __init__(self, settings: Settings, store: Store, catalog: Catalog, *,
                 pipeline: PipelineSettings, spool: Spool,
                 on_request: Callable[[str, float], None] | None = None,
                 engine: Transcriber | None = None) -> None:
        """``on_request(outcome, audio_seconds)`` sees each engine request as it ends."""
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.pipeline = pipeline
        self.spool = spool
        self.queue = JobQueue(catalog, TRANSCRIBE)
        self.redactor = Redactor(settings.redact, settings.redact_patterns)
        self.on_request = on_request
        self._engine = engine
        #: The job :meth:`step` claimed last.
        self.last: Claim | None = None

    def prepare(self) -> int:
        """At start-up: mark the catalog as transcribing, delete the kept piece answers no
        pending transcription needs (a recording removed while it was transcribed), and
        queue the transcription of recordings whose analysis ended since without one;
        returns how many were queued."""
        since = mark_transcribing(self.catalog)
        forget_orphan_pieces(self.catalog)
        # A margin before the mark: analyses that ended while the mark was being read.
        return catch_up(self.catalog, since - CATCH_UP_MARGIN_US)

    @property
    def engine(self) -> Transcriber:
        """The engine, built on first use (pocketsphinx loads its model then)."""
        if self._engine is None:
            self._engine = create(self.settings)
        return self._engine

    @property
    def callers(self) -> CallerMap:
        """Which side the caller is on, by account and kind (``[analysis]``)."""
        return self.pipeline.callers

    def close(self) -> None:
        """Let go of the engine."""
        if self._engine is not None:
            self._engine.close()

    # -- one job --------------------------------------------------------------------

    def step(self, worker: str, stop: threading.Event) -> Outcome | None:
        """Claim one due transcription and work on it; ``None`` when none is due."""
        claim = self.queue.claim(worker, lease=self.pipeline.lease.total_seconds(),
                                 max_attempts=self.settings.attempts)
        if claim is None:
            return None
        self.last = claim
        try:
            return self.work(claim, stop)
        except LeaseLost:
            raise
        except Exception as exc:
            return self._failed(claim, exc)

    def work(self, claim: Claim, stop: threading.Event) -> Outcome:
        """Do ``claim``'s transcription; what became of it."""
        row = self.catalog.get(claim.row_id)
        if row is None:
            return Outcome("gone")
        reason = self.skip_reason(row)
        if reason is not None:
            self.queue.skip(claim, reason)
            forget_pieces(self.catalog, row.sha256)
            return Outcome("skipped")
        if not first_holder(self.catalog, row.id, row.sha256, claim.worker):
            # The same audio is being transcribed by another worker: its transcript is
            # copied once it is done.
            defer(self.catalog, row.id, claim.worker, SAME_AUDIO_WAIT)
            return Outcome("deferred")
        engine = self.engine
        mark = fingerprint(engine.name, engine.model)
        if claim.origin != Origin.REANALYZE:
            copied = self._copy_done(claim, row, mark)
            if copied is not None:
                return copied
        with contextlib.ExitStack() as stack:
            lease = stack.enter_context(_Lease(self.queue, claim,
                                               self.pipeline.lease.total_seconds()))
            transcript, seconds = self._transcribe(stack, row, lease, stop)
            claim = lease.claim
        return self._keep(claim, row, transcript, mark, seconds)

    def skip_reason(self, row: Row) -> str | None:
        """Why ``row`` is not transcribed (its analysis, or the filters), or ``None``."""
        analysis = row.analysis
        if row.self_test:
            return "self_test"
        if analysis is None:
            return "no_analysis"
        if analysis.state == "skipped":
            return f"analysis_skipped:{analysis.reason}" if analysis.reason else "analysis_skipped"
        if analysis.state == "failed":
            return "analysis_failed"
        for flag in NOTHING_SAID:
            if flag in analysis.flags:
                return flag
        s = self.settings
        if s.accounts and (row.account_id or "") not in s.accounts:
            return "account"
        if s.kinds and row.kind not in s.kinds:
            return "kind"
        duration = (analysis.summary or {}).get("duration_ms")
        seconds = float(duration) / 1000 if duration is not None else None
        if seconds is not None and seconds < s.min_duration:
            return "too_short"
        if seconds is not None and s.max_duration is not None and seconds > s.max_duration:
            return "too_long"
        return None

    # -- the ways to a transcript -----------------------------------------------------

    def _copy_done(self, claim: Claim, row: Row, mark: str) -> Outcome | None:
        """The same audio's done transcript (same engine and model) from another copy."""
        done = self.queue.done_result(row.sha256, mark, besides=row.id)
        source = self.catalog.get(done.row_id) if done is not None else None
        if done is None or source is None:
            return None
        try:
            data = self.store.get_companion(source.copy_record(), TRANSCRIPT_SUFFIX)
            transcript = Transcript.from_json(json.loads(data))
        except (KzrError, ValueError) as exc:
            log.info("job transcribe %s: the transcript of %s cannot be copied (%s)", row.id,
                     source.id, exc)
            return None
        return self._keep(claim, row, transcript, mark, 0.0)

    def _transcribe(self, stack: contextlib.ExitStack, row: Row, lease: _Lease,
                    stop: threading.Event) -> tuple[Transcript, float]:
        """Decode the recording and transcribe each channel with speech; the merged
        transcript and the seconds of audio sent."""
        from .decoding import channels_of

        analysis = json.loads(self.store.get_companion(row.copy_record(), ANALYSIS_SUFFIX))
        speech: Mapping[str, Any] = analysis["speech"]
        spoken = [name for name in analysis["channel_names"] if speech.get(name)]
        engine = self.engine
        if not spoken:
            return Transcript(self.settings.language, engine.name, engine.model), 0.0
        samples, rate = channels_of(self.store, self.spool, stack, row, spoken)
        runs = {name: [(int(a), int(b)) for a, b in speech[name]] for name in spoken}
        answers: dict[tuple[str, Piece], Transcript] = {}
        missing: list[tuple[str, Piece]] = []
        for name in spoken:
            for p in cut_pieces(runs[name], len(samples[name]) * 1000 // rate,
                                piece=self.settings.piece):
                kept = known_piece(self.catalog, self._key(row, name, p))
                if kept is not None:
                    answers[(name, p)] = Transcript.from_json(kept)
                else:
                    missing.append((name, p))

        def ask(item: tuple[str, Piece]) -> Transcript:
            if lease.lost.is_set() or stop.is_set():
                raise LeaseLost("the lease ended, or the worker is stopping")
            try:
                return self._ask(row, item[0], item[1], samples[item[0]], rate)
            finally:
                self.catalog.release()  # this thread's connection: the pool's threads end

        if missing:
            # Every channel's missing pieces in one pool: up to ``concurrency`` at once.
            with ThreadPoolExecutor(max_workers=self.settings.concurrency,
                                    thread_name_prefix="kzr-transcribe") as pool:
                answers.update(zip(missing, pool.map(ask, missing), strict=True))
        parts = {name: transcribe_channel(
            engine, samples[name], rate, runs[name], language=self.settings.language,
            piece=self.settings.piece, known=functools.partial(_answer, answers, name))
            for name in spoken}
        sent = sum(p.duration for _, p in missing)
        return merge_channels(parts, engine=engine.name, model=engine.model), sent

    def _ask(self, row: Row, channel: str, p: Piece, samples: Any, rate: int) -> Transcript:
        """One piece from the engine, counted, redacted as far as one piece can be (the
        whole is redacted again), and kept in the catalog at once."""
        started = time.monotonic()
        error: BaseException | None = None
        try:
            answer = p.place(self.engine.transcribe(p.cut(samples, rate), rate,
                                                    self.settings.language))
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._count(outcome_of(error), p.duration if error is None else 0.0)
            log.debug("piece %s %s-%s: %s in %.1fs", channel, p.start, p.end,
                      outcome_of(error), time.monotonic() - started)
        answer = self.redactor(answer)
        keep_piece(self.catalog, self._key(row, channel, p), answer.to_json({}))
        return answer

    def _key(self, row: Row, channel: str, p: Piece) -> dict[str, Any]:
        engine = self.engine
        return {"sha256": row.sha256, "channel": channel, "start_ms": p.start_ms,
                "end_ms": p.end_ms, "engine": engine.name, "model": engine.model}

    def _count(self, outcome: str, seconds: float) -> None:
        if self.on_request is not None:
            self.on_request(outcome, seconds)

    def _keep(self, claim: Claim, row: Row, transcript: Transcript, mark: str,
              seconds: float) -> Outcome:
        """Redact, write beside the recording everywhere, index, mark done."""
        stored = self.redactor(transcript)
        caller = self.callers.caller_for(row.account_id, row.kind)
        names = sorted({s.channel for s in stored.segments} | {w.channel for w in stored.words})
        doc = stored.to_json(speakers_for(names, caller))
        data = document(doc)
        if not self.store.put_companions(row.copy_record(), {TRANSCRIPT_SUFFIX: data}):
            return Outcome("gone")
        self.catalog.put_segments(row.id, stored.segments)
        digests = {TRANSCRIPT_SUFFIX: hashlib.sha256(data).hexdigest()}
        if not self.queue.finish(claim, summary_of(doc), digests, mark):
            raise LeaseLost("the job was taken by another worker before it was done")
        forget_pieces(self.catalog, row.sha256)
        return Outcome("done", seconds)

    def _failed(self, claim: Claim, exc: Exception) -> Outcome:
        """A failed attempt: retried after the backoff when the engine may recover, else
        failed at once with its reason (a 401, a rejected request, a bad recording)."""
        if isinstance(exc, TranscribeError):
            error = str(exc) or type(exc).__name__
            retry = exc.retryable
            log.warning("job transcribe %s, attempt %d: %s%s", claim.row_id, claim.attempts,
                        error, "" if retry else " (not retried)")
        elif isinstance(exc, NotFound):
            error, retry = f"the recording or its analysis cannot be read: {exc}", True
            log.warning("job transcribe %s, attempt %d: %s", claim.row_id, claim.attempts,
                        error)
        else:
            error, retry = f"{type(exc).__name__}: {exc}", True
            log.exception("job transcribe %s, attempt %d failed", claim.row_id, claim.attempts)
        state = self.queue.fail(claim, error,
                                max_attempts=self.settings.attempts if retry else claim.attempts,
                                retry_in=self.pipeline.retry_in(claim.attempts))
        if state == "failed":
            forget_pieces(self.catalog, claim.sha256)
        return Outcome(state or "lost")


def _answer(answers: Mapping[tuple[str, Piece], Transcript], channel: str,
            piece: Piece) -> Transcript | None:
    return answers.get((channel, piece))


def speakers_for(names: list[str], caller: str) -> dict[str, str]:
    """Who speaks on each channel of a transcript, ``caller`` on its side."""
    from ..analysis.channels import speakers

    if set(names) <= {"left", "right"} and names:
        return speakers(("left", "right"), caller)
    return speakers(tuple(names), caller)


__all__ = ["NOTHING_SAID", "Transcription", "speakers_for"]
