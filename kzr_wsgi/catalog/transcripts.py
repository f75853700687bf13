"""A recording's transcription as the catalog keeps it: its job, its state, its pieces.

The ``transcribe`` job is one more row of the queue (:mod:`kzr_wsgi.catalog.jobs`)
beside the recording's ``analyse`` job, with its own state, attempts and backoff. It is
queued when the analysis ends (done, skipped or failed: :func:`queue_after`), by the
worker that ended it, once a transcribing worker has marked the catalog
(:data:`TRANSCRIBING`); :func:`catch_up` queues those a worker missed, and
:func:`backfill` every recording analysed before transcription was turned on. A done
job keeps a summary (:func:`summary_of`): the engine, the model, the language and the
transcript's length.

While a transcription is unfinished, each engine answer for a piece is kept in
``kzr_pieces`` by (audio sha256, channel, piece bounds, engine, model)
(:func:`known_piece`, :func:`keep_piece`), so a retry, or another host's worker on the
same audio, asks the engine only for the pieces still missing; they are deleted when
the job ends (:func:`forget_pieces`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..naming import TRANSCRIPT_SUFFIX
from .analysis import ANALYSE, Origin
from .jobs import INSERT_JOB, RESTORE_JOB, JobQueue, now_us
from .schema import JOBS_TABLE, PIECES
from .transcript_state import (
    GENERIC_ERROR,
    TRANSCRIBE,
    TranscriptState,
    fingerprint,
    summary_of,
)

if TYPE_CHECKING:
    from .connections import Transaction
    from .facade import Catalog
    from .text import Speakers

#: The catalog state a transcribing worker sets (microseconds): from then on, every
#: analysis that ends queues its recording's transcription.
TRANSCRIBING = "transcribing_since"


def queue_params(row_id: str, sha256: str, origin: str, now: int) -> dict[str, Any]:
    """The parameters of :data:`~kzr_wsgi.catalog.jobs.INSERT_JOB` for a transcription."""
    return {"row_id": row_id, "job": TRANSCRIBE, "origin": origin, "sha256": sha256,
            "now": now, "state": "pending", "reason": None}


def queue_after(catalog: Catalog, row_id: str, sha256: str, origin: str) -> None:
    """Queue the transcription of a recording whose analysis just ended (a no-op when
    it has one)."""
    catalog.execute(INSERT_JOB, queue_params(row_id, sha256, origin, now_us()))


#: Every recording whose analysis has ended and that has no transcription job.
_UNQUEUED = (
    f"INSERT INTO {JOBS_TABLE} (row_id, job, state, origin, sha256, attempts, due_us,"
    " created_us, updated_us) SELECT a.row_id, :job, 'pending', :origin, a.sha256, 0, :now,"
    f" :now, :now FROM {JOBS_TABLE} a WHERE a.job = :analyse AND a.state <> 'pending'"
    " AND COALESCE(a.finished_us, 0) >= :since AND NOT EXISTS (SELECT 1 FROM"
    f" {JOBS_TABLE} t WHERE t.row_id = a.row_id AND t.job = :job)"
)


def catch_up(catalog: Catalog, since_us: int) -> int:
    """Queue the transcription of every recording whose analysis ended at or after
    ``since_us`` and has none (analysed by a worker that did not know); how many."""
    return catalog.execute(_UNQUEUED, {"job": TRANSCRIBE, "origin": str(Origin.UPLOAD),
                                       "now": now_us(), "analyse": ANALYSE,
                                       "since": since_us})


def backfill(catalog: Catalog) -> int:
    """Queue the transcription of every analysed recording that has none; how many."""
    return catalog.execute(_UNQUEUED, {"job": TRANSCRIBE, "origin": str(Origin.BACKFILL),
                                       "now": now_us(), "analyse": ANALYSE, "since": 0})


def mark_transcribing(catalog: Catalog) -> int:
    """Say in the catalog that transcription is on (from now, unless said before);
    returns since when (microseconds)."""
    found = catalog.get_state(TRANSCRIBING)
    if found is not None and found.isdigit():
        return int(found)
    now = now_us()
    catalog.set_state(TRANSCRIBING, str(now))
    return now


def states(catalog: Catalog, row_ids: Sequence[str]) -> dict[str, TranscriptState]:
    """The transcription of each of these rows (rows without one are left out)."""
    queue = JobQueue(catalog, TRANSCRIBE)
    return {row_id: TranscriptState(s.state, s.attempts, s.reason, s.error, s.summary)
            for row_id, s in queue.states(row_ids).items()}


def restore(catalog: Catalog, row_id: str, sha256: str, data: bytes) -> bool:
    """Put back a done transcription from its file beside the recording (``reindex``):
    its job (unless done already) and its segments, without asking an engine. ``False``
    when the file is not a transcript."""
    from ..transcribe.model import Transcript

    try:
        doc = json.loads(data)
        transcript = Transcript.from_json(doc)
    except ValueError:
        return False
    now = now_us()

    def run(tx: Transaction) -> None:
        tx.execute(RESTORE_JOB, {
            "row_id": row_id, "job": TRANSCRIBE, "origin": str(Origin.REINDEX),
            "sha256": sha256, "now": now,
            "fingerprint": fingerprint(transcript.engine, transcript.model),
            "result": json.dumps(summary_of(doc), sort_keys=True),
            "files": json.dumps({TRANSCRIPT_SUFFIX: hashlib.sha256(data).hexdigest()})})

    catalog.within(run)
    catalog.put_segments(row_id, transcript.segments)
    return True


def view(catalog: Catalog, row_id: str, speaker: Speakers) -> dict[str, Any] | None:
    """The transcript view of a recording, from the catalog alone: ``{"segments":
    [{"start", "end", "channel", "speaker", "text"}], "engine", "model", "language",
    "text"}``; ``None`` until its transcription is done."""
    found = JobQueue(catalog, TRANSCRIBE).result_of(row_id)
    if found is None:
        return None
    segments = catalog.segments(row_id, speaker)
    return {"segments": segments, "engine": found.summary.get("engine"),
            "model": found.summary.get("model"), "language": found.summary.get("language"),
            "text": " ".join(s["text"] for s in segments if s["text"])}


def first_holder(catalog: Catalog, row_id: str, sha256: str, worker: str) -> bool:
    """Whether ``worker``'s job for ``row_id`` is the first of the leased transcriptions
    of the audio ``sha256`` (by claim time, then row id): the others wait for it, and
    then copy its transcript, so two hosts never ask the engine for the same pieces."""
    found = catalog.fetch(
        f"SELECT started_us, row_id, worker FROM {JOBS_TABLE} WHERE sha256 = :sha256"
        " AND job = :job AND state = 'pending' AND worker IS NOT NULL AND due_us > :now",
        {"sha256": sha256, "job": TRANSCRIBE, "now": now_us()})
    held = sorted((int(started or 0), str(rid)) for started, rid, who in found
                  if str(rid) != row_id or who == worker)
    return not held or held[0][1] == row_id


def defer(catalog: Catalog, row_id: str, worker: str, seconds: float) -> bool:
    """Give back a claimed transcription without counting the attempt, due again in
    ``seconds``; ``False`` when it was no longer this worker's."""
    now = now_us()
    return bool(catalog.execute(
        f"UPDATE {JOBS_TABLE} SET attempts = attempts - 1, worker = NULL, due_us = :due,"
        " updated_us = :now WHERE row_id = :row_id AND job = :job AND worker = :worker"
        " AND state = 'pending'",
        {"due": now + int(seconds * 1_000_000), "now": now, "row_id": row_id,
         "job": TRANSCRIBE, "worker": worker}))


# -- piece answers -----------------------------------------------------------------------


def known_piece(catalog: Catalog, key: Mapping[str, Any]) -> dict[str, Any] | None:
    """The kept answer for a piece (``key``: sha256, channel, start_ms, end_ms, engine,
    model), as the JSON document it was kept as, or ``None``."""
    found = catalog.fetch(
        f"SELECT answer FROM {PIECES} WHERE sha256 = :sha256 AND channel = :channel"
        " AND start_ms = :start_ms AND end_ms = :end_ms AND engine = :engine"
        " AND model = :model", key)
    if not found:
        return None
    doc = json.loads(found[0][0])
    return doc if isinstance(doc, dict) else None


def keep_piece(catalog: Catalog, key: Mapping[str, Any], answer: Mapping[str, Any]) -> None:
    """Keep a piece's answer (the first one kept wins)."""
    def run(tx: Transaction) -> None:
        tx.execute(
            f"INSERT INTO {PIECES} (sha256, channel, start_ms, end_ms, engine, model, answer,"
            " created_us) VALUES (:sha256, :channel, :start_ms, :end_ms, :engine, :model,"
            " :answer, :now) ON CONFLICT DO NOTHING",
            {**key, "answer": json.dumps(dict(answer), sort_keys=True), "now": now_us()})

    catalog.within(run)


def forget_orphan_pieces(catalog: Catalog) -> int:
    """Delete the kept answers of audio no pending transcription needs (its recording was
    removed or erased while it was transcribed); how many."""
    return catalog.execute(
        f"DELETE FROM {PIECES} WHERE sha256 NOT IN (SELECT sha256 FROM {JOBS_TABLE}"
        " WHERE job = :job AND state = 'pending')", {"job": TRANSCRIBE})


def forget_pieces(catalog: Catalog, sha256: str) -> int:
    """Delete the kept answers of an audio's pieces (its transcription ended)."""
    return catalog.execute(f"DELETE FROM {PIECES} WHERE sha256 = :sha256", {"sha256": sha256})


__all__ = ["GENERIC_ERROR", "TRANSCRIBE", "TRANSCRIBING", "TranscriptState", "backfill",
           "catch_up", "defer", "fingerprint", "first_holder", "forget_orphan_pieces",
           "forget_pieces", "keep_piece", "known_piece", "mark_transcribing", "queue_after",
           "queue_params", "restore", "states", "summary_of", "view"]
