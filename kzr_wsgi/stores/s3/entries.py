"""The S3 store's index entries and its commit point.

Each committed copy has an index entry at
``<prefix>.kzr/index/<nn>/<name digest>/<rid16>-<sha256>.json`` holding its record (the
sidecar's content). :func:`commit` writes the sidecar, then the entry with
``If-None-Match: *``: the upload whose entry lands first owns the recording; a loser
deletes its own object and answers with the winner's copy. An entry whose object was
deleted by hand is stale and is replaced on condition (``If-Match``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ...errors import StoreUnavailable
from ...faults import crash_point
from ...metadata import dumps
from ...naming import SIDECAR_SUFFIX, STATE_DIR, name_digest, utcnow
from ...recording import Kind, Name, Recording, Stored
from .client import Bucket, Operation, http_status, mapped_errors, missing, unless_missing

log = logging.getLogger("kzr_wsgi.store")

#: Where index entries live, under the store's prefix. ``safe_component`` never starts
#: with a dot, so no layout value can produce this name.
INDEX = f"{STATE_DIR}/index"
#: How often to retry the commit when S3 answers 409 (a conditional write racing another).
_CONFLICT_RETRIES = 5


def commit(
    bucket: Bucket,
    recording: Recording,
    key: str,
    entry_key: str,
    size: int,
    digest: str,
    *,
    content_type: str,
) -> Stored:
    """Write the sidecar, then the index entry (the commit point) with If-None-Match."""
    crash_point("s3.completed")
    record = new_record(recording, bucket.url_for(key), key, size, digest, content_type)
    body = dumps(record).encode("ascii")
    try:
        with mapped_errors(Operation.STORE):
            bucket.client.put_object(Bucket=bucket.name, Key=key + SIDECAR_SUFFIX, Body=body,
                                    ContentType="application/json")
    except BaseException:
        # Not committed: nothing points at the object, so nothing must be left of it.
        delete_quietly(bucket, key)
        raise
    crash_point("s3.sidecar")
    with mapped_errors(Operation.STORE):
        for attempt in range(_CONFLICT_RETRIES):
            try:
                bucket.client.put_object(Bucket=bucket.name, Key=entry_key, Body=body,
                                        ContentType="application/json", IfNoneMatch="*")
                return catalogue(bucket, record, Stored(bucket.url_for(key), size, digest))
            except ClientError as exc:
                status = http_status(exc)
                if status == 409 and attempt + 1 < _CONFLICT_RETRIES:
                    # Another conditional write on this entry is in progress: S3 asks
                    # us to retry, and the next attempt sees its outcome.
                    time.sleep(0.05 * (attempt + 1))
                    continue
                if status != 412:
                    # The entry may or may not have been written: keep our copy, so
                    # that whatever the entry points at exists. Kazoo will retry.
                    raise
            existing = committed(bucket, entry_key, replace_stale=body)
            if existing is None:
                # The entry was stale (its object deleted by hand) and now names ours,
                # or it vanished: the next conditional PUT tells which.
                continue
            if existing.location == bucket.url_for(key):
                # It was ours all along (boto3 resent a PUT whose first try landed).
                return catalogue(bucket, record, Stored(bucket.url_for(key), size, digest))
            # Another upload of this very recording committed first: ours is surplus.
            log.info("s3://%s/%s: the same recording was committed first at %s",
                     bucket.name, key, existing.location)
            delete_quietly(bucket, key + SIDECAR_SUFFIX, key)
            return existing
    raise StoreUnavailable("the object store kept reporting a conflicting write")


def catalogue(bucket: Bucket, record: dict[str, Any], stored: Stored) -> Stored:
    """Write a newly committed copy's row (a failure is logged and counted, never raised)."""
    if bucket.catalog is not None:
        bucket.catalog.add_stored(record)
    return stored


def committed(bucket: Bucket, entry_key: str, replace_stale: bytes | None = None) -> Stored | None:
    """The copy an index entry points at, or ``None`` when there is none.

    An entry whose object was deleted (by hand) is stale: with ``replace_stale`` it is
    overwritten, on condition that it is still that stale entry (``If-Match``).
    """
    found = get_entry(bucket, entry_key)
    if found is None:
        return None
    entry, s3_etag = found
    if entry is not None:
        try:
            bucket.client.head_object(Bucket=bucket.name, Key=entry["key"])
        except ClientError as exc:
            if not missing(exc):
                raise
        else:
            return Stored(entry["location"], int(entry["size"]), entry["sha256"],
                          created=False)
    if replace_stale is not None:
        try:
            bucket.client.put_object(Bucket=bucket.name, Key=entry_key, Body=replace_stale,
                                    ContentType="application/json",
                                    IfMatch=s3_etag)
        except ClientError as exc:
            if http_status(exc) != 412:
                raise
            # Another writer replaced the stale entry first: the caller looks again.
    return None


def get_entry(bucket: Bucket, key: str) -> tuple[dict[str, Any] | None, str] | None:
    """An index entry and its S3 ETag; ``None`` when absent, entry ``None`` when unreadable."""
    response = unless_missing(bucket.client.get_object, Bucket=bucket.name, Key=key)
    if response is None:
        return None
    with response["Body"] as body:
        try:
            entry = json.loads(body.read())
        except ValueError:
            entry = None
    usable = isinstance(entry, dict) and "key" in entry
    return (entry if usable else None), response["ETag"]


def read_entry(bucket: Bucket, key: str) -> dict[str, Any] | None:
    """The index entry at ``key``; ``None`` when absent or unreadable."""
    found = get_entry(bucket, key)
    return None if found is None else found[0]


def index_key(bucket: Bucket, name: Name, recording_id: str | None, digest: str) -> str:
    """The index entry's key for ``name``, ``recording_id`` and body ``digest``."""
    return f"{index_dir(bucket, name)}{rid_digest(recording_id)}-{digest}.json"


def index_dir(bucket: Bucket, name: Name) -> str:
    """The index "directory" (a key prefix) holding ``name``'s entries."""
    nd = name_digest(name)
    return f"{bucket.prefix}{INDEX}/{nd[:2]}/{nd}/"


def record_index_key(bucket: Bucket, record: Mapping[str, Any]) -> str:
    """The index entry's key for the copy a sidecar dict describes."""
    name = Name(Kind(record["kind"]), tuple(record["segments"]), record["filename"])
    return index_key(bucket, name, record.get("recording_id"), str(record["sha256"]))


def delete_quietly(bucket: Bucket, *keys: str) -> None:
    """Delete ``keys``, logging (not raising) a failure: the sweep finds what is left."""
    for key in keys:
        try:
            bucket.client.delete_object(Bucket=bucket.name, Key=key)
        except (BotoCoreError, ClientError):
            log.warning("could not delete surplus copy s3://%s/%s", bucket.name, key)


def rid_digest(recording_id: str | None) -> str:
    """16 hex digits standing for the ``recording_id`` (the same form as the disk index)."""
    blob = (recording_id or "").encode("utf-8", "surrogateescape")
    return hashlib.sha256(blob).hexdigest()[:16]


def new_record(
    recording: Recording, location: str, key: str, size: int, digest: str, content_type: str
) -> dict[str, Any]:
    """The sidecar dict (and index entry) of ``recording`` stored at ``key``."""
    return {
        **recording.describe(),
        "content_type": content_type,
        "size": size,
        "sha256": digest,
        "stored_at": utcnow().isoformat(),
        "location": location,
        "key": key,
    }
