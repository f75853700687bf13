"""Recordings as objects in S3 or any S3-compatible store (MinIO, Ceph, Wasabi).

Needs the ``s3`` extra (``pip install "kzr_wsgi[s3]"``, boto3). Endpoint, region and
credentials come from boto3's usual chain (environment, shared config, instance role);
``endpoint_url`` points it at a non-AWS server::

    store = S3Store.from_url("s3://rec/kazoo", endpoint_url="http://127.0.0.1:9000")
    app = KazooRecordings(app, store)

What it promises, and how:

* **Streamed, bounded memory.** The body is read in large blocks and sent as it
  arrives: one ``PutObject`` when it fits under ``multipart_threshold``, else a multipart
  upload with at most ``max_concurrency`` parts in flight and one being filled. The
  sha256 is computed on the way. Memory stays at a few parts whatever the size.
* **Atomic.** An object exists only once complete: the multipart upload is completed
  last, and aborted on *any* error (a body cut short, a body too large, S3 refusing a
  part, ``KeyboardInterrupt``), so neither an object nor an unfinished upload remains.
  A process killed mid-upload leaves an unfinished multipart upload, invisible to
  readers but billed: :meth:`S3Store.sweep_incomplete` aborts those, or better, a
  bucket lifecycle rule does (:meth:`S3Store.lifecycle_rule`). A process killed in
  the milliseconds between completing the object and writing its index entry leaves a
  complete object that no index names: never served, and the retry stores it again.
  ``kzr-wsgi sweep`` (:mod:`kzr_wsgi.housekeeping.sweep`) finds and removes both kinds.
  :meth:`S3Store.preflight` checks at start-up that the bucket exists and takes writes.
  :meth:`S3Store.discard` takes a committed copy back (a fan-out's rollback).
* **Idempotent across hosts, with no coordinator.** "The same recording" is
  ``(name.key, recording_id)`` with the same sha256. Each committed copy has an *index
  entry* at a key made of the name's digest, the ``recording_id``'s digest and the
  body's sha256 (``<prefix>.kzr/index/<nn>/<name digest>/<rid16>-<sha256>.json``),
  written with ``If-None-Match: *``. That conditional write is the commit point: the
  host whose entry lands first owns the recording; a host that loses (a retry, or the
  same upload racing at another host) deletes its own copy and answers
  ``Stored(created=False)`` with the winner's location. A different body has a
  different sha256, hence a different entry, and is kept beside the first.

  Why this design rather than a content-addressed *data* key or a conditional write on
  the recording's own key: S3 fixes an object's key when the upload starts
  (``CreateMultipartUpload``), before the body's hash is known. Content-addressing the
  object itself would need a server-side copy of every upload once the hash is known
  (twice the writes, seconds per large recording). A conditional write on a key fixed
  by the name alone cannot keep a second, different body: the bytes already sent are
  bound to the taken key and the stream cannot be read again. So every upload goes to
  a key of its own (``<stem>~<time>-<random>.<ext>``, which no other upload can take)
  and the conditional write is made on the small content-addressed index entry, where
  both facts are known. It needs only ``If-None-Match`` on ``PutObject`` (AWS S3 since
  2024, MinIO, Ceph RGW; the moto server honours it). A server that ignores the header
  still de-duplicates sequential retries (each upload first looks for the entry) but
  may keep two copies of two truly simultaneous ones.
* **Metadata beside the object.** ``<object key>.kzr.json`` holds the call id, name,
  Kazoo's fields, size, sha256, content type, time received and location (the index
  entry holds the same record). S3 user metadata is fixed before the body and
  ASCII-only, so it carries what is known up front: ``kzr-kind``, ``kzr-call-id`` and
  ``kzr-recording-id`` (percent-encoded) and ``kzr-name`` (the name's digest).
* **Names are data.** Every component of a key comes from
  :func:`~kzr_wsgi.naming.safe_component`: never ``.`` or ``..``, never a ``/`` from a
  call id, hashed when too long.

Key layout (default ``{kind}/{account_id}/{yyyy}/{mm}/{dd}``, the disk store's, with the
date from Kazoo's ``start`` when given, else the time received)::

    <prefix>call/4a1b.../2024/01/27/call_recording_<id>~20240127T101607Z-9f86d08188.mp3
    <prefix>call/4a1b.../2024/01/27/call_recording_<id>~20240127T101607Z-9f86d08188.mp3.kzr.json
    <prefix>.kzr/index/ab/<name digest>/<rid16>-<sha256>.json

Reads (:meth:`S3Store.open`) go through the index, so a retry filed on another day or
by another host is found all the same. The returned file object is seekable and issues
ranged GETs (``Range: bytes=<pos>-``) from wherever it is positioned, so a ``Range``
request is served by seeking it (as werkzeug's ``FileWrapper`` and ``make_conditional``
do) without fetching the bytes before the range.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..body import BLOCK_SIZE
from ..catalog import Catalog
from ..errors import NotFound, StoreUnavailable
from ..faults import crash_point
from ..metadata import dumps
from ..naming import (
    DEFAULT_LAYOUT,
    SIDECAR_SUFFIX,
    content_type_for,
    layout_fields,
    name_digest,
    render_layout,
    safe_component,
    utcnow,
)
from ..recording import Kind, Name, Recording, Stored, StoredFile

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger("kzr_wsgi.store")

#: S3's smallest part (all but the last) and largest part count.
MIN_PART_SIZE = 5 << 20
MAX_PARTS = 10_000
#: Default part size and single-PUT threshold: large enough for few requests, small
#: enough that a few parts in flight stay far below the 100 MB budget.
DEFAULT_PART_SIZE = 8 << 20

#: Where index entries live, under the store's prefix. ``safe_component`` never starts
#: with a dot, so no layout value can produce this name.
_INDEX = ".kzr/index"
#: S3's key limit is 1024 bytes; above this a key's directory part is replaced by a digest.
_MAX_KEY = 1000
#: Longest percent-encoded value put in S3 user metadata (2 KB in all per object).
_MAX_META_VALUE = 512
#: How often to retry the commit when S3 answers 409 (a conditional write racing another).
_CONFLICT_RETRIES = 5


class S3Store:
    """Keep each upload as an object in ``bucket`` under ``prefix``; a handler and a reader.

    For example::

        store = S3Store("rec", "kazoo/")
        app = KazooRecordings(app, store)
    """

    __slots__ = (
        "bucket",
        "prefix",
        "layout",
        "part_size",
        "multipart_threshold",
        "max_concurrency",
        "client",
        "catalog",
    )

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: S3Client | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        multipart_threshold: int = DEFAULT_PART_SIZE,
        max_concurrency: int = 2,
        layout: str = DEFAULT_LAYOUT,
        catalog: Catalog | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 bucket name is required")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        #: The bucket every object goes to.
        self.bucket = bucket
        #: Key prefix, ``""`` or ending in ``/``; everything the store writes is under it.
        self.prefix = _normalise_prefix(prefix)
        #: Template for the "directory" part of each key (see
        #: :func:`~kzr_wsgi.naming.layout_fields`); validated now so a typo fails at start-up.
        self.layout = layout
        render_layout(layout, dict.fromkeys(
            ("kind", "account_id", "owner_id", "yyyy", "mm", "dd", "segments"), "x"))
        #: Size of each multipart part; grown for a body that would need over 10,000.
        self.part_size = part_size
        #: Bodies up to this size go in one PutObject; larger ones as a multipart upload.
        self.multipart_threshold = max(0, multipart_threshold)
        #: Parts uploaded at once per upload: overlaps reading the client with writing S3.
        self.max_concurrency = max_concurrency
        #: The boto3 S3 client (thread-safe; shared by every request).
        self.client: S3Client = client or _make_client(endpoint_url, region_name)
        #: Where each newly committed copy's row goes (``None``: no catalog). A shared
        #: PostgreSQL catalog serves every host on the bucket.
        self.catalog = catalog

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> S3Store:
        """Build a store from ``s3://bucket/prefix``; keyword arguments go to the constructor.

        >>> S3Store.from_url("s3://rec/kazoo", endpoint_url="http://127.0.0.1:9000").prefix
        'kazoo/'
        """
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"an s3:// URL takes no query or fragment: {url!r}")
        return cls(parts.netloc, parts.path.lstrip("/"), **kwargs)

    def __repr__(self) -> str:
        return f"S3Store({self.url_for(self.prefix)!r})"

    def url_for(self, key: str) -> str:
        """The ``s3://bucket/key`` location of ``key``."""
        return f"s3://{self.bucket}/{key}"

    # -- writing ----------------------------------------------------------------------

    def __call__(self, recording: Recording) -> Stored:
        """Stream ``recording`` to S3 and commit it; return where it is.

        Raises :class:`~kzr_wsgi.errors.StoreUnavailable` when S3 cannot be reached or
        refuses a request, and lets the body's own errors
        (:class:`~kzr_wsgi.errors.BodyIncomplete`, :class:`~kzr_wsgi.errors.BodyTooLarge`)
        through; in every error case no object and no unfinished upload is left.
        """
        key = self._data_key(recording)
        content_type = _header_safe(content_type_for(recording)) or "application/octet-stream"
        extra: dict[str, Any] = {
            "ContentType": content_type,
            "Metadata": _object_metadata(recording),
        }
        stream = recording.stream
        sha = hashlib.sha256()
        head: list[bytes] = []
        buffered = 0
        # Read up to the threshold first: most recordings fit, and then one PUT does.
        while buffered <= self.multipart_threshold:
            block = stream.read(BLOCK_SIZE)
            if not block:
                return self._put_small(recording, key, b"".join(head), sha.hexdigest(), extra)
            sha.update(block)
            head.append(block)
            buffered += len(block)
        return self._put_multipart(recording, key, head, buffered, sha, extra)

    def _put_small(
        self, recording: Recording, key: str, data: bytes, digest: str, extra: dict[str, Any]
    ) -> Stored:
        entry_key = self._entry_key(recording.name, recording.recording_id, digest)
        with _mapped_errors("store"):
            existing = self._committed(entry_key)
            if existing is not None:
                return existing
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                # S3 checks the bytes it got against the hash we computed.
                ChecksumSHA256=base64.b64encode(bytes.fromhex(digest)).decode("ascii"),
                **extra,
            )
        return self._commit(recording, key, entry_key, len(data), digest, content_type=extra[
            "ContentType"])

    def _put_multipart(
        self,
        recording: Recording,
        key: str,
        head: list[bytes],
        buffered: int,
        sha: Any,
        extra: dict[str, Any],
    ) -> Stored:
        part_size = self.part_size
        if recording.content_length is not None:
            # Keep a known-size body within S3's 10,000 parts.
            part_size = max(part_size, -(-recording.content_length // (MAX_PARTS - 1)))
        with _mapped_errors("store"):
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, **extra
            )["UploadId"]
        try:
            size, parts = self._send_parts(recording, key, upload_id, head, buffered, sha,
                                           part_size)
            digest = sha.hexdigest()
            entry_key = self._entry_key(recording.name, recording.recording_id, digest)
            with _mapped_errors("store"):
                existing = self._committed(entry_key)
                if existing is not None:
                    self._abort(key, upload_id)
                    return existing
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            # Whatever went wrong (body cut short, S3 error, interrupt), leave no upload.
            self._abort(key, upload_id)
            raise
        return self._commit(recording, key, entry_key, size, digest,
                            content_type=extra["ContentType"])

    def _send_parts(
        self,
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
        pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="kzr-s3-part")
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
                    in_flight.append(pool.submit(self._upload_part, key, upload_id, number, data))
                    del data
                while in_flight and (at_end or len(in_flight) >= self.max_concurrency):
                    parts.append(in_flight.popleft().result())
                if at_end:
                    return size, parts
        finally:
            # On error, wait for parts still being sent so none lands after the abort.
            pool.shutdown(wait=True, cancel_futures=True)

    def _upload_part(
        self, key: str, upload_id: str, number: int, data: bytes
    ) -> CompletedPartTypeDef:
        with _mapped_errors("store"):
            response = self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )
        return {"ETag": response["ETag"], "PartNumber": number}

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (BotoCoreError, ClientError):
            # Nothing more to do here: the sweep or the lifecycle rule removes it later.
            log.exception("could not abort multipart upload of s3://%s/%s", self.bucket, key)

    def _commit(
        self,
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
        record = _record(recording, self.url_for(key), key, size, digest, content_type)
        body = dumps(record).encode("ascii")
        try:
            with _mapped_errors("store"):
                self.client.put_object(Bucket=self.bucket, Key=key + SIDECAR_SUFFIX, Body=body,
                                       ContentType="application/json")
        except BaseException:
            # Not committed: nothing points at the object, so nothing must be left of it.
            self._delete_quietly(key)
            raise
        crash_point("s3.sidecar")
        with _mapped_errors("store"):
            for attempt in range(_CONFLICT_RETRIES):
                try:
                    self.client.put_object(Bucket=self.bucket, Key=entry_key, Body=body,
                                           ContentType="application/json", IfNoneMatch="*")
                    return self._catalogue(record, Stored(self.url_for(key), size, digest))
                except ClientError as exc:
                    status = _status(exc)
                    if status == 409 and attempt + 1 < _CONFLICT_RETRIES:
                        # Another conditional write on this entry is in progress: S3 asks
                        # us to retry, and the next attempt sees its outcome.
                        time.sleep(0.05 * (attempt + 1))
                        continue
                    if status != 412:
                        # The entry may or may not have been written: keep our copy, so
                        # that whatever the entry points at exists. Kazoo will retry.
                        raise
                existing = self._committed(entry_key, replace_stale=body)
                if existing is None:
                    # The entry was stale (its object deleted by hand) and now names ours,
                    # or it vanished: the next conditional PUT tells which.
                    continue
                if existing.location == self.url_for(key):
                    # It was ours all along (boto3 resent a PUT whose first try landed).
                    return self._catalogue(record, Stored(self.url_for(key), size, digest))
                # Another upload of this very recording committed first: ours is surplus.
                log.info("s3://%s/%s: the same recording was committed first at %s",
                         self.bucket, key, existing.location)
                self._delete_quietly(key + SIDECAR_SUFFIX, key)
                return existing
        raise StoreUnavailable("the object store kept reporting a conflicting write")

    def _catalogue(self, record: dict[str, Any], stored: Stored) -> Stored:
        """Write a newly committed copy's row (a failure is logged and counted, never raised)."""
        if self.catalog is not None:
            self.catalog.add_stored(record)
        return stored

    def _committed(self, entry_key: str, replace_stale: bytes | None = None) -> Stored | None:
        """The copy an index entry points at, or ``None`` when there is none.

        An entry whose object was deleted (by hand) is stale: with ``replace_stale`` it is
        overwritten, on condition that it is still that stale entry (``If-Match``).
        """
        found = self._get_entry(entry_key)
        if found is None:
            return None
        entry, s3_etag = found
        if entry is not None:
            try:
                self.client.head_object(Bucket=self.bucket, Key=entry["key"])
            except ClientError as exc:
                if not _missing(exc):
                    raise
            else:
                return Stored(entry["location"], int(entry["size"]), entry["sha256"],
                              created=False)
        if replace_stale is not None:
            try:
                self.client.put_object(Bucket=self.bucket, Key=entry_key, Body=replace_stale,
                                       ContentType="application/json",
                                       IfMatch=s3_etag)
            except ClientError as exc:
                if _status(exc) != 412:
                    raise
                # Another writer replaced the stale entry first: the caller looks again.
        return None

    def discard(self, stored: Stored) -> None:
        """Take back a copy this store committed (a fan-out's rollback).

        Removes the index entry first (so the recording is no longer "stored" and a
        retry stores it afresh), then the object and its sidecar. An entry that names a
        different copy is left alone. Raises :class:`~kzr_wsgi.errors.StoreUnavailable`
        when S3 refuses.
        """
        prefix = f"s3://{self.bucket}/"
        if not stored.location.startswith(prefix):
            raise ValueError(f"{stored.location!r} is not in this store")
        key = stored.location[len(prefix):]
        with _mapped_errors("discard"):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key + SIDECAR_SUFFIX)
            except ClientError as exc:
                if not _missing(exc):
                    raise
                record = None
            else:
                with response["Body"] as body:
                    record = json.loads(body.read())
            if isinstance(record, dict):
                name = Name(Kind(record["kind"]), tuple(record["segments"]), record["filename"])
                entry_key = self._entry_key(name, record.get("recording_id"), stored.sha256)
                entry = self._read_entry(entry_key)
                if entry is not None and entry.get("key") == key:
                    self.client.delete_object(Bucket=self.bucket, Key=entry_key)
                    if self.catalog is not None:
                        self.catalog.remove_stored(record)
            self.client.delete_object(Bucket=self.bucket, Key=key)
            self.client.delete_object(Bucket=self.bucket, Key=key + SIDECAR_SUFFIX)

    # -- removing (retention) ---------------------------------------------------------

    def index_lock(self, record: Mapping[str, Any]) -> AbstractContextManager[None]:
        """Nothing to hold: S3 has no locks; :meth:`remove` uses conditional requests instead."""
        return nullcontext()

    def indexes(self, record: Mapping[str, Any]) -> bool:
        """True when the index entry for ``record``'s name, recording id and sha256 is this copy."""
        with _mapped_errors("read"):
            found = self._get_entry(self._record_entry_key(record))
        return found is not None and found[0] is not None and found[0]["key"] == record["key"]

    def remove(self, record: Mapping[str, Any], *, unindexed: Callable[[], None] | None = None,
               locked: bool = False) -> bool:
        """Remove the stored copy ``record`` (a sidecar dict) for good; True if it was indexed.

        The index entry first, only if it still names this copy and has not changed
        since it was read (``If-Match`` on its ETag: a retry that re-stored the
        recording meanwhile keeps its new entry); then ``unindexed()`` (the caller's:
        a catalog row); then the object and its sidecar, whose keys no other upload
        can have. Every step tolerates having been done already, so calling it again
        finishes a removal cut short. ``locked`` is accepted for symmetry with the disk
        store and means nothing here.
        """
        key = str(record["key"])
        if not key.startswith(self.prefix):
            raise ValueError(f"{key!r} is not in this store")
        entry_key = self._record_entry_key(record)
        indexed = False
        with _mapped_errors("remove"):
            found = self._get_entry(entry_key)
            if found is not None and found[0] is not None and found[0]["key"] == key:
                try:
                    self.client.delete_object(Bucket=self.bucket, Key=entry_key,
                                              IfMatch=found[1])
                    indexed = True
                except ClientError as exc:
                    if not (_missing(exc) or _status(exc) == 412):
                        raise
                    # Gone or replaced since it was read: not ours to remove any more.
            if unindexed is not None:
                unindexed()
                # A retry may have re-stored this recording between the entry's removal
                # and the row's (same row id): its row must stay. Rare; one GET to know.
                again = self._get_entry(entry_key) if self.catalog is not None else None
                if self.catalog is not None and again is not None and again[0] is not None \
                        and again[0]["key"] != key:
                    self.catalog.add_stored(again[0])
            self.client.delete_object(Bucket=self.bucket, Key=key)
            self.client.delete_object(Bucket=self.bucket, Key=key + SIDECAR_SUFFIX)
        return indexed

    def _record_entry_key(self, record: Mapping[str, Any]) -> str:
        name = Name(Kind(record["kind"]), tuple(record["segments"]), record["filename"])
        return self._entry_key(name, record.get("recording_id"), str(record["sha256"]))

    def _delete_quietly(self, *keys: str) -> None:
        for key in keys:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=key)
            except (BotoCoreError, ClientError):
                log.warning("could not delete surplus copy s3://%s/%s", self.bucket, key)

    def _data_key(self, recording: Recording) -> str:
        """A key no other upload can have: the layout, the encoded name, a unique token."""
        token = f"{utcnow():%Y%m%dT%H%M%SZ}-{secrets.token_hex(5)}"
        stem, dot, ext = safe_component(recording.filename).rpartition(".")
        leaf = f"{stem}~{token}.{ext}" if dot and stem else f"{ext}~{token}"
        directory = render_layout(self.layout, layout_fields(recording))
        key = f"{self.prefix}{directory}/{leaf}" if directory else f"{self.prefix}{leaf}"
        if len(key.encode("utf-8")) > _MAX_KEY:
            # Many or long path segments: keep the leaf, replace the directory by its digest.
            short = hashlib.sha256(directory.encode("utf-8")).hexdigest()
            key = f"{self.prefix}{recording.kind.value}/long/{short}/{leaf}"
        return key

    def _entry_key(self, name: Name, recording_id: str | None, digest: str) -> str:
        return f"{self._entry_dir(name)}{_rid_digest(recording_id)}-{digest}.json"

    def _entry_dir(self, name: Name) -> str:
        nd = name_digest(name)
        return f"{self.prefix}{_INDEX}/{nd[:2]}/{nd}/"

    # -- reading ----------------------------------------------------------------------

    def open(self, name: Name, recording_id: str | None = None) -> StoredFile:
        """The copy stored under ``name``: with ``recording_id`` when given, else the latest.

        The file object is seekable and reads with ranged GETs from its position: seek
        to the start of a ``Range`` and read its length. Raises
        :class:`~kzr_wsgi.errors.NotFound` when there is no such copy and
        :class:`~kzr_wsgi.errors.StoreUnavailable` when S3 cannot be reached.
        """
        listing = self._entry_dir(name)
        if recording_id is not None:
            listing += _rid_digest(recording_id) + "-"
        with _mapped_errors("read"):
            entries = []
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=listing)
            for page in pages:
                for item in page.get("Contents", []):
                    entry = self._read_entry(item["Key"])
                    if entry is not None:
                        entries.append(entry)
            # Latest first, as the disk store does: by the time each copy was received.
            entries.sort(key=lambda e: str(e.get("received_at", "")), reverse=True)
            for entry in entries:
                try:
                    head = self.client.head_object(Bucket=self.bucket, Key=entry["key"])
                except ClientError as exc:
                    if _missing(exc):
                        continue  # deleted by hand: an older copy may still serve
                    raise
                reader = _RangeReader(self.client, self.bucket, entry["key"],
                                      head["ContentLength"], head["ETag"])
                return StoredFile(
                    fileobj=io.BufferedReader(reader, buffer_size=BLOCK_SIZE),
                    size=head["ContentLength"],
                    content_type=entry.get("content_type") or head.get(
                        "ContentType", "application/octet-stream"),
                    etag=entry["sha256"],
                    last_modified=head["LastModified"],
                    location=entry["location"],
                )
        raise NotFound("no such recording")

    def open_stored(self, location: str, sha256: str | None = None) -> StoredFile:
        """The object at ``location`` (a catalog row's ``s3://bucket/key``), for serving it.

        Only a data object of this store is served: this bucket, a key under the
        prefix, never the index. Anything else, and an object that is gone, is
        :class:`~kzr_wsgi.errors.NotFound`; S3 out of reach is
        :class:`~kzr_wsgi.errors.StoreUnavailable`. ``sha256`` becomes the ETag.
        """
        # Split by hand: a key may hold "#" or "?" (hashed long names), which a URL
        # parser would take for a fragment or a query.
        scheme, _, rest = location.partition("://")
        bucket, _, key = rest.partition("/")
        if (scheme != "s3" or bucket != self.bucket or not key.startswith(self.prefix)
                or key.startswith(f"{self.prefix}{_INDEX}/")):
            raise NotFound("no such recording")
        with _mapped_errors("read"):
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        reader = _RangeReader(self.client, self.bucket, key, head["ContentLength"], head["ETag"])
        return StoredFile(
            fileobj=io.BufferedReader(reader, buffer_size=BLOCK_SIZE),
            size=head["ContentLength"],
            content_type=head.get("ContentType", "application/octet-stream"),
            etag=sha256 or head["ETag"].strip('"'),
            last_modified=head["LastModified"],
            location=location,
        )

    def _read_entry(self, key: str) -> dict[str, Any] | None:
        found = self._get_entry(key)
        return None if found is None else found[0]

    def _get_entry(self, key: str) -> tuple[dict[str, Any] | None, str] | None:
        """An index entry and its S3 ETag; ``None`` when absent, entry ``None`` when unreadable."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        with response["Body"] as body:
            try:
                entry = json.loads(body.read())
            except ValueError:
                entry = None
        usable = isinstance(entry, dict) and "key" in entry
        return (entry if usable else None), response["ETag"]

    def records(self) -> Iterator[dict[str, Any]]:
        """Every committed copy's sidecar dict, read from the index entries (with ``location``).

        One listing page and one GET per entry (a few run at once). Raises
        :class:`~kzr_wsgi.errors.StoreUnavailable` when S3 cannot be reached.
        """
        with _mapped_errors("read"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}{_INDEX}/")
            with ThreadPoolExecutor(8, thread_name_prefix="kzr-s3-records") as pool:
                for page in pages:
                    keys = [item["Key"] for item in page.get("Contents", [])
                            if item["Key"].endswith(".json")]
                    for entry in pool.map(self._read_entry, keys):
                        if entry is not None and "location" in entry:
                            yield entry

    def open_copy(self, record: dict[str, Any]) -> Any:
        """The stored bytes of the copy a record (from :meth:`records`) describes, streamed.

        A file-like object with ``read(n)`` and ``close()``. Raises
        :class:`~kzr_wsgi.errors.NotFound` when the object is gone.
        """
        with _mapped_errors("read"):
            return self.client.get_object(Bucket=self.bucket, Key=record["key"])["Body"]

    def rewrite_record(self, record: dict[str, Any]) -> bool:
        """Replace a copy's sidecar and index entry with ``record`` (``reindex`` adds ``audio``).

        Each is one PUT (atomic in S3); the entry only if it still names this copy
        (``If-Match`` on what was read). Returns ``False`` when it no longer does.
        """
        name = Name(Kind(record["kind"]), tuple(record["segments"]), record["filename"])
        entry_key = self._entry_key(name, record.get("recording_id"), record["sha256"])
        body = dumps(record).encode("ascii")
        with _mapped_errors("store"):
            found = self._get_entry(entry_key)
            if found is None or found[0] is None or found[0].get("key") != record["key"]:
                return False
            self.client.put_object(Bucket=self.bucket, Key=record["key"] + SIDECAR_SUFFIX,
                                   Body=body, ContentType="application/json")
            try:
                self.client.put_object(Bucket=self.bucket, Key=entry_key, Body=body,
                                       ContentType="application/json", IfMatch=found[1])
            except ClientError as exc:
                if _status(exc) == 412:
                    return False
                raise
        return True

    # -- housekeeping -----------------------------------------------------------------

    def sweep_incomplete(self, older_than: timedelta = timedelta(days=1)) -> int:
        """Abort multipart uploads under the prefix started more than ``older_than`` ago.

        For uploads orphaned by a process that was killed mid-upload. Choose
        ``older_than`` longer than the slowest upload takes: a live upload that is swept
        fails at its end (and Kazoo retries it). Returns how many were aborted.
        A bucket lifecycle rule does the same without a process
        (:meth:`lifecycle_rule`).
        """
        cutoff = datetime.now(timezone.utc) - older_than
        aborted = 0
        with _mapped_errors("sweep"):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.prefix)
            for page in pages:
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] <= cutoff:
                        self._abort(upload["Key"], upload["UploadId"])
                        aborted += 1
        if aborted:
            log.warning("aborted %d unfinished multipart upload(s) under s3://%s/%s",
                        aborted, self.bucket, self.prefix)
        return aborted

    def unfinished_uploads(self) -> Iterator[dict[str, Any]]:
        """Every unfinished multipart upload under the prefix, as S3 lists it."""
        with _mapped_errors("sweep"):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.prefix)
            for page in pages:
                for upload in page.get("Uploads", []):
                    yield dict(upload)

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort one unfinished multipart upload (its parts are freed)."""
        with _mapped_errors("sweep"):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def sidecar_record(self, key: str) -> dict[str, Any] | None:
        """The sidecar of the object ``key``, when it has a readable one that names it."""
        with _mapped_errors("sweep"):
            found = self._get_entry(key + SIDECAR_SUFFIX)
        if found is None or found[0] is None or found[0].get("key") != key:
            return None
        return found[0]

    def is_indexed(self, key: str, record: dict[str, Any] | None = None) -> bool | None:
        """Whether an index entry names the object ``key``; ``None`` when it is not ours.

        With its sidecar ``record`` the entry's key is computed (one GET); without one,
        the object's own metadata (``kzr-name``) says which entries to read. An object
        without that metadata was not written by this store: ``None``.
        """
        with _mapped_errors("sweep"):
            if record is not None:
                name = Name(Kind(record["kind"]), tuple(record["segments"]), record["filename"])
                entry = self._read_entry(
                    self._entry_key(name, record.get("recording_id"), record["sha256"]))
                return entry is not None and entry.get("key") == key
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _missing(exc):
                    return None
                raise
            digest = head.get("Metadata", {}).get("kzr-name", "")
            if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
                return None
            listing = f"{self.prefix}{_INDEX}/{digest[:2]}/{digest}/"
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=listing)
            for page in pages:
                for item in page.get("Contents", []):
                    entry = self._read_entry(item["Key"])
                    if entry is not None and entry.get("key") == key:
                        return True
            return False

    def delete(self, *keys: str) -> None:
        """Delete objects by key (a sweep's removal); keys outside the prefix are refused."""
        for key in keys:
            if not key.startswith(self.prefix):
                raise ValueError(f"{key!r} is outside this store's prefix {self.prefix!r}")
        with _mapped_errors("sweep"):
            for key in keys:
                self.client.delete_object(Bucket=self.bucket, Key=key)

    def preflight(self) -> list[str]:
        """Check, before serving, that the bucket exists and takes writes; return warnings.

        Puts and deletes a small probe object under ``<prefix>.kzr/``. Raises
        :class:`~kzr_wsgi.errors.StoreUnavailable` saying precisely what is wrong: no
        such bucket, no permission, refused credentials, or no answer from the
        endpoint. A bucket that ignores ``If-None-Match`` (so cannot tell two truly
        simultaneous uploads of one recording apart) is a warning, not an error.
        """
        probe = f"{self.prefix}.kzr/probe-{secrets.token_hex(8)}"
        where = self.url_for(self.prefix)
        warnings = []
        try:
            self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"kzr-wsgi probe",
                                   IfNoneMatch="*")
            try:
                try:
                    self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"again",
                                           IfNoneMatch="*")
                except ClientError as exc:
                    if _status(exc) not in (409, 412):
                        raise
                else:
                    warnings.append(
                        f"s3://{self.bucket} ignores conditional writes (If-None-Match): "
                        "retries are still answered as duplicates, but two truly "
                        "simultaneous uploads of one recording may be kept twice")
            finally:
                self.client.delete_object(Bucket=self.bucket, Key=probe)
        except ClientError as exc:
            raise StoreUnavailable(_preflight_message(exc, self.bucket, where)) from exc
        except BotoCoreError as exc:
            endpoint = self.client.meta.endpoint_url
            raise StoreUnavailable(f"no answer from the S3 endpoint {endpoint}: {exc}") from exc
        return warnings

    def lifecycle_rule(self, days: int = 1) -> dict[str, Any]:
        """A bucket lifecycle rule aborting this store's unfinished uploads after ``days``.

        Add it to the bucket's rules (``put_bucket_lifecycle_configuration`` replaces
        them all, so merge with any you have)::

            rules = [store.lifecycle_rule()]
            client.put_bucket_lifecycle_configuration(
                Bucket=store.bucket, LifecycleConfiguration={"Rules": rules})
        """
        return {
            "ID": "kzr-abort-incomplete-uploads",
            "Filter": {"Prefix": self.prefix},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": days},
        }


class _RangeReader(io.RawIOBase):
    """A stored object as a seekable raw stream that reads with ranged GETs.

    Nothing is fetched until the first read; each read continues one ``GET`` with
    ``Range: bytes=<pos>-`` and a seek elsewhere starts a new one. ``If-Match`` on the
    object's ETag makes a read of a replaced object fail rather than mix two bodies.
    """

    def __init__(self, client: S3Client, bucket: str, key: str, size: int, s3_etag: str) -> None:
        super().__init__()
        self._client = client
        self._bucket = bucket
        self._key = key
        self._size = size
        self._s3_etag = s3_etag
        self._pos = 0
        self._body: Any = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self._size + offset
        else:
            raise ValueError(f"invalid whence: {whence}")
        if target < 0:
            raise ValueError("negative seek position")
        if target != self._pos:
            self._drop()
            self._pos = target
        return self._pos

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self._size or len(buffer) == 0:
            return 0
        with _mapped_errors("read"):
            if self._body is None:
                self._body = self._client.get_object(
                    Bucket=self._bucket, Key=self._key, Range=f"bytes={self._pos}-",
                    IfMatch=self._s3_etag)["Body"]
            data = self._body.read(min(len(buffer), self._size - self._pos))
        if not data:
            raise StoreUnavailable("the object store ended the read early")
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        self._drop()
        super().close()

    def _drop(self) -> None:
        if self._body is not None:
            body, self._body = self._body, None
            body.close()


@contextmanager
def _mapped_errors(what: str) -> Iterator[None]:
    """Turn boto3's errors into the project's: 404 -> NotFound (reads), else StoreUnavailable.

    The project's own errors (a body cut short, a NotFound raised inside) pass unchanged.
    """
    try:
        yield
    except ClientError as exc:
        if what == "read" and _missing(exc):
            raise NotFound("no such recording") from exc
        code = exc.response.get("Error", {}).get("Code", "error")
        log.error("S3 %s failed: %s (HTTP %s)", what, code, _status(exc))
        raise StoreUnavailable("the object store refused the request") from exc
    except BotoCoreError as exc:
        log.error("S3 %s failed: %s", what, exc)
        raise StoreUnavailable("the object store cannot be reached") from exc


def _make_client(endpoint_url: str | None, region_name: str | None) -> S3Client:
    config = Config(
        # "standard" retries throttling and 5xx with backoff before we give up.
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=10,
        read_timeout=120,
        # Several requests, each with a few parts in flight, share one client.
        max_pool_connections=64,
    )
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url, region_name=region_name,
                          config=config)


def _normalise_prefix(prefix: str) -> str:
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"prefix {prefix!r} must not contain '.' or '..' segments")
    return "".join(p + "/" for p in parts)


def _rid_digest(recording_id: str | None) -> str:
    """16 hex digits standing for the ``recording_id`` (the same form as the disk index)."""
    blob = (recording_id or "").encode("utf-8", "surrogateescape")
    return hashlib.sha256(blob).hexdigest()[:16]


def _meta_value(text: str) -> str:
    """An ASCII, bounded S3 metadata value standing for ``text``."""
    encoded = quote(text.encode("utf-8", "surrogateescape"), safe="")
    if len(encoded) > _MAX_META_VALUE:
        return "sha256:" + hashlib.sha256(encoded.encode("ascii")).hexdigest()
    return encoded


def _object_metadata(recording: Recording) -> dict[str, str]:
    meta = {"kzr-kind": recording.kind.value, "kzr-name": name_digest(recording.name)}
    if recording.call_id is not None:
        meta["kzr-call-id"] = _meta_value(recording.call_id)
    if recording.recording_id is not None:
        meta["kzr-recording-id"] = _meta_value(recording.recording_id)
    return meta


def _header_safe(value: str) -> str | None:
    """``value`` if it can go in an HTTP header as is (a client's Content-Type may not)."""
    if len(value) <= 200 and value.isascii() and value.isprintable():
        return value
    return None


def _record(
    recording: Recording, location: str, key: str, size: int, digest: str, content_type: str
) -> dict[str, Any]:
    return {
        **recording.describe(),
        "content_type": content_type,
        "size": size,
        "sha256": digest,
        "stored_at": utcnow().isoformat(),
        "location": location,
        "key": key,
    }


def _preflight_message(exc: ClientError, bucket: str, where: str) -> str:
    """What a refused probe write means, in the operator's words."""
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    status = _status(exc)
    detail = f"({code or 'HTTP'} {status}: {error.get('Message', '')})".replace(": )", ")")
    if code == "NoSuchBucket":
        return f"no such bucket: {bucket!r} {detail}"
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                "InvalidToken"):
        return f"the S3 credentials were refused for bucket {bucket!r} {detail}"
    if code in ("AccessDenied", "AllAccessDisabled") or status == 403:
        return f"no permission to write to {where} {detail}"
    return f"cannot write to {where} {detail}"


def _status(exc: ClientError) -> int | None:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _missing(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code")
    if code == "NoSuchBucket":
        return False  # a misconfigured store, not a missing recording
    return code in ("NoSuchKey", "404", "NotFound") or _status(exc) == 404
