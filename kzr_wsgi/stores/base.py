"""The store contract: what each consumer needs of a store, written down as protocols.

Every consumer names the protocol it uses, never a store class (and of a handler it did
not build, a host app's own or a fan-out's part, asks only whether it is one, by
``isinstance`` with the protocol): the middleware stores uploads (:class:`UploadStore`),
the search page opens a catalog row's copy (:class:`StoredOpener`), the storage-plan
reads, ``reindex`` and ``verify`` open copies by name or record (:class:`CopyReader`)
and list them (:class:`CopyLister`), ``prune`` and a fan-out's rollback remove them in
the crash-safe order (:class:`CopyRemover`, :class:`DiscardableStore`), holds and the
audit trail live where the store says (:class:`StateKeeper`), rows go to the catalog
beside it (:class:`CataloguedStore`), the analysis pipeline keeps its results beside each
copy (:class:`CompanionKeeper`), and ``serve`` checks it and hands its housekeeper the
work it needs (:class:`ServedStore`). Two unions of them name what the built-in
stores are:

=========================  ==================  ===========  ==========
protocol                   ``DirectoryStore``  ``S3Store``  ``FanOut``
=========================  ==================  ===========  ==========
:class:`UploadStore`       yes                 yes          yes
:class:`StoredOpener`      yes                 yes          yes
:class:`CopyReader`        yes                 yes          yes
:class:`CopyLister`        yes                 yes          no
:class:`DiscardableStore`  yes                 yes          no
:class:`CopyRemover`       yes                 yes          no
:class:`StateKeeper`       yes                 yes          yes
:class:`CataloguedStore`   yes                 yes          yes
:class:`CompanionKeeper`   yes                 yes          yes
:class:`ServedStore`       yes                 yes          yes
:class:`Store`             yes                 yes          yes
:class:`CopyStore`         yes                 yes          no
=========================  ==================  ===========  ==========

A fan-out keeps no copies of its own: its :meth:`~ServedStore.parts` are the stores that
do, and whoever lists or removes copies works on those. ``mypy --strict`` checks the
table (the assignments at the end of this module); a test checks it again at run time.
A handler of your own needs none of this: any :data:`~kzr_wsgi.recording.Handler` can
be mounted, and :class:`~kzr_wsgi.recording.ReadableStore` is what serving reads back
asks of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..recording import Name, Recording, Stored, StoredFile, Stream
from .state import DiskState, S3State

if TYPE_CHECKING:
    from ..catalog import Catalog
    from .directory import DirectoryStore
    from .fanout import FanOut
    from .s3 import S3Store

__all__ = [
    "CataloguedStore",
    "CompanionKeeper",
    "CopyLister",
    "CopyReader",
    "CopyRemover",
    "CopyStore",
    "DiscardableStore",
    "ServedStore",
    "StateKeeper",
    "Store",
    "StoredOpener",
    "UploadStore",
]


@runtime_checkable
class UploadStore(Protocol):
    """Store an upload: a :data:`~kzr_wsgi.recording.Handler`, as a protocol the others extend.

    Read ``recording.stream`` to its end, make the bytes durable, and return where they
    are (``created=False`` for a copy already kept); raise to keep nothing. The
    middleware's only need.
    """

    def __call__(self, recording: Recording) -> Stored | None:
        """Keep ``recording``'s bytes; return when they are complete and durable."""
        ...


@runtime_checkable
class StoredOpener(Protocol):
    """Open a stored copy by its location (a catalog row's): all the search page needs.

    Raises :class:`~kzr_wsgi.errors.NotFound` for a copy that is not there (or a
    location outside the store) and :class:`~kzr_wsgi.errors.StoreUnavailable` for a
    store out of reach.
    """

    def open_stored(self, location: str, sha256: str | None = None) -> StoredFile:
        """The copy at ``location``, seekable, for serving it back (``sha256``: its ETag)."""
        ...


@runtime_checkable
class CopyReader(StoredOpener, Protocol):
    """Open a stored copy: by name (Kazoo's storage-plan reads), by location (the search
    page), or by record, to read it once from start to end (``reindex``, ``verify``).

    Each raises as :class:`StoredOpener` says.
    """

    def open(self, name: Name, recording_id: str | None = None) -> StoredFile:
        """The copy filed under ``name`` (with ``recording_id`` when given, else the latest)."""
        ...

    def open_copy(self, record: dict[str, Any]) -> Stream:
        """The bytes of the copy ``record`` (from :meth:`CopyLister.records`) describes."""
        ...


@runtime_checkable
class CopyLister(Protocol):
    """List what is held: every committed copy, from the store's own index."""

    def records(self) -> Iterator[dict[str, Any]]:
        """Every committed copy's sidecar dict, with its ``location``."""
        ...

    def owns(self, location: str) -> bool:
        """True when ``location`` (a record's or a catalog row's) is inside this store."""
        ...

    def count_hint(self) -> int | None:
        """How many copies there are, when counting is cheap; else ``None``."""
        ...


@runtime_checkable
class DiscardableStore(Protocol):
    """Take back a copy just committed: what a fan-out's rollback needs.

    ``discard(stored)`` removes the copy ``stored`` describes (data, metadata and
    whatever index made a retry find it), so that a later upload of the same recording
    is stored afresh. Called only with a :class:`~kzr_wsgi.recording.Stored` the same
    store returned with ``created=True`` moments before.
    """

    def discard(self, stored: Stored) -> None:
        """Remove the copy ``stored`` describes; one already gone is not an error."""
        ...


@runtime_checkable
class CopyRemover(DiscardableStore, Protocol):
    """Change and remove committed copies in the crash-safe order (``prune``, ``reindex``).

    A removal is :meth:`index_lock`, then :meth:`indexes` (is this copy still the one the
    index names?), then :meth:`remove` with the lock held: the index entry, the caller's
    ``unindexed()`` (a catalog row), the data and its sidecar, each step durable before
    the next and each one harmless to repeat, so a removal cut short is finished by
    calling it again.
    """

    def index_lock(self, record: Mapping[str, Any]) -> AbstractContextManager[None]:
        """The lock that commits of ``record``'s name take (nothing to hold, for S3)."""
        ...

    def indexes(self, record: Mapping[str, Any]) -> bool:
        """True when the index entry for ``record``'s name, recording id and sha256 is this
        copy."""
        ...

    def remove(self, record: Mapping[str, Any], *, unindexed: Callable[[], None] | None = None,
               locked: bool = False) -> bool:
        """Remove the copy ``record`` for good, in the order above; True if it was indexed."""
        ...

    def rewrite_record(self, record: dict[str, Any]) -> bool:
        """Replace the copy's sidecar and index entry with ``record``, atomically each;
        ``False`` when the index no longer names this copy."""
        ...


@runtime_checkable
class StateKeeper(Protocol):
    """Where holds, the audit trail, the prune journal and the housekeeper's lease live."""

    def state(self) -> DiskState | S3State:
        """The store's own place for them (see :mod:`kzr_wsgi.stores.state`).

        Raises :class:`~kzr_wsgi.errors.KzrError` when the store keeps none.
        """
        ...


@runtime_checkable
class CataloguedStore(Protocol):
    """The catalog beside the store: where each newly stored copy's row goes."""

    @property
    def catalog(self) -> Catalog | None:
        """The catalog the store writes rows to (``None``: it writes none)."""
        ...


@runtime_checkable
class CompanionKeeper(Protocol):
    """Files kept beside a copy, part of it: its analysis and its waveform.

    A copy is named by a record (a sidecar dict, or what a catalog row knows of it:
    ``kind``, ``segments``, ``filename``, ``recording_id``, ``sha256``); its files by
    their endings (:data:`~kzr_wsgi.naming.COMPANION_SUFFIXES`). They are part of the
    recording: never listed by :meth:`CopyLister.records`, never served as one, removed
    with it (in the crash-safe order, before its sidecar), and written only while the
    copy is indexed, so a file never outlives its recording.
    """

    def put_companions(self, record: Mapping[str, Any], files: Mapping[str, bytes]) -> bool:
        """Write ``files`` (ending -> bytes) beside the copy ``record`` names, each
        atomically; ``False`` (nothing left written) when the copy is not indexed."""
        ...

    def get_companion(self, record: Mapping[str, Any], suffix: str) -> bytes:
        """The file ending in ``suffix`` beside the copy ``record`` names.

        Raises :class:`~kzr_wsgi.errors.NotFound` when the copy or the file is not there.
        """
        ...


@runtime_checkable
class ServedStore(Protocol):
    """What ``serve`` needs before listening and for its housekeeper."""

    def preflight(self) -> list[str]:
        """Get ready to serve, or fail saying why; return warnings.

        A bucket is checked (it exists and takes writes); a disk store finishes what
        writers that died left and starts its upkeep in this process (see
        :mod:`~kzr_wsgi.stores.directory.upkeep`). Raises
        :class:`~kzr_wsgi.errors.StoreUnavailable` saying what is wrong.
        """
        ...

    def parts(self) -> tuple[CopyStore, ...]:
        """The stores that hold copies themselves: this one, or a fan-out's, in order."""
        ...

    def buckets(self) -> tuple[S3Store, ...]:
        """The buckets among :meth:`parts`: each needs the housekeeper's daily sweep of
        what killed hosts leave there (:mod:`kzr_wsgi.housekeeping.sweep`)."""
        ...


@runtime_checkable
class Store(UploadStore, CopyReader, StateKeeper, CataloguedStore, CompanionKeeper,
            ServedStore, Protocol):
    """What ``serve`` and the commands open (``--root``, ``--s3``, or both): any built-in
    store, a fan-out included."""


@runtime_checkable
class CopyStore(Store, CopyLister, CopyRemover, Protocol):
    """A store that holds its copies itself: one of the :meth:`~ServedStore.parts` of a store."""


if TYPE_CHECKING:

    def _implemented(disk: DirectoryStore, bucket: S3Store, both: FanOut) -> None:
        """The table above, which mypy checks (never run)."""
        upload: UploadStore = disk
        upload = bucket
        upload = both
        opener: StoredOpener = disk
        opener = bucket
        opener = both
        reader: CopyReader = disk
        reader = bucket
        reader = both
        lister: CopyLister = disk
        lister = bucket
        discardable: DiscardableStore = disk
        discardable = bucket
        remover: CopyRemover = disk
        remover = bucket
        keeper: StateKeeper = disk
        keeper = bucket
        keeper = both
        catalogued: CataloguedStore = disk
        catalogued = bucket
        catalogued = both
        companion: CompanionKeeper = disk
        companion = bucket
        companion = both
        served: ServedStore = disk
        served = bucket
        served = both
        store: Store = disk
        store = bucket
        store = both
        copies: CopyStore = disk
        copies = bucket
        del upload, opener, reader, lister, discardable, remover, keeper, catalogued, served
        del companion
        del store, copies
