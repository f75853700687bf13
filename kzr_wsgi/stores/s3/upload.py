"""The S3 store's upload path: the body streamed as one PUT or a multipart upload.

Bodies up to ``multipart_threshold`` are buffered and sent in one ``PutObject`` with
their sha256 for S3 to check; larger ones go as a multipart upload with at most
``max_concurrency`` parts in flight and one being filled, so memory stays at a few
parts. Any error aborts the multipart upload (nothing is left but what a killed
process leaves, which :mod:`~kzr_wsgi.stores.s3.sweep` finds). Every upload goes to a
key of its own (:func:`data_key`); :func:`~kzr_wsgi.stores.s3.entries.commit` then
makes it the stored copy, or drops it as a duplicate.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from ...body import BLOCK_SIZE
from ...errors import StoreUnavailable
from ...naming import (
    content_type_for,
    layout_fields,
    name_digest,
    render_layout,
    safe_component,
    utcnow,
)
from ...recording import Recording, Stored
from .client import Bucket, Operation, mapped_errors
from .entries import commit, committed, index_key

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef


log = logging.getLogger("kzr_wsgi.store")

#: S3's smallest part (all but the last) and largest part count.
MIN_PART_SIZE = 5 << 20
MAX_PARTS = 10_000
#: Default part size and single-PUT threshold: large enough for few requests, small
#: enough that a few parts in flight stay far below the 100 MB budget.
DEFAULT_PART_SIZE = 8 << 20
#: S3's key limit is 1024 bytes; above this a key's directory part is replaced by a digest.
_MAX_KEY = 1000
#: Longest percent-encoded value put in S3 user metadata (2 KB in all per object).
_MAX_META_VALUE = 512


@dataclass(frozen=True)
class Uploading:
    """What the upload path needs of an S3 store, handed to it by the store."""

    bucket: Bucket
    #: The layout template of the keys' "directories".
    layout: str
    #: Size of each multipart part (grown for a body that would need over 10,000).
    part_size: int
    #: Bodies up to this size go in one ``PutObject``.
    multipart_threshold: int
    #: Parts in flight at once per upload.
    max_concurrency: int


def upload(up: Uploading, recording: Recording) -> Stored:
    """Stream ``recording``'s body to S3 and commit it (the store's ``__call__``).

    Reads up to ``multipart_threshold`` first: most recordings fit, and then one PUT
    does; a larger body continues as a multipart upload.
    """
    key = data_key(up, recording)
    content_type = header_safe(content_type_for(recording)) or "application/octet-stream"
    extra: dict[str, Any] = {
        "ContentType": content_type,
        "Metadata": object_metadata(recording),
    }
    stream = recording.stream
    sha = hashlib.sha256()
    head: list[bytes] = []
    buffered = 0
    # Read up to the threshold first: most recordings fit, and then one PUT does.
    while buffered <= up.multipart_threshold:
        block = stream.read(BLOCK_SIZE)
        if not block:
            return put_small(up.bucket, recording, key, b"".join(head), sha.hexdigest(),
                             extra)
        sha.update(block)
        head.append(block)
        buffered += len(block)
    return put_multipart(up, recording, key, head, buffered, sha, extra)


def put_small(bucket: Bucket, recording: Recording, key: str, data: bytes, digest: str,
              extra: dict[str, Any]) -> Stored:
    """Send a body that fits under the threshold in one ``PutObject``, then commit it."""
    entry_key = index_key(bucket, recording.name, recording.recording_id, digest)
    with mapped_errors(Operation.STORE):
        existing = committed(bucket, entry_key)
        if existing is not None:
            return existing
        bucket.client.put_object(
            Bucket=bucket.name,
            Key=key,
            Body=data,
            # S3 checks the bytes it got against the hash we computed.
            ChecksumSHA256=base64.b64encode(bytes.fromhex(digest)).decode("ascii"),
            **extra,
        )
    return commit(bucket, recording, key, entry_key, len(data), digest, content_type=extra[
        "ContentType"])


def put_multipart(
    up: Uploading,
    recording: Recording,
    key: str,
    head: list[bytes],
    buffered: int,
    sha: Any,
    extra: dict[str, Any],
) -> Stored:
    """Send a larger body as a multipart upload, then commit it; abort on any error."""
    bucket = up.bucket
    part_size = up.part_size
    if recording.content_length is not None:
        # Keep a known-size body within S3's 10,000 parts.
        part_size = max(part_size, -(-recording.content_length // (MAX_PARTS - 1)))
    with mapped_errors(Operation.STORE):
        upload_id = bucket.client.create_multipart_upload(
            Bucket=bucket.name, Key=key, **extra
        )["UploadId"]
    try:
        size, parts = send_parts(up, recording, key, upload_id, head, buffered, sha,
                                 part_size)
        digest = sha.hexdigest()
        entry_key = index_key(bucket, recording.name, recording.recording_id, digest)
        with mapped_errors(Operation.STORE):
            existing = committed(bucket, entry_key)
            if existing is not None:
                abort(bucket, key, upload_id)
                return existing
            bucket.client.complete_multipart_upload(
                Bucket=bucket.name, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
    except BaseException:
        # Whatever went wrong (body cut short, S3 error, interrupt), leave no upload.
        abort(bucket, key, upload_id)
        raise
    return commit(bucket, recording, key, entry_key, size, digest,
                  content_type=extra["ContentType"])


def send_parts(
    up: Uploading,
    recording: Recording,
    key: str,
    upload_id: str,
    head: list[bytes],
    buffered: int,
    sha: Any,
    part_size: int,
) -> tuple[int, list[CompletedPartTypeDef]]:
    """Read the rest of the body, uploading parts as they fill; return size and parts."""
    stream = recording.stream
    parts: list[CompletedPartTypeDef] = []
    in_flight: deque[Future[CompletedPartTypeDef]] = deque()
    size = buffered
    blocks, filled = head, buffered
    number = 0
    pool = ThreadPoolExecutor(up.max_concurrency, thread_name_prefix="kzr-s3-part")
    try:
        while True:
            at_end = False
            while filled < part_size:
                block = stream.read(BLOCK_SIZE)
                if not block:
                    at_end = True
                    break
                sha.update(block)
                blocks.append(block)
                filled += len(block)
                size += len(block)
            if filled:
                number += 1
                if number > MAX_PARTS:
                    raise StoreUnavailable("body needs more than 10,000 S3 parts")
                # One join per part; the blocks are freed as soon as it is built
                # (cleared in place: the caller's frame holds the first part's list).
                data = b"".join(blocks)
                blocks.clear()
                filled = 0
                in_flight.append(pool.submit(upload_part, up.bucket, key, upload_id, number,
                                             data))
                del data
            while in_flight and (at_end or len(in_flight) >= up.max_concurrency):
                parts.append(in_flight.popleft().result())
            if at_end:
                return size, parts
    finally:
        # On error, wait for parts still being sent so none lands after the abort.
        pool.shutdown(wait=True, cancel_futures=True)


def upload_part(bucket: Bucket, key: str, upload_id: str, number: int,
                data: bytes) -> CompletedPartTypeDef:
    """Send part ``number`` of the multipart upload ``upload_id``; its ETag for completing."""
    with mapped_errors(Operation.STORE):
        response = bucket.client.upload_part(
            Bucket=bucket.name, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
    return {"ETag": response["ETag"], "PartNumber": number}


def abort(bucket: Bucket, key: str, upload_id: str) -> None:
    """Abort a multipart upload, logging (not raising) a failure: the sweep retries it."""
    try:
        bucket.client.abort_multipart_upload(Bucket=bucket.name, Key=key, UploadId=upload_id)
    except (BotoCoreError, ClientError):
        # Nothing more to do here: the sweep or the lifecycle rule removes it later.
        log.exception("could not abort multipart upload of s3://%s/%s", bucket.name, key)


def data_key(up: Uploading, recording: Recording) -> str:
    """A key no other upload can have: the layout, the encoded name, a unique token."""
    token = f"{utcnow():%Y%m%dT%H%M%SZ}-{secrets.token_hex(5)}"
    stem, dot, ext = safe_component(recording.filename).rpartition(".")
    leaf = f"{stem}~{token}.{ext}" if dot and stem else f"{ext}~{token}"
    directory = render_layout(up.layout, layout_fields(recording))
    prefix = up.bucket.prefix
    key = f"{prefix}{directory}/{leaf}" if directory else f"{prefix}{leaf}"
    if len(key.encode("utf-8")) > _MAX_KEY:
        # Many or long path segments: keep the leaf, replace the directory by its digest.
        short = hashlib.sha256(directory.encode("utf-8")).hexdigest()
        key = f"{prefix}{recording.kind.value}/long/{short}/{leaf}"
    return key


def meta_value(text: str) -> str:
    """An ASCII, bounded S3 metadata value standing for ``text``."""
    encoded = quote(text.encode("utf-8", "surrogateescape"), safe="")
    if len(encoded) > _MAX_META_VALUE:
        return "sha256:" + hashlib.sha256(encoded.encode("ascii")).hexdigest()
    return encoded


def object_metadata(recording: Recording) -> dict[str, str]:
    """The S3 user metadata known before the body: kind, name digest, ids."""
    meta = {"kzr-kind": recording.kind.value, "kzr-name": name_digest(recording.name)}
    if recording.call_id is not None:
        meta["kzr-call-id"] = meta_value(recording.call_id)
    if recording.recording_id is not None:
        meta["kzr-recording-id"] = meta_value(recording.recording_id)
    return meta


def header_safe(value: str) -> str | None:
    """``value`` if it can go in an HTTP header as is (a client's Content-Type may not)."""
    if len(value) <= 200 and value.isascii() and value.isprintable():
        return value
    return None
