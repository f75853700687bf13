"""``kzr-wsgi worker --reredact``: the redaction rules as they are now, applied to the
transcripts already stored, their files and their search rows.

For each done transcription the filters select, the file beside the recording is read,
redacted with the current rules (``redact``, ``redact-patterns``) and, when that changes
it, written again in every store that holds it, its search rows replaced and its job's
summary and sha256 updated; then the search index is scrubbed of the replaced words
(:meth:`Catalog.scrub_text <kzr_wsgi.catalog.Catalog.scrub_text>`). No engine is
asked. On a bucket that keeps versions, every earlier version of the rewritten
transcript is deleted (they hold what the new rules redact); where that is impossible
(Object Lock), nothing is changed and the command says why.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..catalog.jobs import JobQueue
from ..catalog.transcripts import TRANSCRIBE, summary_of
from ..errors import KzrError
from ..naming import TRANSCRIPT_SUFFIX
from ..transcribe import Redactor, Transcript
from .transcription import speakers_for
from .worker import document

if TYPE_CHECKING:
    from ..catalog import Catalog, Query
    from ..stores.base import Store
    from .settings import CallerMap

log = logging.getLogger("kzr_wsgi.pipeline")


class Refused(KzrError):
    """Re-redaction cannot be done safely here; the message says why."""


@dataclass
class Reredacted:
    """What a re-redaction did."""

    checked: int = 0
    changed: int = 0
    #: Earlier versions of rewritten transcripts deleted from buckets that keep versions.
    versions_deleted: int = 0
    failed: int = 0


def refusal(store: Store) -> str | None:
    """Why ``store`` cannot be re-redacted safely (a bucket's versions), or ``None``."""
    from ..stores.s3.versions import versions_refusal

    for bucket in store.buckets():
        said = versions_refusal(bucket)
        if said is not None:
            return said
    return None


def reredact(store: Store, catalog: Catalog, redactor: Redactor, callers: CallerMap,
             query: Query) -> Reredacted:
    """Apply ``redactor`` to every done transcript ``query`` selects; see the module."""
    said = refusal(store)
    if said is not None:
        raise Refused(f"re-redaction refused: {said}")
    from ..stores.s3.versions import delete_earlier_versions, keeps_versions

    versioned = [b for b in store.buckets() if keeps_versions(b)]
    queue = JobQueue(catalog, TRANSCRIBE)
    done = Reredacted()
    for row in catalog.iter_search(query):
        if row.transcript is None or row.transcript.state != "done":
            continue
        done.checked += 1
        try:
            before = Transcript.from_json(json.loads(
                store.get_companion(row.copy_record(), TRANSCRIPT_SUFFIX)))
        except (KzrError, ValueError) as exc:
            log.warning("%s: its transcript cannot be read (%s)", row.location, exc)
            done.failed += 1
            continue
        after = redactor(before)
        if after == before:
            continue
        names = sorted({s.channel for s in after.segments} | {w.channel for w in after.words})
        doc = after.to_json(speakers_for(names, callers.caller_for(row.account_id, row.kind)))
        data = document(doc)
        if not store.put_companions(row.copy_record(), {TRANSCRIPT_SUFFIX: data}):
            continue  # removed meanwhile
        for bucket in versioned:
            done.versions_deleted += delete_earlier_versions(bucket, row.copy_record(),
                                                             TRANSCRIPT_SUFFIX)
        catalog.put_segments(row.id, after.segments)
        _update(queue, row.id, summary_of(doc), hashlib.sha256(data).hexdigest())
        done.changed += 1
    if done.changed:
        # The replaced segments' words out of the index's bytes too (SQLite's FTS5 keeps
        # them until a merge; PostgreSQL's until a vacuum).
        catalog.scrub_text(())
    return done


def _update(queue: JobQueue, row_id: str, summary: dict[str, Any], digest: str) -> None:
    """The done job's summary and file sha256, as the rewritten file is now."""
    from ..catalog.schema import JOBS_TABLE

    queue.catalog.execute(
        f"UPDATE {JOBS_TABLE} SET result = :result, files = :files WHERE row_id = :row_id"
        " AND job = :job AND state = 'done'",
        {"result": json.dumps(summary, sort_keys=True),
         "files": json.dumps({TRANSCRIPT_SUFFIX: digest}), "row_id": row_id,
         "job": TRANSCRIBE})


__all__ = ["Refused", "Reredacted", "refusal", "reredact"]
