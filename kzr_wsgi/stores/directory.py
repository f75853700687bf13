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
  nobody holds are removed at start-up and every few seconds while serving
  (:meth:`DirectoryStore.sweep`); a live writer's are left alone.
* **Catalogued before the reply.** Each newly stored copy becomes a row in the store's
  catalog (by default SQLite at ``ROOT/.kzr/catalog.sqlite3``; see
  :mod:`kzr_wsgi.catalog`). A small marker in ``ROOT/.kzr/uncatalogued`` is written
  before the commit and removed once the row is written; a process killed in between
  leaves the marker, and the next start-up (or housekeeping pass) catalogues that copy
  (see :meth:`DirectoryStore.repair_catalog`): the cost grows with what was in flight,
  not with the size of the store. A failed catalog write never fails the upload.
* **A kill inside the commit leaves one copy.** Before the file is placed, a
  *pending marker* ``ROOT/.kzr/pending/<entry name>`` records where it goes and which
  inode it is; it is removed once the index entry is written. A marker found with its
  shard's lock free belongs to a writer that died mid-commit: its placed file is
  adopted (sidecar and index entry written) at start-up, by the periodic sweep, or by
  the retry itself, and a marker whose file never got placed is dropped. Kazoo's retry
  of the unanswered upload then finds one recording, in one file.

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
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import queue
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from ..body import BLOCK_SIZE, readinto_of
from ..catalog import Catalog
from ..errors import NotFound, StorageFull
from ..faults import crash_point
from ..metadata import dumps
from ..naming import (
    DEFAULT_LAYOUT,
    SIDECAR_SUFFIX,
    content_type_for,
    guess_type,
    layout_fields,
    name_digest,
    render_layout,
    safe_component,
    with_suffix,
)
from ..recording import Kind, Name, Recording, Stored, StoredFile
from .syncing import journaled, write_back
from .tempfiles import NAMED_SUFFIX, TempFile, supports_unnamed, sweep_named, temporary

log = logging.getLogger("kzr_wsgi.store")

_STATE = ".kzr"
#: A named temporary file younger than this is never swept, locked or not: its writer
#: may be between creating it and locking it (microseconds; seconds leave a margin).
_SWEEP_MIN_AGE = 2.0
#: How often a serving process sweeps (so a dead writer's named file lasts < 10 s).
_SWEEP_EVERY = 3.0
_FULL = (errno.ENOSPC, errno.EDQUOT)
#: The name of an index entry, and so of a pending marker.
_ENTRY_NAME = re.compile(r"[0-9a-f]{64}-[0-9a-f]{16}-[0-9a-f]{64}\.json")
#: Stands for "the store's own SQLite catalog" as the ``catalog`` argument's default.
DEFAULT_CATALOG: Any = object()


class DirectoryStore:
    """Keep each upload as a file under ``root``; itself a handler and a reader.

    >>> store = DirectoryStore("/srv/recordings")          # doctest: +SKIP
    >>> app = KazooRecordings(app, store)                   # doctest: +SKIP
    """

    __slots__ = ("root", "layout", "sweep_min_age", "sweep_every", "unnamed", "_tmp",
                 "_index", "_pending", "_last_sweep", "__weakref__", "catalog",
                 "_uncatalogued", "one_sync")

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        layout: str = DEFAULT_LAYOUT,
        sweep_min_age: float = _SWEEP_MIN_AGE,
        sweep_every: float | None = _SWEEP_EVERY,
        unnamed_temporaries: bool = True,
        catalog: Catalog | None = DEFAULT_CATALOG,
        # None: one sync per commit where the filesystem's journal makes it enough
        # (kzr_wsgi.stores.syncing); False forces a sync of every file and directory.
        one_sync: bool | None = None,
    ) -> None:
        #: The store's root directory, created when missing.
        self.root = Path(root).absolute()
        #: Template for the directory of each file (see :func:`~kzr_wsgi.naming.layout_fields`).
        self.layout = layout
        #: Seconds a named temporary file must be old before a sweep may remove it.
        self.sweep_min_age = sweep_min_age
        #: Seconds between sweeps while the process lives (``None``: at start-up only).
        self.sweep_every = sweep_every
        render_layout(layout, dict.fromkeys(
            ("kind", "account_id", "owner_id", "yyyy", "mm", "dd", "segments"), "x"))
        self._tmp = self.root / _STATE / "tmp"
        self._index = self.root / _STATE / "index"
        self._pending = self.root / _STATE / "pending"
        for directory in (self._tmp, self._index, self._pending):
            _makedirs(directory)
        _make_shards(self._index)
        #: Whether temporary files are unnamed (``O_TMPFILE``); decided once, here.
        #: ``unnamed_temporaries=False`` forces named ones (the fallback) everywhere.
        self.unnamed = unnamed_temporaries and supports_unnamed(self._tmp)
        #: Whether a commit ends in one ``fsync`` (see :mod:`~kzr_wsgi.stores.syncing`).
        self.one_sync = journaled(self.root) if one_sync is None else one_sync
        self._last_sweep = 0.0
        #: Where each new copy's row goes: the root's SQLite catalog unless told otherwise
        #: (``None``: no catalog).
        self.catalog: Catalog | None = (
            Catalog.for_root(self.root) if catalog is DEFAULT_CATALOG else catalog)
        self._uncatalogued = self.root / _STATE / "uncatalogued"
        if self.catalog is not None:
            _makedirs(self._uncatalogued)
        self.recover()
        self.sweep()
        self.repair_catalog()
        if sweep_every is not None:
            _HOUSEKEEPER.add(self)

    def __repr__(self) -> str:
        return f"DirectoryStore({str(self.root)!r})"

    # -- writing ----------------------------------------------------------------------

    def __call__(self, recording: Recording) -> Stored:
        """Stream ``recording`` to disk and commit it; return where it is.

        Raises :class:`~kzr_wsgi.errors.StorageFull` when the disk is full, and lets
        the body's own errors through; in every error case nothing is left visible.
        """
        with _full_is_storage_full(), temporary(self._tmp, self.unnamed) as tmp:
            size, digest = copy_to_disk(recording.stream, tmp.fd, recording.content_length)
            # Complete on disk before it gets a name; durable with the commit's last sync
            # (one_sync), or right now.
            if self.one_sync:
                write_back(tmp.fd)
            else:
                tmp.sync()
            return self._commit_catalogued(recording, tmp, size, digest)

    def _commit(self, recording: Recording, tmp: TempFile, size: int, digest: str) -> Stored:
        index_dir = self._index_dir(recording.name)
        entry = index_dir / _entry_name(recording.name, recording.recording_id, digest)
        with _locked(index_dir / ".lock"):
            existing = self._indexed(entry)
            if existing is not None:
                return existing
            # This very upload, placed by a writer that died mid-commit: finish that
            # commit rather than place a second copy.
            adopted = self._finish_pending(entry)
            if adopted is not None:
                return adopted
            directory = self.root / render_layout(self.layout, layout_fields(recording))
            _makedirs(directory)
            record = self._place(recording, tmp, directory, entry, size, digest)
            final = self.root / record["path"]
            self._write_record(record, final, entry)
            if not self.one_sync:
                for synced in (directory, index_dir):
                    _fsync_dir(synced)
            (self._pending / entry.name).unlink()
        return Stored(str(final), size, digest, created=True)

    def _indexed(self, entry: Path) -> Stored | None:
        """The copy ``entry`` names, if the entry exists and its file is still there."""
        existing = _read_json(entry)
        if existing is None:
            return None
        path = self.root / existing["path"]
        if path.is_file() and path.stat().st_size == existing["size"]:
            return Stored(str(path), existing["size"], existing["sha256"], created=False)
        return None  # the indexed copy was removed by hand: store this one afresh

    def _place(self, recording: Recording, tmp: TempFile, directory: Path, entry: Path,
               size: int, digest: str) -> dict[str, Any]:
        """Mark, then link ``tmp`` into ``directory`` under the first free name; its record.

        The marker is (re)written for each name tried before trying it, so whenever a
        placed file exists its marker says where and which inode it is.
        """
        component = safe_component(recording.filename)
        dev, ino = tmp.identity()
        n = 1
        while True:
            final = directory / with_suffix(component, n)
            n += 1
            if os.path.lexists(final):
                continue
            record = self._record(recording, final.relative_to(self.root).as_posix(), size,
                                  digest)
            marker = {"record": record, "dev": dev, "ino": ino}
            # Compact: only the store reads it, and json's indenting encoder is pure
            # Python (a third of a millisecond per upload for this document).
            text = json.dumps(marker, ensure_ascii=True, sort_keys=True, default=str)
            self._write_marker(entry.name, text.encode("utf-8"))
            crash_point("dir.marked")
            try:
                tmp.link(final)
            except FileExistsError:
                continue  # taken since the check: another name, another marker
            crash_point("dir.placed")
            return record

    def _write_marker(self, name: str, data: bytes) -> None:
        marker = self._pending / name
        with temporary(self._tmp, self.unnamed) as tmp:
            tmp.write(data)
            marker.unlink(missing_ok=True)  # the previous name tried
            tmp.link(marker)

    def _write_record(self, record: dict[str, Any], final: Path, entry: Path) -> None:
        """Put the sidecar beside ``final`` and the index entry in place: one file, two names.

        All names are put in place first and synced after. With ``one_sync`` that sync
        is the commit's only one: it commits the journal transaction holding every name
        and allocation made since the body was written back (see
        :mod:`~kzr_wsgi.stores.syncing`); the sidecar's own bytes are written back before
        its names exist, so a visible sidecar is never empty.
        """
        sidecar = final.with_name(final.name + SIDECAR_SUFFIX)
        with temporary(self._tmp, self.unnamed) as tmp:
            tmp.write(dumps(record).encode("utf-8"))
            if self.one_sync:
                write_back(tmp.fd)
            _link_replacing(tmp, sidecar)  # a stale sidecar of a file removed by hand
            crash_point("dir.sidecar")
            _link_replacing(tmp, entry)  # a stale entry whose file was removed
            crash_point("dir.indexed")
            tmp.sync()

    def _finish_pending(self, entry: Path) -> Stored | None:
        """Finish the commit a dead writer left at ``entry``'s marker; hold the shard's lock.

        Returns the copy when its file was placed (now indexed), ``None`` when there was
        no marker or its file never got placed (the marker is dropped).
        """
        marker_path = self._pending / entry.name
        marker = _read_json(marker_path)
        if marker is None:
            marker_path.unlink(missing_ok=True)  # absent, or unreadable: nothing placed
            return None
        record = marker["record"]
        final = self.root / record["path"]
        try:
            st = os.stat(final)
        except FileNotFoundError:
            st = None
        if st is None or (st.st_dev, st.st_ino, st.st_size) != (
                marker["dev"], marker["ino"], record["size"]):
            # Killed before the link (or the name went to another upload): nothing of
            # this upload is visible, and the retry stores it afresh.
            marker_path.unlink()
            return None
        if self._indexed(entry) is None:
            self._write_record(record, final, entry)
            for synced in (final.parent, entry.parent):
                _fsync_dir(synced)
            log.warning("finished the commit of %s left by a writer that died", final)
        marker_path.unlink()
        return Stored(str(final), record["size"], record["sha256"], created=True)

    def _record(
        self, recording: Recording, relative: str, size: int, digest: str
    ) -> dict[str, Any]:
        return {
            **recording.describe(),
            "content_type": content_type_for(recording),
            "size": size,
            "sha256": digest,
            "path": relative,
        }

    def _index_dir(self, name: Name) -> Path:
        """The shard of the index that holds ``name``'s entries (and their lock).

        Entries sit flat in 256 shards rather than in a directory per name: every
        inode created costs a journal update, and the shards exist after the first
        few hundred uploads. The shard's lock is shared by the names in it; commits
        hold it for a few milliseconds.
        """
        digest = name_digest(name)
        directory = self._index / digest[:2]
        if not directory.is_dir():
            _makedirs(directory)  # once per shard: the first few hundred uploads
        return directory

    # -- the catalog --------------------------------------------------------------------

    def _commit_catalogued(
        self, recording: Recording, tmp: TempFile, size: int, digest: str
    ) -> Stored:
        """:meth:`_commit`, with the catalog's row written after it (marker around both)."""
        if self.catalog is None:
            return self._commit(recording, tmp, size, digest)
        index_dir = self._index_dir(recording.name)
        entry = index_dir / _entry_name(recording.name, recording.recording_id, digest)
        with self._catalog_marker(entry) as marker:
            stored = self._commit(recording, tmp, size, digest)
            if stored.created and not self._catalogue(Path(stored.location)):
                marker["keep"] = True  # the next start-up tries again
        return stored

    @contextmanager
    def _catalog_marker(self, entry: Path) -> Iterator[dict[str, bool]]:
        """A marker naming ``entry`` while the block runs; left behind if the process dies.

        Held under ``flock`` so a start-up in another process leaves a live one alone.
        Not synced: it guards against a killed process, and after a power cut the
        catalog (not synced either) is repaired by ``reindex``. When the block raises,
        it stays only if the entry exists (the commit happened; the next start-up
        writes the row). The block sets ``["keep"]`` to keep it after success too.
        """
        marker = self._uncatalogued / f"{uuid.uuid4().hex}.json"
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _write_all(fd, entry.relative_to(self._index).as_posix().encode("utf-8"))
            state = {"keep": False}
            try:
                yield state
            except BaseException:
                if not entry.exists():
                    marker.unlink(missing_ok=True)
                raise
            if not state["keep"]:
                marker.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def _catalogue(self, final: Path) -> bool:
        """Write the row of the copy at ``final`` from its sidecar; ``False`` if that failed."""
        assert self.catalog is not None
        record = _read_json(final.with_name(final.name + SIDECAR_SUFFIX))
        if record is None:
            return False
        return self.catalog.add_stored(record, str(final)) is not None

    def repair_catalog(self) -> int:
        """Catalogue the copies of uploads that died between their commit and their row.

        Runs at construction (once, in gunicorn's master) and with each housekeeping
        pass (a commit that a dead writer left is finished by :meth:`recover`, which
        runs first). Each marker left in
        ``ROOT/.kzr/uncatalogued`` names an index entry: when it exists, its copy's row is
        written; either way the marker goes (kept only when the catalog cannot be
        written, for the next start). A marker still held by a live writer in another
        process is left alone. Returns how many rows were written.
        """
        if self.catalog is None or not self._uncatalogued.is_dir():
            return 0
        repaired = 0
        for marker in self._uncatalogued.iterdir():
            try:
                fd = os.open(marker, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer's
                entry = os.read(fd, 4096).decode("utf-8", "replace")
                record = _read_json(self._index / entry) if entry else None
                if record is not None and (self.root / record["path"]).is_file():
                    if not self._catalogue(self.root / record["path"]):
                        continue  # keep the marker: the catalog may be back next time
                    repaired += 1
                marker.unlink(missing_ok=True)
            finally:
                os.close(fd)
        if repaired:
            log.warning("catalogued %d upload(s) interrupted between commit and catalog",
                        repaired)
        # Nothing may be held open across gunicorn's fork (start-up runs in the master),
        # nor between housekeeping passes.
        self.catalog.release()
        return repaired

    def records(self) -> Iterator[dict[str, Any]]:
        """Every committed copy's sidecar dict (from the index), with ``location`` added.

        Includes entries whose file was removed by hand (``verify`` reports them). The
        order is the index's, not time.
        """
        for shard in sorted(self._index.iterdir()):
            if not shard.is_dir():
                continue
            for entry in sorted(shard.iterdir()):
                if not entry.name.endswith(".json"):
                    continue
                record = _read_json(entry)
                if record is None or "path" not in record:
                    continue
                record["location"] = str(self.root / record["path"])
                yield record

    def open_copy(self, record: dict[str, Any]) -> IO[bytes]:
        """The stored bytes of the copy a record (from :meth:`records`) describes.

        Raises :class:`~kzr_wsgi.errors.NotFound` when the file is gone.
        """
        path = self.root / record["path"]
        try:
            return open(path, "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            raise NotFound(f"{path} is missing") from None

    def rewrite_record(self, record: dict[str, Any]) -> bool:
        """Replace a copy's sidecar and index entry with ``record`` (``reindex`` adds ``audio``).

        The two are hard links of one file, so both are replaced, atomically each: a
        new file is written and synced, linked twice under temporary names, and both
        names are renamed into place (under the shard's lock, as a commit is). Returns
        ``False`` when the entry no longer names this copy (removed meanwhile).
        """
        name = Name(Kind(record["kind"]), tuple(record["segments"]), record["filename"])
        index_dir = self._index_dir(name)
        entry = index_dir / _entry_name(name, record.get("recording_id"), record["sha256"])
        final = self.root / record["path"]
        sidecar = final.with_name(final.name + SIDECAR_SUFFIX)
        body = dumps({k: v for k, v in record.items() if k != "location"}).encode("utf-8")
        with _full_is_storage_full(), _locked(index_dir / ".lock"):
            current = _read_json(entry)
            if current is None or current.get("path") != record["path"]:
                return False
            with temporary(self._tmp, self.unnamed) as tmp:
                tmp.write(body)
                tmp.sync()
                # Named like the store's temporaries, so a kill here leaves only what
                # the sweep removes.
                staged = [self._tmp / f"{uuid.uuid4().hex}{NAMED_SUFFIX}" for _ in "se"]
                for path in staged:
                    tmp.link(path)
                os.replace(staged[0], sidecar)
                os.replace(staged[1], entry)
            for synced in (sidecar.parent, index_dir):
                _fsync_dir(synced)
        return True

    def discard(self, stored: Stored) -> None:
        """Take back a copy this store committed (a fan-out whose other store failed).

        Removes the index entry (only if it still points at this copy), then the file
        and its sidecar; a copy already gone is not an error.
        """
        final = Path(stored.location)
        sidecar = final.with_name(final.name + SIDECAR_SUFFIX)
        record = _read_json(sidecar)
        if record is None or not final.is_relative_to(self.root):
            return
        name = Name(Kind(record["kind"]), tuple(record["segments"]), record["filename"])
        index_dir = self._index_dir(name)
        entry = index_dir / _entry_name(name, record.get("recording_id"), record["sha256"])
        with _locked(index_dir / ".lock"):
            indexed = _read_json(entry)
            if indexed is not None and indexed.get("path") == record["path"]:
                entry.unlink(missing_ok=True)
                _fsync_dir(index_dir)
                if self.catalog is not None:
                    self.catalog.remove_stored(record)
            final.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
            _fsync_dir(final.parent)

    # -- removing (retention) ---------------------------------------------------------

    @contextmanager
    def index_lock(self, record: Mapping[str, Any]) -> Iterator[None]:
        """Hold the lock that commits of ``record``'s name take (its index shard's ``flock``).

        Inside it no upload of that name commits, so "is this copy still the indexed one?"
        and what is done about it cannot be overtaken by a retry storing it afresh.
        """
        with _locked(self._index_dir(_record_name(record)) / ".lock"):
            yield

    def indexes(self, record: Mapping[str, Any]) -> bool:
        """True when the index entry for ``record``'s name, recording id and sha256 is this copy."""
        entry = self._index_dir(_record_name(record)) / _entry_name(
            _record_name(record), record.get("recording_id"), record["sha256"])
        indexed = _read_json(entry)
        # The same path may have been given to the same recording stored afresh since.
        return indexed is not None and all(
            indexed.get(k) == record.get(k) for k in ("path", "sha256", "received_at"))

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
                return self.remove(record, unindexed=unindexed, locked=True)
        final = self.root / record["path"]
        if not final.is_relative_to(self.root):
            raise ValueError(f"{record['path']!r} is not in this store")
        name = _record_name(record)
        index_dir = self._index_dir(name)
        entry = index_dir / _entry_name(name, record.get("recording_id"), record["sha256"])
        indexed = self.indexes(record)
        if indexed:
            entry.unlink(missing_ok=True)
            _fsync_dir(index_dir)
        if unindexed is not None:
            unindexed()
        sidecar = final.with_name(final.name + SIDECAR_SUFFIX)
        current = _read_json(sidecar)
        if current is not None and all(current.get(k) == record.get(k)
                                       for k in ("path", "sha256", "received_at")):
            # The file first: a sidecar left alone still says whose name this was.
            final.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
            _fsync_dir(final.parent)
        return indexed

    # -- reading ----------------------------------------------------------------------

    def open(self, name: Name, recording_id: str | None = None) -> StoredFile:
        """The copy stored under ``name`` (with ``recording_id`` when given, else the latest)."""
        digest = name_digest(name)
        directory = self._index / digest[:2]
        best: dict[str, Any] | None = None
        try:
            entries = list(directory.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound("no such recording") from None
        for path in entries:
            if not path.name.startswith(digest + "-"):
                continue
            entry = _read_json(path)
            if entry is None:
                continue
            if recording_id is not None and entry.get("recording_id") != recording_id:
                continue
            if best is None or entry.get("received_at", "") > best.get("received_at", ""):
                best = entry
        if best is None:
            raise NotFound("no such recording")
        file_path = self.root / best["path"]
        try:
            fh = open(file_path, "rb")  # noqa: SIM115 - StoredFile owns it
        except FileNotFoundError:
            raise NotFound("no such recording") from None
        st = os.fstat(fh.fileno())
        return StoredFile(
            fileobj=fh,
            size=st.st_size,
            content_type=best.get("content_type")
            or guess_type(name.filename, name.filename.rpartition(".")[2]),
            etag=best["sha256"],
            last_modified=datetime.fromtimestamp(int(st.st_mtime), tz=timezone.utc),
            location=str(file_path),
        )

    def open_stored(self, location: str, sha256: str | None = None) -> StoredFile:
        """The stored copy at ``location`` (a catalog row's: an absolute path, or one
        relative to the root), for serving it back.

        The path must lead to a data file inside the root (symlinks resolved; never
        the store's own state under ``.kzr`` nor a sidecar); anything else, and a file
        that is gone, is :class:`~kzr_wsgi.errors.NotFound`. ``sha256`` becomes the ETag.
        """
        root = self.root.resolve()
        try:
            path = (root / location).resolve(strict=True)
        except (OSError, RuntimeError, ValueError):
            raise NotFound("no such recording") from None
        inside = path.is_relative_to(root) and not path.is_relative_to(root / _STATE)
        if not inside or path.name.endswith(SIDECAR_SUFFIX) or not path.is_file():
            raise NotFound("no such recording")
        try:
            fh = open(path, "rb")  # noqa: SIM115 - StoredFile owns it
        except OSError:
            raise NotFound("no such recording") from None
        st = os.fstat(fh.fileno())
        return StoredFile(
            fileobj=fh,
            size=st.st_size,
            content_type=guess_type(path.name, path.suffix.lstrip(".")),
            etag=sha256 or f"{st.st_size:x}-{st.st_mtime_ns:x}",
            last_modified=datetime.fromtimestamp(int(st.st_mtime), tz=timezone.utc),
            location=str(path),
        )

    # -- housekeeping -----------------------------------------------------------------

    def sweep(self) -> int:
        """Remove named temporary files of writers that died; return how many were removed.

        A file is removed only when no process holds its lock and it is older than
        :attr:`sweep_min_age`: a live writer, in this process or another sharing the
        root, keeps its file. (Unnamed temporary files need no sweep.)
        """
        self._last_sweep = time.monotonic()
        removed = sweep_named(self._tmp, self.sweep_min_age)
        if removed:
            log.warning("removed %d temporary file(s) left by writers that died", removed)
        return removed

    def recover(self) -> int:
        """Finish or drop the commits of writers that died mid-commit; return how many.

        Looks only at pending markers (as many as commits were in flight), each under
        its shard's lock: a live writer holds that lock for its whole commit, so a
        marker seen under it is a dead writer's.
        """
        finished = 0
        for marker in self._pending.iterdir():
            if not _ENTRY_NAME.fullmatch(marker.name):
                continue
            index_dir = self._index / marker.name[:2]
            _makedirs(index_dir)
            with _locked(index_dir / ".lock"):
                if self._finish_pending(index_dir / marker.name) is not None:
                    finished += 1
        return finished

    def housekeep(self) -> None:
        """What a serving process runs every :attr:`sweep_every` seconds: recover, sweep."""
        self.recover()
        self.sweep()
        self.repair_catalog()


class _Housekeeper:
    """One daemon thread per process running every live store's :meth:`housekeep`.

    Started with the first store, and again in a forked child (gunicorn's workers),
    where threads do not survive the fork. Holds the stores weakly. A fork waits for
    a housekeeping pass to end: a child must not inherit a shard lock's descriptor
    mid-pass (a lock it would then hold forever).
    """

    def __init__(self) -> None:
        self.stores: weakref.WeakSet[DirectoryStore] = weakref.WeakSet()
        self.lock = threading.Lock()
        self.busy = threading.Lock()
        self.thread: threading.Thread | None = None

    def add(self, store: DirectoryStore) -> None:
        with self.lock:
            self.stores.add(store)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="kzr-housekeeper",
                                               daemon=True)
                self.thread.start()

    def before_fork(self) -> None:
        self.busy.acquire()

    def after_fork_in_parent(self) -> None:
        self.busy.release()

    def after_fork_in_child(self) -> None:
        self.lock = threading.Lock()
        self.busy = threading.Lock()
        self.thread = None
        stores = list(self.stores)
        if stores:
            self.add(stores[0])

    def _run(self) -> None:
        while True:
            time.sleep(0.5)
            with self.lock:
                stores = list(self.stores)
            for store in stores:
                every = store.sweep_every
                if every is None or time.monotonic() - store._last_sweep < every:
                    continue
                if not store._pending.parent.is_dir():
                    # The store's directory was removed (a test's temporary root, an
                    # unmounted disk): nothing of it is left to sweep.
                    with self.lock:
                        self.stores.discard(store)
                    continue
                with self.busy:
                    try:
                        store.housekeep()
                    except Exception:  # a full or vanished disk: say so, try again later
                        store._last_sweep = time.monotonic()
                        log.exception("housekeeping of %r failed", store)


_HOUSEKEEPER = _Housekeeper()
os.register_at_fork(before=_HOUSEKEEPER.before_fork,
                    after_in_parent=_HOUSEKEEPER.after_fork_in_parent,
                    after_in_child=_HOUSEKEEPER.after_fork_in_child)


@contextmanager
def _full_is_storage_full() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL:
            raise StorageFull("no space left on the store") from exc
        raise


def _link_replacing(tmp: TempFile, target: Path) -> None:
    """Give ``tmp`` the name ``target``, replacing a stale file there."""
    try:
        tmp.link(target)
    except FileExistsError:
        target.unlink(missing_ok=True)
        tmp.link(target)


def copy_to_disk(stream: Any, fd: int, length: int | None = None) -> tuple[int, str]:
    """Copy ``stream`` to the file ``fd`` in large blocks; return its size and sha256.

    The stream is read with ``readinto`` into reused buffers (a
    :class:`~kzr_wsgi.body.Body` under the embedded server fills them straight from the
    socket), so no block is allocated or copied on the way. Bodies over
    :data:`_PIPELINE_MIN` (or of unknown length) run as a pipeline: this thread reads
    from the client while one thread hashes the block before and another writes the one
    before that (hashlib and ``os.write`` release the GIL on large buffers, so the three
    overlap); :data:`_PIPE_BUFFERS` buffers circulate, so memory stays bounded. Every
    :data:`_WRITEBACK_EVERY` bytes the writer asks the kernel to start writing back what
    it has (``POSIX_FADV_DONTNEED`` starts writeback without waiting for it), so the
    final ``fsync`` has little left to wait for.
    """
    readinto = readinto_of(stream)
    if length is not None and length <= _PIPELINE_MIN:
        sha = hashlib.sha256()
        size = 0
        with _POOL.lease() as buffer:
            view = memoryview(buffer)
            while n := readinto(buffer):
                sha.update(view[:n])
                _write_all(fd, view[:n])
                size += n
        return size, sha.hexdigest()
    return _Pipeline(fd).run(readinto)


#: Bodies up to this size are copied in the request's thread (threads cost more).
_PIPELINE_MIN = 8 << 20
#: How often the writer starts the disk's writeback: small enough that the final sync
#: has little left to wait for (4 MiB measured faster than 16 and 8 for 173 MB, and no
#: slower than 2 or 1).
_WRITEBACK_EVERY = 4 << 20
#: Buffers circulating in one pipeline (one being read, the rest hashed or written).
_PIPE_BUFFERS = 4


class _BufferPool:
    """Spare :data:`~kzr_wsgi.body.BLOCK_SIZE` buffers, kept between uploads.

    A fresh 1 MiB buffer costs page faults (and zeroing) on every upload; at most
    ``keep`` spares are kept, so a burst of concurrent uploads does not pin memory.
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._spare: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self) -> bytearray:
        with self._lock:
            if self._spare:
                return self._spare.pop()
        return bytearray(BLOCK_SIZE)

    def give(self, buffer: bytearray) -> None:
        with self._lock:
            if len(self._spare) < self.keep:
                self._spare.append(buffer)

    @contextmanager
    def lease(self) -> Iterator[bytearray]:
        buffer = self.take()
        try:
            yield buffer
        finally:
            self.give(buffer)


_POOL = _BufferPool(keep=2 * _PIPE_BUFFERS)

#: A filled buffer and how many of its bytes count; ``None`` ends a stage.
_Block = tuple[bytearray, int]


class _Stage(threading.Thread):
    """Does ``work`` on each block, then hands it on to ``out``; ``None`` ends it."""

    def __init__(
        self,
        work: Callable[[memoryview], object],
        pipeline: _Pipeline,
        out: queue.SimpleQueue[_Block | None],
        forward_end: bool,
    ) -> None:
        super().__init__(name="kzr-copy", daemon=True)
        self.queue: queue.SimpleQueue[_Block | None] = queue.SimpleQueue()
        self.work = work
        self.pipeline = pipeline
        self.out = out
        self.forward_end = forward_end

    def run(self) -> None:
        # After an error the blocks still travel on (unworked), so every buffer gets
        # back to the reader, which then sees the error and stops.
        while (block := self.queue.get()) is not None:
            if self.pipeline.error is None:
                try:
                    self.work(memoryview(block[0])[: block[1]])
                except BaseException as exc:  # handed to the reader, which raises it
                    self.pipeline.error = exc
            self.out.put(block)
        if self.forward_end:
            self.out.put(None)


class _Pipeline:
    """Reader (the calling thread) -> hasher thread -> writer thread -> back to the reader."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.error: BaseException | None = None
        self.sha = hashlib.sha256()
        self.size = 0
        self.synced = 0

    def run(self, readinto: Callable[[bytearray], int]) -> tuple[int, str]:
        free: queue.SimpleQueue[_Block | None] = queue.SimpleQueue()
        buffers = [_POOL.take() for _ in range(_PIPE_BUFFERS)]
        for buffer in buffers:
            free.put((buffer, 0))
        writer = _Stage(self._write, self, free, forward_end=False)
        hasher = _Stage(self.sha.update, self, writer.queue, forward_end=True)
        writer.start()
        hasher.start()
        try:
            while self.error is None:
                block = free.get()
                assert block is not None  # only buffers travel on the free queue
                n = readinto(block[0])
                if not n:
                    break
                hasher.queue.put((block[0], n))
        finally:
            # Whatever happened to the reader, let both stages end before leaving.
            hasher.queue.put(None)
            hasher.join()
            writer.join()
            for buffer in buffers:
                _POOL.give(buffer)
        if self.error is not None:
            raise self.error
        return self.size, self.sha.hexdigest()

    def _write(self, block: memoryview) -> None:
        _write_all(self.fd, block)
        self.size += len(block)
        if self.size - self.synced >= _WRITEBACK_EVERY:
            os.posix_fadvise(self.fd, self.synced, self.size - self.synced, os.POSIX_FADV_DONTNEED)
            self.synced = self.size


def _write_all(fd: int, block: bytes | memoryview) -> None:
    view = memoryview(block)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _entry_name(name: Name, recording_id: str | None, digest: str) -> str:
    """``<name digest>-<recording_id digest>-<body sha256>.json``: one per stored copy."""
    rid = hashlib.sha256((recording_id or "").encode("utf-8", "surrogateescape")).hexdigest()
    return f"{name_digest(name)}-{rid[:16]}-{digest}.json"


def _record_name(record: Mapping[str, Any]) -> Name:
    return Name(Kind(record["kind"]), tuple(record["segments"]), record["filename"])


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _makedirs(directory: Path) -> None:
    """Create ``directory`` and its parents durably (each new entry's parent fsync-ed)."""
    if directory.is_dir():
        return
    missing = []
    d = directory
    while not d.exists():
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno in _FULL:
                raise StorageFull("no space left on the store") from exc
            raise
        _fsync_dir(d.parent)


def _make_shards(index: Path) -> None:
    """Create the index's 256 shard directories at once, with one sync for them all.

    Made on demand, each new shard cost a sync of its own during a fresh store's first
    few hundred uploads.
    """
    made = False
    for n in range(256):
        try:
            (index / f"{n:02x}").mkdir()
            made = True
        except FileExistsError:
            pass
    if made:
        _fsync_dir(index)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
