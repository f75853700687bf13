"""Changing committed copies in S3: rewritten (``reindex``), discarded (a fan-out's
rollback), removed for good (retention).

S3 has no locks: each change of an index entry is conditional on the entry read
(``If-Match`` on its ETag), so a retry that re-stored the recording meanwhile keeps its
new entry. Object keys are unique per upload, so deleting an object never hits another's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from ...metadata import dumps
from ...naming import (
    SIDECAR_SUFFIX,
)
from ...recording import Kind, Name, Stored
from . import companions
from .client import Bucket, Operation, http_status, mapped_errors, missing
from .entries import get_entry, index_key, read_entry, record_index_key


def rewrite_record(bucket: Bucket, record: dict[str, Any]) -> bool:
    """Replace a copy's sidecar and index entry with ``record`` (``reindex`` adds ``audio``).

    The body of :meth:`~kzr_wsgi.stores.s3.S3Store.rewrite_record`, which says more.
    """
    name = Name(Kind(record["kind"]), tuple(record["segments"]), record["filename"])
    entry_key = index_key(bucket, name, record.get("recording_id"), record["sha256"])
    body = dumps(record).encode("ascii")
    with mapped_errors(Operation.STORE):
        found = get_entry(bucket, entry_key)
        if found is None or found[0] is None or found[0].get("key") != record["key"]:
            return False
        bucket.client.put_object(Bucket=bucket.name, Key=record["key"] + SIDECAR_SUFFIX,
                                Body=body, ContentType="application/json")
        try:
            bucket.client.put_object(Bucket=bucket.name, Key=entry_key, Body=body,
                                    ContentType="application/json", IfMatch=found[1])
        except ClientError as exc:
            if http_status(exc) == 412:
                return False
            raise
    return True


def discard(bucket: Bucket, stored: Stored) -> None:
    """Take back a copy this store committed (a fan-out's rollback).

    The body of :meth:`~kzr_wsgi.stores.s3.S3Store.discard`, which says more.
    """
    prefix = f"s3://{bucket.name}/"
    if not stored.location.startswith(prefix):
        raise ValueError(f"{stored.location!r} is not in this store")
    key = stored.location[len(prefix):]
    with mapped_errors(Operation.DISCARD):
        try:
            response = bucket.client.get_object(Bucket=bucket.name, Key=key + SIDECAR_SUFFIX)
        except ClientError as exc:
            if not missing(exc):
                raise
            record = None
        else:
            with response["Body"] as body:
                record = json.loads(body.read())
        if isinstance(record, dict):
            name = Name(Kind(record["kind"]), tuple(record["segments"]), record["filename"])
            entry_key = index_key(bucket, name, record.get("recording_id"), stored.sha256)
            entry = read_entry(bucket, entry_key)
            if entry is not None and entry.get("key") == key:
                bucket.client.delete_object(Bucket=bucket.name, Key=entry_key)
                if bucket.catalog is not None:
                    bucket.catalog.remove_stored(record)
        bucket.client.delete_object(Bucket=bucket.name, Key=key)
        companions.delete_all(bucket, key)
        bucket.client.delete_object(Bucket=bucket.name, Key=key + SIDECAR_SUFFIX)


def indexes(bucket: Bucket, record: Mapping[str, Any]) -> bool:
    """True when the index entry for ``record``'s name, recording id and sha256 is this copy.

    The body of :meth:`~kzr_wsgi.stores.s3.S3Store.indexes`, which says more.
    """
    with mapped_errors(Operation.READ):
        found = get_entry(bucket, record_index_key(bucket, record))
    return found is not None and found[0] is not None and found[0]["key"] == record["key"]


def remove(bucket: Bucket, record: Mapping[str, Any],
           unindexed: Callable[[], None] | None = None) -> bool:
    """Remove the stored copy ``record`` (a sidecar dict) for good; True if it was indexed.

    The body of :meth:`~kzr_wsgi.stores.s3.S3Store.remove`, which says more.
    """
    key = str(record["key"])
    if not key.startswith(bucket.prefix):
        raise ValueError(f"{key!r} is not in this store")
    entry_key = record_index_key(bucket, record)
    indexed = False
    with mapped_errors(Operation.REMOVE):
        found = get_entry(bucket, entry_key)
        if found is not None and found[0] is not None and found[0]["key"] == key:
            try:
                bucket.client.delete_object(Bucket=bucket.name, Key=entry_key,
                                           IfMatch=found[1])
                indexed = True
            except ClientError as exc:
                if not (missing(exc) or http_status(exc) == 412):
                    raise
                # Gone or replaced since it was read: not ours to remove any more.
        if unindexed is not None:
            unindexed()
            # A retry may have re-stored this recording between the entry's removal
            # and the row's (same row id): its row must stay. Rare; one GET to know.
            again = get_entry(bucket, entry_key) if bucket.catalog is not None else None
            if bucket.catalog is not None and again is not None and again[0] is not None \
                    and again[0]["key"] != key:
                bucket.catalog.add_stored(again[0])
        # The object, its companions (analysis, waveform), the sidecar last: a removal
        # cut short is finished by running it again.
        bucket.client.delete_object(Bucket=bucket.name, Key=key)
        companions.delete_all(bucket, key)
        bucket.client.delete_object(Bucket=bucket.name, Key=key + SIDECAR_SUFFIX)
    return indexed
