"""Earlier versions of a companion object, on a bucket that keeps versions.

A rewritten transcript (``worker --reredact``) must not leave what the new rules redact
in an earlier version of its object. :func:`versions_refusal` says why the earlier
versions could not be deleted (Object Lock holds every version for its retention), so
the command refuses before it changes anything; :func:`delete_earlier_versions` deletes
every version of a companion object but the current one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .client import Operation, mapped_errors
from .entries import read_entry, record_index_key

if TYPE_CHECKING:
    from . import S3Store


def keeps_versions(store: S3Store) -> bool:
    """Whether the bucket has versioning on (or suspended, with versions kept from before)."""
    with mapped_errors(Operation.READ):
        found = store.client.get_bucket_versioning(Bucket=store.bucket)
    return found.get("Status") in ("Enabled", "Suspended")


def versions_refusal(store: S3Store) -> str | None:
    """Why earlier versions of an object cannot be deleted here, or ``None`` when they
    can (or the bucket keeps none)."""
    if not keeps_versions(store):
        return None
    try:
        found = store.client.get_object_lock_configuration(Bucket=store.bucket)
    except Exception:  # no Object Lock configuration: versions can be deleted
        return None
    if found.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled":
        return (f"bucket {store.bucket} keeps versions under Object Lock: the earlier "
                "versions of a transcript, which hold what the new rules redact, cannot "
                "be deleted before their retention ends")
    return None


def delete_earlier_versions(store: S3Store, record: Mapping[str, Any], suffix: str) -> int:
    """Delete every version of the copy's ``suffix`` object but the current one; how many."""
    bucket = store._bucket()
    with mapped_errors(Operation.STORE):
        entry = read_entry(bucket, record_index_key(bucket, record))
        if entry is None or "key" not in entry:
            return 0
        key = str(entry["key"]) + suffix
        deleted = 0
        pages = store.client.get_paginator("list_object_versions").paginate(
            Bucket=store.bucket, Prefix=key)
        for page in pages:
            for version in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                if version.get("Key") != key or version.get("IsLatest"):
                    continue
                store.client.delete_object(Bucket=store.bucket, Key=key,
                                           VersionId=version["VersionId"])
                deleted += 1
    return deleted


