"""An upload's one marker, and the recovery that finishes what a dead writer left.

Before a :class:`~kzr_wsgi.stores.directory.DirectoryStore` places a file it writes a
marker ``ROOT/.kzr/pending/<entry name>``: the record the commit will write, and the
device and inode of the file it will place. Its writer holds an ``flock`` on it from
before it has a name until it is removed: under the shard's lock once the index entry
is written when the store has no catalog, else once the copy's catalog row is written
(outside the shard's lock). A writer that dies leaves the marker with no lock held;
:func:`finish_pending` then completes the commit from it (sidecar, index entry, row)
or, when its file never got placed, drops it. It runs at start-up, with each
housekeeping pass (:func:`recover`) and in a retry's own commit.

Stores before the one-marker commit also wrote ``ROOT/.kzr/uncatalogued/<uuid>.json``
(an index entry's relative name) around each commit and its row; :func:`repair_legacy`
still reads those, so a root left by such a store after a crash is repaired.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ...recording import Stored
from ..tempfiles import temporary
from . import commit
from .files import ENTRY_NAME, fsync_dir, locked, makedirs, read_json

if TYPE_CHECKING:
    from . import DirectoryStore

log = logging.getLogger("kzr_wsgi.store")


class Marker:
    """An upload's marker: its path, and the descriptor whose ``flock`` says its holder is
    alive (``None`` once released: the file stays for recovery)."""

    __slots__ = ("path", "fd")

    def __init__(self, path: Path, fd: int | None) -> None:
        #: Where the marker is: ``ROOT/.kzr/pending/<entry name>``.
        self.path = path
        #: The locked descriptor, while this process holds the marker.
        self.fd = fd

    @classmethod
    def write(cls, tmp_dir: Path, unnamed: bool, path: Path, data: bytes) -> Marker:
        """Put a marker holding ``data`` at ``path`` (replacing one), locked before named.

        Written whole before it gets its name, so a reader never sees half of one; not
        synced (the store's module docstring says why that is enough).
        """
        with temporary(tmp_dir, unnamed) as tmp:
            tmp.write(data)
            fd = os.dup(tmp.fd)  # outlives the temporary's own descriptor
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                path.unlink(missing_ok=True)  # a name tried before, or a dead writer's
                tmp.link(path)
            except BaseException:
                os.close(fd)
                raise
        return cls(path, fd)

    @classmethod
    def claim(cls, path: Path) -> Marker | None:
        """The marker at ``path``, locked by us; ``None`` if absent or its writer lives."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(path, fd)

    def remove(self) -> None:
        """Unlink the marker (only if the name is still this one's) and let it go.

        A retry that found the index entry gone (a copy removed by hand) may have put
        its own marker under the same name meanwhile: that one is left alone.
        """
        if self.fd is None:
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        mine = os.fstat(self.fd)
        if st is not None and (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
            self.path.unlink(missing_ok=True)
        self.release()

    def release(self) -> None:
        """Let the marker go, leaving its file (a later pass finishes its upload)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> Marker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def finish_pending(store: DirectoryStore, entry: Path) -> Stored | None:
    """Finish the upload a dead writer left at ``entry``'s marker; hold the shard's lock.

    Returns the copy when its file was placed (now indexed and, when the catalog takes
    the row, catalogued), ``None`` when there was no marker, a live writer holds it
    (past its commit, writing the row), or its file never got placed (the marker is
    dropped). The marker stays when the row cannot be written, and when the store has
    no catalog but the marker's writer owed a row to one (a store opened with it will
    write it).
    """
    held = Marker.claim(store._pending / entry.name)
    if held is None:
        return None
    with held:
        marker = read_json(held.path)
        if marker is None:
            held.remove()  # unreadable: nothing of it was placed
            return None
        record = marker["record"]
        final = store.root / record["path"]
        try:
            st = os.stat(final)
        except FileNotFoundError:
            st = None
        if st is None or (st.st_dev, st.st_ino, st.st_size) != (
                marker["dev"], marker["ino"], record["size"]):
            # Killed before the link (or the name went to another upload): nothing of
            # this upload is visible, and the retry stores it afresh.
            held.remove()
            return None
        committed = commit.indexed(store.root, entry) is not None
        if not committed:
            commit.write_record(store, record, final, entry)
            for synced in (final.parent, entry.parent):
                fsync_dir(synced)
            log.warning("finished the commit of %s left by a writer that died", final)
        if store.catalog is not None:
            if store._catalogue(final):
                if committed:
                    log.warning("catalogued %s, left without its row by a writer that died",
                                final)
                held.remove()  # else kept: the catalog may take the row next time
        elif not marker.get("row"):
            held.remove()
        return Stored(str(final), record["size"], record["sha256"], created=True)


def recover(store: DirectoryStore) -> int:
    """Finish or drop the uploads of writers that died in them; return how many finished.

    Looks only at the markers (as many as uploads were in flight), each under its
    shard's lock and its own: a live writer holds the shard's lock for its whole commit
    and the marker's until its row is written, so a marker free of both is a dead
    writer's.
    """
    finished = 0
    for marker in store._pending.iterdir():
        if not ENTRY_NAME.fullmatch(marker.name):
            continue
        index_dir = store._index / marker.name[:2]
        makedirs(index_dir)
        with locked(index_dir / ".lock"):
            if finish_pending(store, index_dir / marker.name) is not None:
                finished += 1
    if store.catalog is not None:
        store.catalog.release()  # nothing held between passes, nor across a fork
    return finished


def repair_legacy(store: DirectoryStore, directory: Path) -> int:
    """Catalogue the copies named by the markers in ``directory`` (``.kzr/uncatalogued``).

    Each names an index entry: when it exists, its copy's row is written; either way
    the marker goes (kept only when the catalog cannot be written, for the next pass).
    A marker still held by a live writer in another process is left alone. Returns
    how many rows were written.
    """
    catalog = store.catalog
    if catalog is None:
        return 0
    repaired = 0
    if directory.is_dir():
        for marker in directory.iterdir():
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
                record = read_json(store._index / entry) if entry else None
                if record is not None and (store.root / record["path"]).is_file():
                    if not store._catalogue(store.root / record["path"]):
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
    catalog.release()
    return repaired
