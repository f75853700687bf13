"""What ``kzr-wsgi worker`` does for transcription: queue what the options ask, build
the step (see :mod:`kzr_wsgi.pipeline.transcription`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..catalog.analysis import JobState, Origin
from ..catalog.jobs import JobQueue
from ..catalog.transcripts import TRANSCRIBE
from ..catalog.transcripts import backfill as backfill_all
from ..stores.base import Store

if TYPE_CHECKING:
    from ..catalog import Catalog, Query
    from ..pipeline.settings import PipelineSettings
    from ..pipeline.spool import Spool
    from ..pipeline.transcription import Transcription
    from ..transcribe import Settings


def queue_transcriptions(catalog: Catalog, on: bool, *, backfill: bool, retry_failed: bool,
                         retranscribe: bool, query: Query) -> None:
    """Queue what ``--backfill``, ``--retry-failed`` and ``--retranscribe`` ask of the
    transcriptions (``--backfill`` only when this worker transcribes), each on a line."""
    queue = JobQueue(catalog, TRANSCRIBE)
    if backfill and on:
        click.echo(f"kzr-wsgi: queued {backfill_all(catalog)} analysed recording(s) without a "
                   "transcription", err=True)
    if retry_failed:
        count = queue.requeue([JobState.FAILED], query, Origin.RETRY)
        click.echo(f"kzr-wsgi: queued {count} failed transcription(s) again", err=True)
    if retranscribe:
        count = queue.requeue([JobState.DONE], query, Origin.REANALYZE)
        click.echo(f"kzr-wsgi: queued {count} done transcription(s) to be made again",
                   err=True)


def redact_again(store: Store, catalog: Catalog, redactor: Any, callers: Any,
                 query: Query) -> None:
    """``--reredact``: the current rules over the stored transcripts; said on a line."""
    from ..pipeline.reredact import Refused, reredact

    try:
        done = reredact(store, catalog, redactor, callers, query)
    except Refused as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"kzr-wsgi: re-redacted {done.changed} of {done.checked} transcript(s) "
               f"({done.versions_deleted} earlier version(s) deleted, {done.failed} "
               "unreadable)", err=True)


def transcriber(settings: Settings | None, store: Store, catalog: Catalog,
                pipeline: PipelineSettings, spool: Spool, metrics: Any
                ) -> Transcription | None:
    """The transcription step of a worker (``None`` when it does not transcribe)."""
    if settings is None:
        return None
    from ..pipeline.transcription import Transcription

    counted = metrics.transcribe_request if metrics is not None else None
    return Transcription(settings, store, catalog, pipeline=pipeline, spool=spool,
                         on_request=counted)


__all__ = ["queue_transcriptions", "redact_again", "transcriber"]
