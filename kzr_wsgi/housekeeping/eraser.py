"""Erasing one copy, in prune's crash-safe order, with a journal of ids and hashes only.

The steps of an erased copy, each durable before the next (the points ``erase.STEP``
of :mod:`kzr_wsgi.faults` are between them):

1. the journal marker ``erasing/<id>.json`` in the store's state: the copy's
   *skeleton* (its name, recording id, sha256, size, time received and where it is:
   never a number, a caller name or any other metadata), the request's reference and
   the selector's keyed hash, and where the audit trail ended;
2. the tombstone (:mod:`.tombstones`), unless the body recurs across calls;
3. the audit line (``erase``): at most once per copy;
4. the index entry: from now on the recording is not stored;
5. the catalog row, with its jobs, its transcript's segments and its share links;
6. the file, its companion files (analysis, waveform, transcript) and its sidecar;
7. on a bucket: every version of those keys and of the index entry, and unfinished
   uploads to them;
8. the journal marker.

A kill anywhere leaves the copy whole (before 4) or gone from every index (after 4);
the next erase (or the per-host job) finishes what a marker names first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..catalog import Catalog
from ..faults import crash_point
from ..stores.base import CopyStore
from ..stores.state import DiskState, S3State
from .audit import Action, AuditTrail, audit_event, os_user
from .retention import deletion_id
from .tombstones import Tombstones, wanted

log = logging.getLogger("kzr_wsgi.erase")

#: What a journal marker keeps of a copy's sidecar: what finds and removes it, no more.
SKELETON = ("kind", "segments", "filename", "recording_id", "sha256", "size", "received_at",
            "path", "key", "location")
#: The journal's folder in the store's state.
JOURNAL = "erasing"


def skeleton(record: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a sidecar dict the journal may keep (ids and hashes, no metadata)."""
    return {k: record[k] for k in SKELETON if k in record}


def erasure_id(record: Mapping[str, Any]) -> str:
    """The id of the erasure of this very copy (its journal marker's and audit line's)."""
    return "e-" + deletion_id(record)[2:]


@dataclass(frozen=True)
class Request:
    """What every copy of one erase shares."""

    reference: str
    #: The selectors as a keyed hash (:meth:`~.erasing.Selectors.fingerprint`).
    selector: str
    #: How long a tombstone stops retries (``None``: no tombstones).
    tombstone: timedelta | None


def store_label(target: CopyStore) -> str:
    """How the audit trail and the receipt name a store: ``disk`` or ``s3``."""
    return "s3" if isinstance(target.state(), S3State) else "disk"


def copy_keys(target: CopyStore, record: Mapping[str, Any]) -> list[str]:
    """A bucket's keys of a copy whose versions go too: the object (its sidecar and
    companions extend it) and its index entry. Empty for a disk store."""
    bucket = _bucket_of(target)
    if bucket is None or "key" not in record:
        return []
    from ..stores.s3.entries import record_index_key

    return [str(record["key"]), record_index_key(bucket, record)]


def _bucket_of(target: CopyStore) -> Any:
    """The :class:`~kzr_wsgi.stores.s3.client.Bucket` of an S3 store, else ``None``."""
    if store_label(target) != "s3":
        return None
    from ..stores.s3 import S3Store
    from ..stores.s3.client import Bucket

    if not isinstance(target, S3Store):
        return None
    return Bucket(target.client, target.bucket, target.prefix)


class Eraser:
    """Erases copies in the order above, recording each in the state of ``state``."""

    def __init__(self, state: DiskState | S3State, request: Request) -> None:
        self.state = state
        self.request = request
        self.trail = AuditTrail(state)
        self.tombstones = Tombstones(state)
        self.user = os_user()

    def erase(self, target: CopyStore, catalog: Catalog | None, record: Mapping[str, Any],
              row_id: str) -> bool:
        """Erase the copy ``record`` of ``target``; False when it was no longer indexed
        (another erase took it), though what is left of it (versions) still goes."""
        marker = f"{JOURNAL}/{erasure_id(record)}.json"
        with target.index_lock(record):
            existing = self.state.read(marker)
            if existing is None:
                if not target.indexes(record):
                    self._versions(target, record)
                    return False
                doc = {"record": skeleton(record), "row_id": row_id,
                       "after": self.trail.mark(), "request": self.request.reference,
                       "selector": self.request.selector,
                       "tombstone": self.request.tombstone is not None and wanted(record),
                       "tombstone_s": (self.request.tombstone.total_seconds()
                                       if self.request.tombstone is not None else 0),
                       "store": store_label(target)}
                self.state.write(marker, json.dumps(doc, sort_keys=True).encode("utf-8"))
            else:
                doc = json.loads(existing)
            crash_point("erase.journal")
            self._finish(target, catalog, doc)
            self.state.delete(marker, sync=False)
        return True

    def finish_pending(self, targets: tuple[CopyStore, ...], catalog: Catalog | None) -> int:
        """Finish every erasure a killed erase began (its marker remains); how many."""
        done = 0
        for name, _ in list(self.state.list(JOURNAL)):
            data = self.state.read(name)
            if data is None:
                continue
            doc = json.loads(data)
            record = doc["record"]
            target = next((t for t in targets if t.owns(str(record.get("location", "")))), None)
            if target is None:
                log.warning("erase journal %s names a copy in no store given here: left", name)
                continue
            with target.index_lock(record):
                self._finish(target, catalog if catalog is not None else target.catalog, doc)
                self.state.delete(name, sync=False)
            done += 1
        return done

    def _finish(self, target: CopyStore, catalog: Catalog | None, doc: Mapping[str, Any]) -> None:
        """Steps 2 to 7 of the copy the journal marker ``doc`` names (each idempotent)."""
        record = doc["record"]
        row_id = str(doc["row_id"])
        if doc.get("tombstone"):
            self.tombstones.add(record, str(doc["request"]),
                                timedelta(seconds=float(doc["tombstone_s"])))
        crash_point("erase.tombstone")
        event = audit_event(Action.ERASE, {"size": record.get("size"),
                                           "sha256": record.get("sha256")},
                            user=self.user, reason="erased on request",
                            event_id=erasure_id(record))
        event.update(row_id=row_id, request=doc["request"], selector=doc["selector"],
                     stores=[doc.get("store") or store_label(target)])
        self.trail.append(event, after=int(doc["after"]))
        crash_point("erase.audit")

        def unindexed() -> None:
            crash_point("erase.index")
            if catalog is not None:
                forget_row(catalog, row_id)
            crash_point("erase.catalog")

        target.remove(record, unindexed=unindexed, locked=True)
        crash_point("erase.file")
        self._versions(target, record)
        crash_point("erase.versions")

    def _versions(self, target: CopyStore, record: Mapping[str, Any]) -> None:
        """Every version of the copy's keys (a bucket's), and unfinished uploads to them."""
        keys = copy_keys(target, record)
        bucket = _bucket_of(target)
        if keys and bucket is not None:
            from ..stores.s3.versions import delete_versions
            from ..stores.state import s3_errors

            with s3_errors():
                delete_versions(bucket.client, bucket.name, keys)


def forget_row(catalog: Catalog, row_id: str) -> None:
    """Remove a row, its jobs and segments, its share links (a link dies with its
    recording) and the engine's kept answers for pieces of its audio (transcript text
    of a transcription that had not ended)."""
    from ..catalog.schema import UI_SHARES
    from ..catalog.transcripts import forget_pieces

    row = catalog.get(row_id)
    catalog.remove(row_id)
    catalog.write((f"DELETE FROM {UI_SHARES} WHERE recording = :id", {"id": row_id}))
    if row is not None:
        forget_pieces(catalog, row.sha256)
