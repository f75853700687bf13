"""Erasing from a bucket for good: every version of a key, and the checks before.

A ``DeleteObject`` on a bucket with versioning only adds a delete marker: the bytes stay
as a noncurrent version. ``kzr-wsgi erase`` therefore deletes every version (and delete
marker) of each erased key, and the keys beside it (sidecar, companion files), with
``ListObjectVersions`` and ``DeleteObjectVersion``; unfinished multipart uploads under
those keys are aborted. Before anything is deleted, :func:`refusal` says why the bucket
cannot be erased from: Object Lock (versions under retention or legal hold cannot be
deleted by anyone until it ends), or, with versioning on, a missing permission
(``s3:ListBucketVersions``, ``s3:DeleteObjectVersion``: tried on a probe object of the
store's own, under ``PREFIX/.kzr/``).

A rewritten transcript (``worker --reredact``) must not leave what the new rules redact
in an earlier version of its object either: :func:`delete_earlier_versions` deletes every
version of a companion object but the current one, after :func:`versions_refusal` has
said whether Object Lock forbids it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ...errors import StoreUnavailable
from ..state import s3_errors
from .client import Operation, mapped_errors
from .entries import read_entry, record_index_key

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

    from . import S3Store

#: Where the permission probe is written (under the store's prefix).
PROBE = ".kzr/erase-probe-"


def versioning(client: S3Client, bucket: str) -> str:
    """The bucket's versioning: ``Enabled``, ``Suspended`` or ``""`` (never enabled)."""
    with s3_errors():
        return str(client.get_bucket_versioning(Bucket=bucket).get("Status") or "")


def object_lock(client: S3Client, bucket: str) -> bool:
    """True when the bucket has Object Lock enabled."""
    from botocore.exceptions import ClientError

    try:
        found = client.get_object_lock_configuration(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration"):
            return False
        raise StoreUnavailable(f"s3://{bucket}: its Object Lock setting cannot be read "
                               f"({code}): erase needs to know it") from exc
    config = found.get("ObjectLockConfiguration") or {}
    return config.get("ObjectLockEnabled") == "Enabled"


def refusal(store: S3Store) -> str | None:
    """Why erasing from ``store``'s bucket would leave bytes behind, or ``None``.

    Writes and deletes one probe object (every version of it) when versioning is on.
    """
    from botocore.exceptions import ClientError

    where = f"s3://{store.bucket}/{store.prefix}"
    if object_lock(store.client, store.bucket):
        return (f"{where}: the bucket has S3 Object Lock, so versions of erased recordings "
                "cannot be deleted while their retention or legal hold lasts; nothing was "
                "erased")
    if not versioning(store.client, store.bucket):
        return None
    key = f"{store.prefix}{PROBE}{uuid.uuid4().hex}"
    try:
        store.client.put_object(Bucket=store.bucket, Key=key, Body=b"")
        delete_versions(store.client, store.bucket, [key])
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        return (f"{where}: versioning is on and the probe of s3:ListBucketVersions and "
                f"s3:DeleteObjectVersion was refused ({code}): erased recordings would stay "
                "as noncurrent versions; nothing was erased (see the manual's IAM policy)")
    return None


def delete_versions(client: S3Client, bucket: str, keys: Iterable[str]) -> int:
    """Delete every version and delete marker of each key (and of the keys that extend
    it: ``KEY.kzr.json``, its companions); abort unfinished uploads to them. How many."""
    gone = 0
    for key in keys:
        for version in _versions(client, bucket, key):
            client.delete_object(Bucket=bucket, Key=version["Key"],
                                 VersionId=version["VersionId"])
            gone += 1
        pages = client.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket, Prefix=key)
        for page in pages:
            for upload in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"],
                                              UploadId=upload["UploadId"])
                gone += 1
    return gone


def keeps_versions(store: S3Store) -> bool:
    """Whether the bucket has versioning on (or suspended, with versions kept from before)."""
    return versioning(store.client, store.bucket) in ("Enabled", "Suspended")


def versions_refusal(store: S3Store) -> str | None:
    """Why earlier versions of a transcript cannot be deleted here (Object Lock), or
    ``None`` when they can (or the bucket keeps none)."""
    if keeps_versions(store) and object_lock(store.client, store.bucket):
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


def remaining(client: S3Client, bucket: str, keys: Iterable[str]) -> list[str]:
    """The keys (with their extensions) of which any version is left."""
    return sorted({v["Key"] for key in keys for v in _versions(client, bucket, key)})


def _versions(client: S3Client, bucket: str, key: str) -> list[dict[str, Any]]:
    """Versions and delete markers of ``key`` and of the keys ``key.…`` beside it."""
    found = []
    pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key)
    for page in pages:
        for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            name = str(item["Key"])
            if name == key or name.startswith(key + "."):
                found.append({"Key": name, "VersionId": str(item.get("VersionId") or "null")})
    return found
