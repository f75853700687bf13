"""The embedded default store: recordings as files under one directory.

``KazooRecordings(app, DirectoryStore("/srv/recordings"))`` is the whole set-up.

What it promises, and how:

* **A visible file is always complete; a 2xx means durable.** The body goes to a
  temporary file in ``ROOT/.kzr/tmp`` (same filesystem; see
  :mod:`~kzr_wsgi.stores.tempfiles`), is written to the disk, then hard-linked into
  place under a name no other file has (``link`` fails rather than overwrite), and
  everything is durable before the handler returns. On a filesystem with an ordered
  journal (ext4 with its journal, XFS) that takes one ``fsync`` per upload, after every
  name is in place; elsewhere the file is ``fsync``-ed before its name is made, and
  the sidecar and each directory after (see :mod:`~kzr_wsgi.stores.syncing`).
* **Names are data.** Every path component comes from
  :func:`~kzr_wsgi.naming.safe_component`: a call id can hold ``/``, ``..``, ``\\``
  or ``%`` and still never leaves ``ROOT`` nor meets another id's file.
* **Idempotent under Kazoo's retries.** Every stored copy is indexed by its
  :class:`~kzr_wsgi.recording.Name`, ``recording_id`` and sha256 in
  ``ROOT/.kzr/index``. The same recording with the same body again (a retry, days
  later or racing the original) finds its entry and keeps one copy; a different body
  under the same name is kept beside it (``…~2.mp3``), never overwriting. The check
  and the commit run under a per-shard ``flock``, so concurrent retries in several
  processes sharing the root agree.
* **Metadata beside the file**: ``<file>.kzr.json`` with the call id, Kazoo's fields,
  size, sha256, content type and time received.
* **Dead writers leave nothing.** The temporary file has no name where the
  filesystem allows (``O_TMPFILE``): the kernel frees it when its writer dies. Where it
  must have a name, its writer holds an ``flock`` on it while it lives, and files
  nobody holds are reaped (removed) on the store's first use in each process and every
  few seconds after (:meth:`DirectoryStore.reap`); a live writer's are left alone.
* **Catalogued before the reply.** Each newly stored copy becomes a row in the store's
  catalog (by default SQLite at ``ROOT/.kzr/catalog.sqlite3``; see
  :mod:`kzr_wsgi.catalog`) once its commit is durable. A failed catalog write never
  fails the upload: its marker (below) stays, and a later pass writes the row.
* **One marker per upload; a kill anywhere leaves one copy, catalogued.** Before the
  file is placed, a marker ``ROOT/.kzr/pending/<entry name>`` records where it goes
  and which inode it is; it is removed once the index entry is written and, when the
  store has a catalog, the copy's row too. Its writer holds an ``flock`` on it while
  it lives. A marker nobody holds (its shard's lock taken too) belongs to a writer
  that died: its placed file is adopted (sidecar, index entry and row written) on the
  store's first use, by the periodic upkeep pass, or by the retry itself, and a marker
  whose file never got placed is dropped. Kazoo's retry of the unanswered upload then
  finds one recording, in one file, with one row. The cost of recovery grows with
  what was in flight, not with the size of the store. Markers a store from before
  left in ``ROOT/.kzr/uncatalogued`` (one per row not yet written) are still repaired
  (see :meth:`DirectoryStore.repair_catalog`).

The filesystem semantics relied on (POSIX plus Linux; ext4 and XFS give them):

* ``link``/``linkat`` is atomic and fails with ``EEXIST`` rather than replace;
  ``rename`` replaces atomically; neither copies data.
* ``fsync`` of a file makes its data durable; ``fsync`` of a directory makes the names
  in it durable. Data is on the disk *before* the name that shows it is made, so after
  a power cut a visible file is complete (or absent). With an ordered journal, data
  written back (``sync_file_range``) before the name is made, and one ``fsync`` after,
  give the same (:mod:`~kzr_wsgi.stores.syncing` says why).
* Metadata changes reach the journal in the order they were made (ext4 ``data=ordered``
  and XFS), so the marker, made before the file's name, is never lost while that name
  survives; the marker itself is not synced (a power cut at worst leaves a marker of a
  finished commit, which recovery then drops).
* ``flock`` locks vanish with the process that held them, so a lock that can be taken
  proves its holder is gone.

Layout: ``{kind}/{account_id}/{yyyy}/{mm}/{dd}`` by default (see
:func:`~kzr_wsgi.naming.layout_fields`), so no directory grows without bound.

The constructor checks its arguments and makes the store's directories; it starts
nothing. The store's first use in each process (a fork's child included) first
finishes what writers that died left, then has the process's upkeep thread repeat that
(:mod:`~kzr_wsgi.stores.directory.upkeep`).

The modules, by concern: this one holds the store;
:mod:`~kzr_wsgi.stores.directory.copying` the body's copy to disk,
:mod:`~kzr_wsgi.stores.directory.commit` the commit's steps and the upload's marker,
:mod:`~kzr_wsgi.stores.directory.markers` recovery from the markers,
:mod:`~kzr_wsgi.stores.directory.reading` reading back,
:mod:`~kzr_wsgi.stores.directory.changing` rewriting, discarding and removing copies,
:mod:`~kzr_wsgi.stores.directory.companions` the files kept beside a copy (its analysis),
:mod:`~kzr_wsgi.stores.directory.upkeep` the upkeep, and
:mod:`~kzr_wsgi.stores.directory.files` the paths and small file helpers they share.
Each is handed what it needs (:class:`~kzr_wsgi.stores.directory.files.Places`,
:class:`~kzr_wsgi.stores.directory.commit.Committing`), never the store.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ...catalog import Catalog
from ...errors import NotFound
from ...naming import DEFAULT_LAYOUT, SIDECAR_SUFFIX, render_layout
from ...recording import Name, Recording, Stored, StoredFile
from ..state import DiskState
from ..syncing import journaled, write_back
from ..tempfiles import reap_named, supports_unnamed, temporary
from . import changing, companions, markers, reading
from .commit import Committing, commit_upload
from .copying import copy_to_disk
from .files import Places, full_is_storage_full, locked, make_shards, makedirs, read_json
from .upkeep import UPKEEP

if TYPE_CHECKING:
    from ..base import CopyStore
    from ..s3 import S3Store

__all__ = ["DEFAULT_CATALOG", "DirectoryStore", "copy_to_disk"]

log = logging.getLogger("kzr_wsgi.store")

#: A named temporary file younger than this is never reaped, locked or not: its writer
#: may be between creating it and locking it (microseconds; seconds leave a margin).
_REAP_MIN_AGE = 2.0
#: How often a process makes its upkeep pass (so a dead writer's named file lasts < 10 s).
_UPKEEP_EVERY = 3.0
#: Stands for "the store's own SQLite catalog" as the ``catalog`` argument's default.
DEFAULT_CATALOG: Any = object()
#: Stands for "not given" for the older keyword spellings.
_UNSET: Any = object()


class DirectoryStore:
    """Keep each upload as a file under ``root``; itself a handler and a reader.

    >>> store = DirectoryStore("/srv/recordings")          # doctest: +SKIP
    >>> app = KazooRecordings(app, store)                   # doctest: +SKIP

    ``sweep_min_age`` and ``sweep_every`` are the older spellings of ``reap_min_age``
    and ``upkeep_every``, still accepted.
    """

    __slots__ = ("root", "layout", "reap_min_age", "upkeep_every", "unnamed", "places",
                 "__weakref__", "catalog", "one_sync")

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        layout: str = DEFAULT_LAYOUT,
        reap_min_age: float = _REAP_MIN_AGE,
        upkeep_every: float | None = _UPKEEP_EVERY,
        unnamed_temporaries: bool = True,
        catalog: Catalog | None = DEFAULT_CATALOG,
        # None: one sync per commit where the filesystem's journal makes it enough
        # (kzr_wsgi.stores.syncing); False forces a sync of every file and directory.
        one_sync: bool | None = None,
        sweep_min_age: float = _UNSET,
        sweep_every: float | None = _UNSET,
    ) -> None:
        #: The store's root directory, created when missing.
        self.root = Path(root).absolute()
        #: Template for the directory of each file (see :func:`~kzr_wsgi.naming.layout_fields`).
        self.layout = layout
        #: Seconds a named temporary file must be old before it may be reaped.
        self.reap_min_age = reap_min_age if sweep_min_age is _UNSET else sweep_min_age
        #: Seconds between upkeep passes while the process lives (``None``: only the first).
        self.upkeep_every = upkeep_every if sweep_every is _UNSET else sweep_every
        render_layout(layout, dict.fromkeys(
            ("kind", "account_id", "owner_id", "yyyy", "mm", "dd", "segments"), "x"))
        #: Where the store keeps what is its own (under ``ROOT/.kzr``).
        self.places = Places.under(self.root)
        for directory in (self.places.tmp, self.places.index, self.places.pending):
            makedirs(directory)
        make_shards(self.places.index)
        #: Whether temporary files are unnamed (``O_TMPFILE``); decided once, here.
        #: ``unnamed_temporaries=False`` forces named ones (the fallback) everywhere.
        self.unnamed = unnamed_temporaries and supports_unnamed(self.places.tmp)
        #: Whether a commit ends in one ``fsync`` (see :mod:`~kzr_wsgi.stores.syncing`).
        self.one_sync = journaled(self.root) if one_sync is None else one_sync
        #: Where each new copy's row goes: the root's SQLite catalog unless told otherwise
        #: (``None``: no catalog).
        self.catalog: Catalog | None = (
            Catalog.for_root(self.root) if catalog is DEFAULT_CATALOG else catalog)

    def __repr__(self) -> str:
        return f"DirectoryStore({str(self.root)!r})"

    def _in_use(self) -> None:
        """Before any use: the first pass in this process, and the upkeep (see
        :mod:`~kzr_wsgi.stores.directory.upkeep`)."""
        if not UPKEEP.is_started(self):
            UPKEEP.start(self, self.upkeep)

    def _committing(self) -> Committing:
        """What the commit's steps need of this store, as it is now."""
        return Committing(self.places, self.layout, self.unnamed, self.one_sync,
                          self._catalogue if self.catalog is not None else None)

    # -- writing ----------------------------------------------------------------------

    def __call__(self, recording: Recording) -> Stored:
        """Stream ``recording`` to disk and commit it; return where it is.

        Raises :class:`~kzr_wsgi.errors.StorageFull` when the disk is full, and lets
        the body's own errors through; in every error case nothing is left visible.
        """
        self._in_use()
        with full_is_storage_full(), temporary(self.places.tmp, self.unnamed) as tmp:
            size, digest = copy_to_disk(recording.stream, tmp.fd, recording.content_length)
            # Complete on disk before it gets a name; durable with the commit's last sync
            # (one_sync), or right now.
            if self.one_sync:
                write_back(tmp.fd)
            else:
                tmp.sync()
            return commit_upload(self._committing(), recording, tmp, size, digest)

    def _catalogue(self, final: Path) -> bool:
        """Write the row of the copy at ``final`` from its sidecar; ``False`` if that failed."""
        assert self.catalog is not None
        record = read_json(final.with_name(final.name + SIDECAR_SUFFIX))
        if record is None:
            return False
        return self.catalog.add_stored(record, str(final)) is not None

    # -- what writers that died left: recovery, reaping, repair -----------------------

    def recover(self) -> int:
        """Finish or drop the uploads of writers that died in them; return how many.

        Looks only at the markers (as many as uploads were in flight), each under its
        shard's lock and its own: a live writer holds the shard's lock for its whole
        commit and the marker's until its row is written, so a marker free of both is a
        dead writer's. Its commit is finished and its row written (or it is dropped
        when its file never got placed). See :mod:`~kzr_wsgi.stores.directory.markers`.
        """
        try:
            return markers.recover(self._committing())
        finally:
            if self.catalog is not None:
                self.catalog.release()  # nothing held between passes, nor across a fork

    def repair_catalog(self) -> int:
        """Repair: catalogue the copies named by markers a store from before left (in
        ``ROOT/.kzr/uncatalogued``, one per row it still owed); return how many.

        This store writes no such markers (:meth:`recover` writes the rows of today's)
        but reads them with each upkeep pass; see
        :func:`~kzr_wsgi.stores.directory.markers.repair_legacy`.
        """
        if self.catalog is None:
            return 0
        try:
            return markers.repair_legacy(self.places, self._catalogue)
        finally:
            # Nothing may be held open across gunicorn's fork, nor between passes.
            self.catalog.release()

    def reap(self) -> int:
        """Remove named temporary files of writers that died; return how many were removed.

        A file is removed only when no process holds its lock and it is older than
        :attr:`reap_min_age`: a live writer, in this process or another sharing the
        root, keeps its file. (Unnamed temporary files need no reaping.)
        """
        removed = reap_named(self.places.tmp, self.reap_min_age)
        if removed:
            log.warning("removed %d temporary file(s) left by writers that died", removed)
        return removed

    def upkeep(self) -> None:
        """One upkeep pass: :meth:`recover`, :meth:`reap`, :meth:`repair_catalog`.

        Made on the store's first use in each process and every :attr:`upkeep_every`
        seconds after (see :mod:`~kzr_wsgi.stores.directory.upkeep`).
        """
        self.recover()
        self.reap()
        self.repair_catalog()

    def sweep(self) -> int:
        """The older name of :meth:`reap`, still accepted."""
        return self.reap()

    def housekeep(self) -> None:
        """The older name of :meth:`upkeep`, still accepted."""
        self.upkeep()

    def preflight(self) -> list[str]:
        """Before serving: the first upkeep pass and the upkeep thread, in this process.

        What ``serve`` runs before it listens (a dead writer's upload is finished
        then, not at the first request); any other first use does the same. No warnings.
        """
        self._in_use()
        return []

    # -- reading ----------------------------------------------------------------------

    def open(self, name: Name, recording_id: str | None = None) -> StoredFile:
        """The copy stored under ``name`` (with ``recording_id`` when given, else the latest)."""
        self._in_use()
        return reading.open_named(self.places, name, recording_id)

    def open_stored(self, location: str, sha256: str | None = None) -> StoredFile:
        """The stored copy at ``location`` (a catalog row's: an absolute path, or one
        relative to the root), for serving it back.

        The path must lead to a data file inside the root (symlinks resolved; never
        the store's own state under ``.kzr`` nor a sidecar); anything else, and a file
        that is gone, is :class:`~kzr_wsgi.errors.NotFound`. ``sha256`` becomes the ETag.
        The file is seekable and comes with its size, type and times: what a ``Range``
        reply needs. :meth:`open_copy` is the same file for a trusted record.
        """
        self._in_use()
        return reading.open_stored(self.root, location, sha256)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every committed copy's sidecar dict (from the index), with ``location`` added.

        Includes entries whose file was removed by hand (``verify`` reports them). The
        order is the index's, not time.
        """
        self._in_use()
        return reading.records(self.places)

    def owns(self, location: str) -> bool:
        """True when ``location`` is a path under this store's root."""
        return location.startswith(str(self.root) + os.sep)

    def count_hint(self) -> int:
        """How many copies the index holds (cheap: names only, nothing read)."""
        return reading.count(self.places)

    def open_copy(self, record: dict[str, Any]) -> IO[bytes]:
        """The stored bytes of the copy a record (from :meth:`records`) describes.

        The thin form of :meth:`open_stored` (its file object, the record's path
        confined to the root the same way), kept because ``reindex`` and ``verify`` read
        every store through it and S3 needs a cheaper path there. Raises
        :class:`~kzr_wsgi.errors.NotFound` when the file is gone.
        """
        try:
            return self.open_stored(record["path"], record.get("sha256")).fileobj
        except NotFound:
            raise NotFound(f"{self.root / record['path']} is missing") from None

    # -- what consumers beside the upload path need -----------------------------------

    def put_companions(self, record: Mapping[str, Any], files: Mapping[str, bytes]) -> bool:
        """Write files beside the copy ``record`` names (ending -> bytes), under its index
        shard's lock and only while it is indexed; ``False`` when it is not (see
        :mod:`~kzr_wsgi.stores.directory.companions`)."""
        self._in_use()
        return companions.put(self.places, self.unnamed, record, files)

    def get_companion(self, record: Mapping[str, Any], suffix: str) -> bytes:
        """The file ending in ``suffix`` beside the copy ``record`` names (NotFound if none)."""
        self._in_use()
        return companions.get(self.places, record, suffix)

    def state(self) -> DiskState:
        """Where holds, the audit trail, the prune journal and the lease live: ``ROOT/.kzr``."""
        return DiskState(self.places.state)

    def parts(self) -> tuple[CopyStore, ...]:
        """This store: it holds its copies itself."""
        return (self,)

    def buckets(self) -> tuple[S3Store, ...]:
        """None: the upkeep of each process clears what a dead writer leaves on a disk."""
        return ()

    # -- changing committed copies ----------------------------------------------------

    def rewrite_record(self, record: dict[str, Any]) -> bool:
        """Replace a copy's sidecar and index entry with ``record`` (``reindex`` adds ``audio``).

        The two are hard links of one file, so both are replaced, atomically each: a
        new file is written and synced, linked twice under temporary names, and both
        names are renamed into place (under the shard's lock, as a commit is). Returns
        ``False`` when the entry no longer names this copy (removed meanwhile).
        """
        self._in_use()
        return changing.rewrite_record(self.places, self.unnamed, record)

    def discard(self, stored: Stored) -> None:
        """Take back a copy this store committed (a fan-out whose other store failed).

        Removes the index entry (only if it still points at this copy), then the file
        and its sidecar; a copy already gone is not an error.
        """
        self._in_use()
        changing.discard(self.places, self.catalog, stored)

    @contextmanager
    def index_lock(self, record: Mapping[str, Any]) -> Iterator[None]:
        """Hold the lock that commits of ``record``'s name take (its index shard's ``flock``).

        Inside it no upload of that name commits, so "is this copy still the indexed one?"
        and what is done about it cannot be overtaken by a retry storing it afresh.
        """
        self._in_use()
        with locked(self.places.entry(record).parent / ".lock"):
            yield

    def indexes(self, record: Mapping[str, Any]) -> bool:
        """True when the index entry for ``record``'s name, recording id and sha256 is this copy."""
        self._in_use()
        return changing.indexes(self.places, record)

    def remove(self, record: Mapping[str, Any], *, unindexed: Callable[[], None] | None = None,
               locked: bool = False) -> bool:
        """Remove the stored copy ``record`` (a sidecar dict) for good; True if it was indexed.

        In this order, each step durable before the next: the index entry (only if it
        still names this copy), then ``unindexed()`` (the caller's: a catalog row), then
        the file and its sidecar (only if the sidecar is still this copy's: a retry may
        have been stored afresh under the freed name). Every step tolerates having been
        done already, so a removal cut short by a crash is finished by calling it again.
        Runs under :meth:`index_lock`, taken here unless ``locked`` says the caller has it.
        """
        if not locked:
            with self.index_lock(record):
                return changing.remove(self.places, record, unindexed)
        self._in_use()
        return changing.remove(self.places, record, unindexed)
