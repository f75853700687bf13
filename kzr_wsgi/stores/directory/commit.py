"""The disk store's commit steps: a written temporary file becomes a stored copy.

The one module both the commit (:func:`commit_upload`) and crash recovery
(:func:`finish_pending`, run by :mod:`~kzr_wsgi.stores.directory.markers`) take their
steps from. Under the lock of the name's index shard: an existing copy of the same
upload is found (a retry, :func:`indexed`), or a dead writer's placement of it is
finished (:func:`finish_pending`), or the upload's :class:`Marker` is written, the file
linked into place under a free name (:func:`place`), and the sidecar and index entry
(one file, two names) put beside it (:func:`write_record`); then, outside the lock, the
catalog row, and the marker goes. Each step has a crash point (:mod:`kzr_wsgi.faults`);
which syncs make it durable, and in which order, is :mod:`~kzr_wsgi.stores.syncing`'s.

The marker ``ROOT/.kzr/pending/<entry name>`` holds the record the commit will write
and the device and inode of the file it will place. Its writer holds an ``flock`` on it
from before it has a name until it is removed: under the shard's lock once the index
entry is written when the store has no catalog, else once the copy's catalog row is
written (outside the shard's lock). A writer that dies leaves the marker with no lock
held, and :func:`finish_pending` completes the commit from it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...faults import crash_point
from ...metadata import dumps
from ...naming import (
    SIDECAR_SUFFIX,
    content_type_for,
    layout_fields,
    render_layout,
    safe_component,
    with_suffix,
)
from ...recording import Recording, Stored
from ..syncing import write_back
from ..tempfiles import TempFile, temporary
from .files import Places, entry_name, fsync_dir, link_replacing, locked, makedirs, read_json

log = logging.getLogger("kzr_wsgi.store")


@dataclass(frozen=True)
class Committing:
    """What a commit and its recovery need of a disk store, handed to them by the store."""

    places: Places
    #: The layout template of the store's directories.
    layout: str
    #: Whether temporary files are unnamed (``O_TMPFILE``).
    unnamed: bool
    #: Whether a commit ends in one ``fsync`` (see :mod:`~kzr_wsgi.stores.syncing`).
    one_sync: bool
    #: Writes the row of the copy at a path from its sidecar, ``False`` when it could not;
    #: ``None`` when the store keeps no catalog.
    catalogue: Callable[[Path], bool] | None


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


def commit_upload(c: Committing, recording: Recording, tmp: TempFile, size: int,
                  digest: str) -> Stored:
    """Place ``tmp``, index it and catalogue it, its marker around all three.

    The marker goes under the shard's lock when there is no catalog; otherwise after
    the row, written outside the lock (a slow catalog holds up no other commit).
    When the row cannot be written the marker stays for a later pass.
    """
    index_dir = c.places.shard(recording.name)
    entry = index_dir / entry_name(recording.name, recording.recording_id, digest)
    with locked(index_dir / ".lock"):
        existing = indexed(c.places.root, entry)
        if existing is not None:
            return existing
        # This very upload, placed by a writer that died mid-commit: finish that
        # commit rather than place a second copy.
        adopted = finish_pending(c, entry)
        if adopted is not None:
            return adopted
        directory = c.places.root / render_layout(c.layout, layout_fields(recording))
        makedirs(directory)
        record, marker = place(c, recording, tmp, directory, entry, size, digest)
        try:
            final = c.places.root / record["path"]
            write_record(c, record, final, entry)
            if not c.one_sync:
                for synced in (directory, index_dir):
                    fsync_dir(synced)
            if c.catalogue is None:
                marker.remove()
        except BaseException:
            marker.release()  # left for recovery
            raise
    if c.catalogue is not None:
        # Still held: a start-up or upkeep pass elsewhere leaves it alone.
        with marker:  # released on the way out: kept if the row was not written
            if c.catalogue(final):
                marker.remove()
    return Stored(str(final), size, digest, created=True)


def indexed(root: Path, entry: Path) -> Stored | None:
    """The copy ``entry`` names, if the entry exists and its file is still there."""
    existing = read_json(entry)
    if existing is None:
        return None
    path = root / existing["path"]
    if path.is_file() and path.stat().st_size == existing["size"]:
        return Stored(str(path), existing["size"], existing["sha256"], created=False)
    return None  # the indexed copy was removed by hand: store this one afresh


def place(c: Committing, recording: Recording, tmp: TempFile, directory: Path,
          entry: Path, size: int, digest: str) -> tuple[dict[str, Any], Marker]:
    """Mark, then link ``tmp`` into ``directory`` under the first free name.

    Returns its record and its marker (held). The marker is (re)written for each
    name tried before trying it, so whenever a placed file exists its marker says
    where and which inode it is.
    """
    component = safe_component(recording.filename)
    dev, ino = tmp.identity()
    marker: Marker | None = None
    n = 1
    try:
        while True:
            final = directory / with_suffix(component, n)
            n += 1
            if os.path.lexists(final):
                continue
            record = new_record(recording, final.relative_to(c.places.root).as_posix(),
                                size, digest)
            if marker is not None:
                marker.release()  # the previous name tried: replaced just below
            # "row": whether this upload's catalog row is still owed (so a store
            # opened without the catalog leaves the marker to one with it).
            marker_doc = {"record": record, "dev": dev, "ino": ino,
                          "row": c.catalogue is not None}
            # Compact: only the store reads it, and json's indenting encoder is pure
            # Python (a third of a millisecond per upload for this document).
            data = json.dumps(marker_doc, ensure_ascii=True, sort_keys=True,
                              default=str).encode("utf-8")
            marker = Marker.write(c.places.tmp, c.unnamed, c.places.pending / entry.name,
                                  data)
            crash_point("dir.marked")
            try:
                tmp.link(final)
            except FileExistsError:
                continue  # taken since the check: another name, another marker
            crash_point("dir.placed")
            return record, marker
    except BaseException:
        if marker is not None:
            marker.release()
        raise


def write_record(c: Committing, record: dict[str, Any], final: Path, entry: Path) -> None:
    """Put the sidecar beside ``final`` and the index entry in place: one file, two names.

    All names are put in place first and synced after. With ``one_sync`` that sync
    is the commit's only one: it commits the journal transaction holding every name
    and allocation made since the body was written back (see
    :mod:`~kzr_wsgi.stores.syncing`); the sidecar's own bytes are written back before
    its names exist, so a visible sidecar is never empty.
    """
    sidecar = final.with_name(final.name + SIDECAR_SUFFIX)
    with temporary(c.places.tmp, c.unnamed) as tmp:
        tmp.write(dumps(record).encode("utf-8"))
        if c.one_sync:
            write_back(tmp.fd)
        link_replacing(tmp, sidecar)  # a stale sidecar of a file removed by hand
        crash_point("dir.sidecar")
        link_replacing(tmp, entry)  # a stale entry whose file was removed
        crash_point("dir.indexed")
        tmp.sync()


def new_record(recording: Recording, relative: str, size: int, digest: str) -> dict[str, Any]:
    """The sidecar dict of ``recording`` stored at ``relative`` (to the root)."""
    return {
        **recording.describe(),
        "content_type": content_type_for(recording),
        "size": size,
        "sha256": digest,
        "path": relative,
    }


def finish_pending(c: Committing, entry: Path) -> Stored | None:
    """Finish the upload a dead writer left at ``entry``'s marker; hold the shard's lock.

    Returns the copy when its file was placed (now indexed and, when the catalog takes
    the row, catalogued), ``None`` when there was no marker, a live writer holds it
    (past its commit, writing the row), or its file never got placed (the marker is
    dropped). The marker stays when the row cannot be written, and when the store has
    no catalog but the marker's writer owed a row to one (a store opened with it will
    write it).
    """
    held = Marker.claim(c.places.pending / entry.name)
    if held is None:
        return None
    with held:
        marker = read_json(held.path)
        if marker is None:
            held.remove()  # unreadable: nothing of it was placed
            return None
        record = marker["record"]
        final = c.places.root / record["path"]
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
        committed = indexed(c.places.root, entry) is not None
        if not committed:
            write_record(c, record, final, entry)
            for synced in (final.parent, entry.parent):
                fsync_dir(synced)
            log.warning("finished the commit of %s left by a writer that died", final)
        if c.catalogue is not None:
            if c.catalogue(final):
                if committed:
                    log.warning("catalogued %s, left without its row by a writer that died",
                                final)
                held.remove()  # else kept: the catalog may take the row next time
        elif not marker.get("row"):
            held.remove()
        return Stored(str(final), record["size"], record["sha256"], created=True)
