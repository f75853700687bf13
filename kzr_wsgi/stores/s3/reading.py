"""Reading the S3 store back: by name through the index, by location (the search page),
and every copy's record (``reindex``, ``verify``).

:class:`RangeReader` makes a stored object a seekable file that reads with ranged
GETs from wherever it is positioned, so a ``Range`` request is served by seeking it
(as werkzeug's ``FileWrapper`` and ``make_conditional`` do) without fetching the
bytes before the range.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from ...body import BLOCK_SIZE
from ...errors import NotFound, StoreUnavailable
from ...naming import COMPANION_SUFFIXES, SIDECAR_SUFFIX
from ...recording import Name, StoredFile, Stream
from .client import Bucket, Operation, mapped_errors, unless_missing
from .entries import INDEX, index_dir, read_entry, rid_digest

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client


def open_named(bucket: Bucket, name: Name, recording_id: str | None = None) -> StoredFile:
    """The copy stored under ``name``: with ``recording_id`` when given, else the latest.

    The body of :meth:`~kzr_wsgi.stores.s3.S3Store.open`, which says more.
    """
    listing = index_dir(bucket, name)
    if recording_id is not None:
        listing += rid_digest(recording_id) + "-"
    with mapped_errors(Operation.READ):
        entries = []
        pages = bucket.client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket.name, Prefix=listing)
        for page in pages:
            for item in page.get("Contents", []):
                entry = read_entry(bucket, item["Key"])
                if entry is not None:
                    entries.append(entry)
        # Latest first, as the disk store does: by the time each copy was received.
        entries.sort(key=lambda e: str(e.get("received_at", "")), reverse=True)
        for entry in entries:
            head = unless_missing(bucket.client.head_object, Bucket=bucket.name,
                                  Key=entry["key"])
            if head is None:
                continue  # deleted by hand: an older copy may still serve
            reader = RangeReader(bucket.client, bucket.name, entry["key"],
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


def open_stored(bucket: Bucket, location: str, sha256: str | None = None) -> StoredFile:
    """The object at ``location`` (a catalog row's ``s3://bucket/key``), for serving it.

    The body of :meth:`~kzr_wsgi.stores.s3.S3Store.open_stored`, which says more.
    """
    # Split by hand: a key may hold "#" or "?" (hashed long names), which a URL
    # parser would take for a fragment or a query.
    scheme, _, rest = location.partition("://")
    named, _, key = rest.partition("/")
    if (scheme != "s3" or named != bucket.name or not key.startswith(bucket.prefix)
            or key.startswith(f"{bucket.prefix}{INDEX}/")
            or key.endswith((SIDECAR_SUFFIX, *COMPANION_SUFFIXES))):
        raise NotFound("no such recording")
    with mapped_errors(Operation.READ):
        head = bucket.client.head_object(Bucket=bucket.name, Key=key)
    reader = RangeReader(bucket.client, bucket.name, key, head["ContentLength"], head["ETag"])
    return StoredFile(
        fileobj=io.BufferedReader(reader, buffer_size=BLOCK_SIZE),
        size=head["ContentLength"],
        content_type=head.get("ContentType", "application/octet-stream"),
        etag=sha256 or head["ETag"].strip('"'),
        last_modified=head["LastModified"],
        location=location,
    )


def records(bucket: Bucket) -> Iterator[dict[str, Any]]:
    """Every committed copy's sidecar dict, read from the index entries (with ``location``).

    The body of :meth:`~kzr_wsgi.stores.s3.S3Store.records`, which says more.
    """
    with mapped_errors(Operation.READ):
        pages = bucket.client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket.name, Prefix=f"{bucket.prefix}{INDEX}/")
        with ThreadPoolExecutor(8, thread_name_prefix="kzr-s3-records") as pool:
            for page in pages:
                keys = [item["Key"] for item in page.get("Contents", [])
                        if item["Key"].endswith(".json")]
                for entry in pool.map(partial(read_entry, bucket), keys):
                    if entry is not None and "location" in entry:
                        yield entry


def open_copy(bucket: Bucket, record: dict[str, Any]) -> Stream:
    """The stored bytes of the copy a record (from :meth:`records`) describes, streamed.

    The body of :meth:`~kzr_wsgi.stores.s3.S3Store.open_copy`, which says more.
    """
    with mapped_errors(Operation.READ):
        return bucket.client.get_object(Bucket=bucket.name, Key=record["key"])["Body"]


class RangeReader(io.RawIOBase):
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
        with mapped_errors(Operation.READ):
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
