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

The modules, by concern: this one holds the store, its settings and its public
methods; :mod:`~kzr_wsgi.stores.s3.upload` the upload path,
:mod:`~kzr_wsgi.stores.s3.entries` the index entries and the commit,
:mod:`~kzr_wsgi.stores.s3.reading` reading back (:class:`~kzr_wsgi.stores.s3.reading.RangeReader`),
:mod:`~kzr_wsgi.stores.s3.changing` rewriting, discarding and removing copies,
:mod:`~kzr_wsgi.stores.s3.companions` the objects kept beside a copy (its analysis),
:mod:`~kzr_wsgi.stores.s3.sweep` the sweep and the preflight, and
:mod:`~kzr_wsgi.stores.s3.client` boto3's client and errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ...catalog import Catalog
from ...naming import DEFAULT_LAYOUT, STATE_DIR, render_layout
from ...recording import Name, Recording, Stored, StoredFile, Stream
from ..state import S3State
from . import changing, companions, reading, sweep, upload
from .client import Bucket, make_client
from .upload import DEFAULT_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, Uploading

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

    from ..base import CopyStore

__all__ = ["DEFAULT_PART_SIZE", "MAX_PARTS", "MIN_PART_SIZE", "S3Store"]


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
        self.prefix = normalise_prefix(prefix)
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
        self.client: S3Client = client or make_client(endpoint_url, region_name)
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
        return self._bucket().url_for(key)

    def _bucket(self) -> Bucket:
        """What the store's modules need of it, as it is now."""
        return Bucket(self.client, self.bucket, self.prefix, self.catalog)

    def _uploading(self) -> Uploading:
        """What the upload path needs of it, as it is now."""
        return Uploading(self._bucket(), self.layout, self.part_size,
                         self.multipart_threshold, self.max_concurrency)

    # -- writing ----------------------------------------------------------------------

    def __call__(self, recording: Recording) -> Stored:
        """Stream ``recording`` to S3 and commit it; return where it is.

        Raises :class:`~kzr_wsgi.errors.StoreUnavailable` when S3 cannot be reached or
        refuses a request, and lets the body's own errors
        (:class:`~kzr_wsgi.errors.BodyIncomplete`, :class:`~kzr_wsgi.errors.BodyTooLarge`)
        through; in every error case no object and no unfinished upload is left.
        """
        return upload.upload(self._uploading(), recording)

    # -- reading ----------------------------------------------------------------------

    def open(self, name: Name, recording_id: str | None = None) -> StoredFile:
        """The copy stored under ``name``: with ``recording_id`` when given, else the latest.

        The file object is seekable and reads with ranged GETs from its position: seek
        to the start of a ``Range`` and read its length. Raises
        :class:`~kzr_wsgi.errors.NotFound` when there is no such copy and
        :class:`~kzr_wsgi.errors.StoreUnavailable` when S3 cannot be reached.
        """
        return reading.open_named(self._bucket(), name, recording_id)

    def open_stored(self, location: str, sha256: str | None = None) -> StoredFile:
        """The object at ``location`` (a catalog row's ``s3://bucket/key``), for serving it.

        Only a data object of this store is served: this bucket, a key under the
        prefix, never the index. Anything else, and an object that is gone, is
        :class:`~kzr_wsgi.errors.NotFound`; S3 out of reach is
        :class:`~kzr_wsgi.errors.StoreUnavailable`. ``sha256`` becomes the ETag.

        One ``HEAD`` now, then a seekable file of ranged ``GET`` requests
        (:class:`~kzr_wsgi.stores.s3.reading.RangeReader`) with the object's size, type
        and times: what a ``Range`` reply needs. :meth:`open_copy` is not built on it
        because reading every copy once, start to end, needs neither the ``HEAD`` nor
        the seeking: there one streamed ``GET`` per copy is half the requests.
        """
        return reading.open_stored(self._bucket(), location, sha256)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every committed copy's sidecar dict, read from the index entries (with ``location``).

        One listing page and one GET per entry (a few run at once). Raises
        :class:`~kzr_wsgi.errors.StoreUnavailable` when S3 cannot be reached.
        """
        return reading.records(self._bucket())

    def open_copy(self, record: dict[str, Any]) -> Stream:
        """The stored bytes of the copy a record (from :meth:`records`) describes, streamed.

        A file-like object with ``read(n)`` and ``close()``: one streamed ``GET``, for
        ``reindex`` and ``verify``, which read each copy once from start to end (see
        :meth:`open_stored`, which serves ``Range`` replies, for why the two differ).
        Raises :class:`~kzr_wsgi.errors.NotFound` when the object is gone.
        """
        return reading.open_copy(self._bucket(), record)

    def owns(self, location: str) -> bool:
        """True when ``location`` is an ``s3://`` URL under this store's bucket and prefix."""
        return location.startswith(self.url_for(self.prefix))

    def count_hint(self) -> None:
        """Counting means listing the whole index: never cheap, so ``None``."""
        return None

    # -- what consumers beside the upload path need -----------------------------------

    def put_companions(self, record: Mapping[str, Any], files: Mapping[str, bytes]) -> bool:
        """Write objects beside the copy ``record`` names (ending -> bytes), then look at
        its index entry again and delete them if it went meanwhile; ``False`` when it is
        not indexed (see :mod:`~kzr_wsgi.stores.s3.companions`)."""
        return companions.put(self._bucket(), record, files)

    def get_companion(self, record: Mapping[str, Any], suffix: str) -> bytes:
        """The object ending in ``suffix`` beside the copy ``record`` names (NotFound if none)."""
        return companions.get(self._bucket(), record, suffix)

    def state(self) -> S3State:
        """Where holds, the audit trail, the prune journal and the lease live:
        ``PREFIX/.kzr/`` in the bucket, which every host on it sees."""
        return S3State(self.client, self.bucket, f"{self.prefix}{STATE_DIR}/")

    def parts(self) -> tuple[CopyStore, ...]:
        """This store: it holds its copies itself."""
        return (self,)

    def buckets(self) -> tuple[S3Store, ...]:
        """This store: a killed host leaves unfinished uploads and unindexed objects here,
        which the housekeeper's daily sweep removes."""
        return (self,)

    # -- changing committed copies ----------------------------------------------------

    def rewrite_record(self, record: dict[str, Any]) -> bool:
        """Replace a copy's sidecar and index entry with ``record`` (``reindex`` adds ``audio``).

        Each is one PUT (atomic in S3); the entry only if it still names this copy
        (``If-Match`` on what was read). Returns ``False`` when it no longer does.
        """
        return changing.rewrite_record(self._bucket(), record)

    def discard(self, stored: Stored) -> None:
        """Take back a copy this store committed (a fan-out's rollback).

        Removes the index entry first (so the recording is no longer "stored" and a
        retry stores it afresh), then the object and its sidecar. An entry that names a
        different copy is left alone. Raises :class:`~kzr_wsgi.errors.StoreUnavailable`
        when S3 refuses.
        """
        changing.discard(self._bucket(), stored)

    def index_lock(self, record: Mapping[str, Any]) -> AbstractContextManager[None]:
        """Nothing to hold: S3 has no locks; :meth:`remove` uses conditional requests instead."""
        return nullcontext()

    def indexes(self, record: Mapping[str, Any]) -> bool:
        """True when the index entry for ``record``'s name, recording id and sha256 is this copy."""
        return changing.indexes(self._bucket(), record)

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
        return changing.remove(self._bucket(), record, unindexed)

    # -- sweep and preflight ----------------------------------------------------------

    def sweep_incomplete(self, older_than: timedelta = timedelta(days=1)) -> int:
        """Abort multipart uploads under the prefix started more than ``older_than`` ago.

        For uploads orphaned by a process that was killed mid-upload. Choose
        ``older_than`` longer than the slowest upload takes: a live upload that is swept
        fails at its end (and Kazoo retries it). Returns how many were aborted.
        A bucket lifecycle rule does the same without a process
        (:meth:`lifecycle_rule`).
        """
        return sweep.sweep_incomplete(self._bucket(), older_than)

    def unfinished_uploads(self) -> Iterator[dict[str, Any]]:
        """Every unfinished multipart upload under the prefix, as S3 lists it."""
        return sweep.unfinished_uploads(self._bucket())

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort one unfinished multipart upload (its parts are freed)."""
        sweep.abort_upload(self._bucket(), key, upload_id)

    def sidecar_record(self, key: str) -> dict[str, Any] | None:
        """The sidecar of the object ``key``, when it has a readable one that names it."""
        return sweep.sidecar_record(self._bucket(), key)

    def companion_indexed(self, key: str) -> bool | None:
        """Whether the recording the companion object ``key`` belongs to is indexed;
        ``None`` when the object is not one of this store's companions."""
        return sweep.companion_indexed(self._bucket(), key)

    def is_indexed(self, key: str, record: dict[str, Any] | None = None) -> bool | None:
        """Whether an index entry names the object ``key``; ``None`` when it is not ours.

        With its sidecar ``record`` the entry's key is computed (one GET); without one,
        the object's own metadata (``kzr-name``) says which entries to read. An object
        without that metadata was not written by this store: ``None``.
        """
        return sweep.is_indexed(self._bucket(), key, record)

    def delete(self, *keys: str) -> None:
        """Delete objects by key (a sweep's removal); keys outside the prefix are refused."""
        sweep.delete(self._bucket(), *keys)

    def preflight(self) -> list[str]:
        """Check, before serving, that the bucket exists and takes writes; return warnings.

        Puts and deletes a small probe object under ``<prefix>.kzr/``. Raises
        :class:`~kzr_wsgi.errors.StoreUnavailable` saying precisely what is wrong: no
        such bucket, no permission, refused credentials, or no answer from the
        endpoint. A bucket that ignores ``If-None-Match`` (so cannot tell two truly
        simultaneous uploads of one recording apart) is a warning, not an error.
        """
        return sweep.preflight(self._bucket())

    def lifecycle_rule(self, days: int = 1) -> dict[str, Any]:
        """A bucket lifecycle rule aborting this store's unfinished uploads after ``days``.

        Add it to the bucket's rules (``put_bucket_lifecycle_configuration`` replaces
        them all, so merge with any you have)::

            rules = [store.lifecycle_rule()]
            client.put_bucket_lifecycle_configuration(
                Bucket=store.bucket, LifecycleConfiguration={"Rules": rules})
        """
        return sweep.lifecycle_rule(self._bucket(), days)


def normalise_prefix(prefix: str) -> str:
    """``prefix`` as ``""`` or ``a/b/``; ``.`` and ``..`` segments are refused."""
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"prefix {prefix!r} must not contain '.' or '..' segments")
    return "".join(p + "/" for p in parts)
