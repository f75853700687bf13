"""What runs beside the S3 store: sweeping what killed writers leave, and the preflight.

A process killed mid-upload leaves an unfinished multipart upload (invisible, but
billed), and one killed between completing an object and writing its index entry
leaves an object no entry names. ``kzr-wsgi sweep``
(:mod:`kzr_wsgi.housekeeping.sweep`) lists and removes both through these functions;
a bucket lifecycle rule (:func:`lifecycle_rule`) removes the first kind without a
process. :func:`preflight` checks at start-up that the bucket exists and takes writes.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ...errors import StoreUnavailable
from ...naming import SIDECAR_SUFFIX, STATE_DIR
from ...recording import Kind, Name
from .client import (
    Bucket,
    Operation,
    http_status,
    mapped_errors,
    preflight_message,
    unless_missing,
)
from .companions import companion_base
from .entries import INDEX, get_entry, index_key, read_entry
from .upload import abort

log = logging.getLogger("kzr_wsgi.store")


def sweep_incomplete(bucket: Bucket, older_than: timedelta = timedelta(days=1)) -> int:
    """Abort multipart uploads under the prefix started more than ``older_than`` ago.

    The body of :meth:`~kzr_wsgi.stores.s3.S3Store.sweep_incomplete`, which says more.
    """
    cutoff = datetime.now(timezone.utc) - older_than
    aborted = 0
    with mapped_errors(Operation.SWEEP):
        pages = bucket.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket.name, Prefix=bucket.prefix)
        for page in pages:
            for upload in page.get("Uploads", []):
                if upload["Initiated"] <= cutoff:
                    abort(bucket, upload["Key"], upload["UploadId"])
                    aborted += 1
    if aborted:
        log.warning("aborted %d unfinished multipart upload(s) under s3://%s/%s",
                    aborted, bucket.name, bucket.prefix)
    return aborted


def unfinished_uploads(bucket: Bucket) -> Iterator[dict[str, Any]]:
    """Every unfinished multipart upload under the prefix, as S3 lists it.

    The body of :meth:`~kzr_wsgi.stores.s3.S3Store.unfinished_uploads`, which says more.
    """
    with mapped_errors(Operation.SWEEP):
        pages = bucket.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket.name, Prefix=bucket.prefix)
        for page in pages:
            for upload in page.get("Uploads", []):
                yield dict(upload)


def abort_upload(bucket: Bucket, key: str, upload_id: str) -> None:
    """Abort one unfinished multipart upload (its parts are freed).

    The body of :meth:`~kzr_wsgi.stores.s3.S3Store.abort_upload`, which says more.
    """
    with mapped_errors(Operation.SWEEP):
        bucket.client.abort_multipart_upload(Bucket=bucket.name, Key=key, UploadId=upload_id)


def sidecar_record(bucket: Bucket, key: str) -> dict[str, Any] | None:
    """The sidecar of the object ``key``, when it has a readable one that names it.

    The body of :meth:`~kzr_wsgi.stores.s3.S3Store.sidecar_record`, which says more.
    """
    with mapped_errors(Operation.SWEEP):
        found = get_entry(bucket, key + SIDECAR_SUFFIX)
    if found is None or found[0] is None or found[0].get("key") != key:
        return None
    return found[0]


def is_indexed(bucket: Bucket, key: str, record: dict[str, Any] | None = None) -> bool | None:
    """Whether an index entry names the object ``key``; ``None`` when it is not ours.

    The body of :meth:`~kzr_wsgi.stores.s3.S3Store.is_indexed`, which says more.
    """
    with mapped_errors(Operation.SWEEP):
        if record is not None:
            name = Name(Kind(record["kind"]), tuple(record["segments"]), record["filename"])
            entry = read_entry(bucket, index_key(bucket, name, record.get("recording_id"),
                                                record["sha256"]))
            return entry is not None and entry.get("key") == key
        head = unless_missing(bucket.client.head_object, Bucket=bucket.name, Key=key)
        if head is None:
            return None
    return _named_by_an_entry(bucket, head.get("Metadata", {}).get("kzr-name", ""), key)


def _named_by_an_entry(bucket: Bucket, digest: str, key: str) -> bool | None:
    """Whether an index entry of the name whose digest is ``digest`` names ``key``
    (``None``: not a name digest, so not an object of this store's)."""
    if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
        return None
    listing = f"{bucket.prefix}{INDEX}/{digest[:2]}/{digest}/"
    with mapped_errors(Operation.SWEEP):
        pages = bucket.client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket.name, Prefix=listing)
        for page in pages:
            for item in page.get("Contents", []):
                entry = read_entry(bucket, item["Key"])
                if entry is not None and entry.get("key") == key:
                    return True
    return False


def companion_indexed(bucket: Bucket, key: str) -> bool | None:
    """Whether the recording the companion object ``key`` belongs to is indexed.

    The body of :meth:`~kzr_wsgi.stores.s3.S3Store.companion_indexed`, which says more.
    Its recording's sidecar names the entry to read; without one (gone with its
    object), the companion's own ``kzr-name`` metadata says which entries to read.
    ``None`` for an object that is not a companion this store wrote.
    """
    split = companion_base(key)
    if split is None:
        return None
    base = split[0]
    record = sidecar_record(bucket, base)
    if record is not None:
        return is_indexed(bucket, base, record)
    with mapped_errors(Operation.SWEEP):
        head = unless_missing(bucket.client.head_object, Bucket=bucket.name, Key=key)
    if head is None:
        return None
    meta = head.get("Metadata", {})
    if meta.get("kzr-companion") != "1":
        return None
    return _named_by_an_entry(bucket, meta.get("kzr-name", ""), base)


def delete(bucket: Bucket, *keys: str) -> None:
    """Delete objects by key (a sweep's removal); keys outside the prefix are refused.

    The body of :meth:`~kzr_wsgi.stores.s3.S3Store.delete`, which says more.
    """
    for key in keys:
        if not key.startswith(bucket.prefix):
            raise ValueError(f"{key!r} is outside this store's prefix {bucket.prefix!r}")
    with mapped_errors(Operation.SWEEP):
        for key in keys:
            bucket.client.delete_object(Bucket=bucket.name, Key=key)


def preflight(bucket: Bucket) -> list[str]:
    """Check, before serving, that the bucket exists and takes writes; return warnings.

    The body of :meth:`~kzr_wsgi.stores.s3.S3Store.preflight`, which says more.
    """
    probe = f"{bucket.prefix}{STATE_DIR}/probe-{secrets.token_hex(8)}"
    where = bucket.url_for(bucket.prefix)
    warnings = []
    try:
        bucket.client.put_object(Bucket=bucket.name, Key=probe, Body=b"kzr-wsgi probe",
                                IfNoneMatch="*")
        try:
            try:
                bucket.client.put_object(Bucket=bucket.name, Key=probe, Body=b"again",
                                        IfNoneMatch="*")
            except ClientError as exc:
                if http_status(exc) not in (409, 412):
                    raise
            else:
                warnings.append(
                    f"s3://{bucket.name} ignores conditional writes (If-None-Match): "
                    "retries are still answered as duplicates, but two truly "
                    "simultaneous uploads of one recording may be kept twice")
        finally:
            bucket.client.delete_object(Bucket=bucket.name, Key=probe)
    except ClientError as exc:
        raise StoreUnavailable(preflight_message(exc, bucket.name, where)) from exc
    except BotoCoreError as exc:
        endpoint = bucket.client.meta.endpoint_url
        raise StoreUnavailable(f"no answer from the S3 endpoint {endpoint}: {exc}") from exc
    return warnings


def lifecycle_rule(bucket: Bucket, days: int = 1) -> dict[str, Any]:
    """A bucket lifecycle rule aborting this store's unfinished uploads after ``days``.

    The body of :meth:`~kzr_wsgi.stores.s3.S3Store.lifecycle_rule`, which says more.
    """
    return {
        "ID": "kzr-abort-incomplete-uploads",
        "Filter": {"Prefix": bucket.prefix},
        "Status": "Enabled",
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": days},
    }
