"""Rebuild a catalog from a store's sidecars (``kzr-wsgi reindex``).

The sidecars are the source of truth. Reindexing upserts a row for every committed
copy (idempotent: the row ids are derived from the copies), removes rows of this store
whose copy is no longer indexed, and, for sidecars written before inspection existed
(no ``audio`` key at all), reads the file back, inspects it and adds ``audio`` to the
sidecar (the store replaces it atomically).

The analysis comes back too, without decoding anything: a copy with its analysis beside
it (``<name>.kzr.analysis.json``, and the waveform's ``.kzr.peaks.json``) gets its done
job back, its summary, its flags and the files' sha256s (what ``verify`` checks them
against). A copy without one is queued (as a backfill: its flags are not counted as a
new upload's), unless it has a job already; a skipped one is skipped again at once.
A transcript beside a copy (``<name>.kzr.transcript.json``) gives back its done
transcription and its search rows, without asking any engine.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import KzrError, NotFound
from ..naming import ANALYSIS_SUFFIX, PEAKS_SUFFIX, TRANSCRIPT_SUFFIX
from ..stores.base import CopyStore
from ..stores.readback import scan
from .analysis import Origin, Restored, summary_of
from .facade import Catalog
from .rows import Row, row_from_record
from .transcripts import restore as restore_transcript

log = logging.getLogger("kzr_wsgi.catalog")

#: Rows written per transaction.
BATCH = 500
#: The catalog state set while a store holds copies its catalog has never been filled
#: with (``serve`` says so at start-up); a complete reindex clears it.
NEEDS_REINDEX = "needs_reindex"


#: What reindex and verify need of a store (both built-in stores are one): the store
#: contract's :class:`~kzr_wsgi.stores.base.CopyStore`.
IndexedStore = CopyStore


@dataclass
class ReindexResult:
    """What a reindex did."""

    #: Rows written (new or refreshed).
    rows: int = 0
    #: Sidecars that had no ``audio`` and got one.
    inspected: int = 0
    #: Rows removed because their copy is no longer indexed.
    removed: int = 0
    #: Copies that could not be read back for inspection (still catalogued).
    unreadable: int = 0
    #: Analyses put back from the files beside their copies.
    analyses: int = 0
    #: Transcripts put back (their jobs and search rows) from the files beside their copies.
    transcripts: int = 0


def reindex(
    store: IndexedStore,
    catalog: Catalog,
    *,
    owns: Callable[[str], bool] | None = None,
    inspect: bool = True,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> ReindexResult:
    """Catalogue every copy ``store`` holds; see the module docstring.

    :param owns: says whether a row's location belongs to ``store``: such rows whose
        copy was not seen are removed (``None``: remove nothing).
    :param inspect: inspect the audio of sidecars that have none.
    :param progress: called with each record once it is done.
    """
    result = ReindexResult()
    seen: set[str] = set()
    batch: list[Row] = []
    restored: dict[str, Restored] = {}
    transcripts: dict[str, tuple[str, bytes]] = {}
    for record in store.records():
        if inspect and "audio" not in record:
            _inspect(store, record, result)
        try:
            row = row_from_record(record)
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("%s: not a usable sidecar (%s); skipped",
                        record.get("location"), exc)
            continue
        seen.add(row.id)
        batch.append(row)
        found = _analysis_beside(store, record)
        if found is not None:
            restored[row.id] = found
        said = _transcript_beside(store, record)
        if said is not None:
            transcripts[row.id] = (row.sha256, said)
        if len(batch) >= BATCH:
            result.rows += _write(catalog, batch, restored, result)
            _restore_transcripts(catalog, transcripts, result)
        if progress is not None:
            progress(record)
    result.rows += _write(catalog, batch, restored, result)
    _restore_transcripts(catalog, transcripts, result)
    if owns is not None:
        for row_id, location in catalog.locations().items():
            if row_id not in seen and owns(location):
                result.removed += int(catalog.remove(row_id))
    catalog.set_state(NEEDS_REINDEX, None)
    return result


def _write(catalog: Catalog, batch: list[Row], restored: dict[str, Restored],
           result: ReindexResult) -> int:
    """Write a batch of rows with their restored analyses; empties both."""
    written = catalog.add_rows(batch, origin=Origin.BACKFILL, restored=restored)
    result.analyses += len(restored)
    batch.clear()
    restored.clear()
    return written


def _transcript_beside(store: IndexedStore, record: dict[str, Any]) -> bytes | None:
    """The transcript file beside a copy, or ``None`` when it has none."""
    try:
        return store.get_companion(record, TRANSCRIPT_SUFFIX)
    except NotFound:
        return None
    except KzrError as exc:
        log.warning("%s: its transcript cannot be read back (%s)", record.get("location"), exc)
        return None


def _restore_transcripts(catalog: Catalog, transcripts: dict[str, tuple[str, bytes]],
                         result: ReindexResult) -> None:
    """Put back the transcripts of rows just written (jobs and search rows); empties it."""
    for row_id, (sha256, data) in transcripts.items():
        if restore_transcript(catalog, row_id, sha256, data):
            result.transcripts += 1
        else:
            log.warning("row %s: its transcript file is not a transcript; left alone", row_id)
    transcripts.clear()


def _analysis_beside(store: IndexedStore, record: dict[str, Any]) -> Restored | None:
    """The done analysis the files beside a copy hold, or ``None`` when it has none."""
    files: dict[str, str] = {}
    try:
        data = store.get_companion(record, ANALYSIS_SUFFIX)
        doc = json.loads(data)
        files[ANALYSIS_SUFFIX] = hashlib.sha256(data).hexdigest()
        settings = str(doc["settings"])
    except NotFound:
        return None
    except (KzrError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: its analysis cannot be read back (%s); left for a backfill",
                    record.get("location"), exc)
        return None
    try:
        files[PEAKS_SUFFIX] = hashlib.sha256(
            store.get_companion(record, PEAKS_SUFFIX)).hexdigest()
    except KzrError:
        log.warning("%s: its analysis has no waveform beside it", record.get("location"))
    return Restored(summary_of(doc), files, settings)


def _inspect(store: IndexedStore, record: dict[str, Any], result: ReindexResult) -> None:
    """Read the copy back, inspect it, and add ``audio`` to its sidecar."""
    try:
        stream = store.open_copy(record)
    except KzrError as exc:
        log.warning("%s: cannot be read back for inspection: %s", record.get("location"), exc)
        result.unreadable += 1
        return
    try:
        found = scan(stream, record)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    if not found.inspected:
        return  # no inspector in this version: leave the sidecar for a later reindex
    if found.sha256 != record.get("sha256"):
        # Bit rot or a file changed by hand: not this copy's audio. verify reports it.
        log.warning("%s: its bytes no longer match its sha256; not inspected",
                    record.get("location"))
        result.unreadable += 1
        return
    record["audio"] = found.audio.to_json() if found.audio is not None else None
    if store.rewrite_record(record):
        result.inspected += 1
