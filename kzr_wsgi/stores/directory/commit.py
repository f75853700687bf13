"""The disk store's commit: a written temporary file becomes a stored copy.

Under the lock of the name's index shard: an existing copy of the same upload is found
(a retry), or a dead writer's placement of it is finished
(:func:`~kzr_wsgi.stores.directory.markers.finish_pending`), or the upload's marker is
written, the file linked into place under a free name, and the sidecar and index entry
(one file, two names) put beside it; then, outside the lock, the catalog row, and the
marker goes. Each step has a crash point (:mod:`kzr_wsgi.faults`); which syncs make it
durable, and in which order, is :mod:`~kzr_wsgi.stores.syncing`'s.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from . import markers
from .files import entry_name, fsync_dir, link_replacing, locked, makedirs, read_json

if TYPE_CHECKING:
    from . import DirectoryStore


def commit_upload(store: DirectoryStore, recording: Recording, tmp: TempFile, size: int,
                  digest: str) -> Stored:
    """Place ``tmp``, index it and catalogue it, its marker around all three.

    The marker goes under the shard's lock when there is no catalog; otherwise after
    the row, written outside the lock (a slow catalog holds up no other commit).
    When the row cannot be written the marker stays for a later pass.
    """
    index_dir = store._index_dir(recording.name)
    entry = index_dir / entry_name(recording.name, recording.recording_id, digest)
    with locked(index_dir / ".lock"):
        existing = indexed(store.root, entry)
        if existing is not None:
            return existing
        # This very upload, placed by a writer that died mid-commit: finish that
        # commit rather than place a second copy.
        adopted = markers.finish_pending(store, entry)
        if adopted is not None:
            return adopted
        directory = store.root / render_layout(store.layout, layout_fields(recording))
        makedirs(directory)
        record, marker = place(store, recording, tmp, directory, entry, size, digest)
        try:
            final = store.root / record["path"]
            write_record(store, record, final, entry)
            if not store.one_sync:
                for synced in (directory, index_dir):
                    fsync_dir(synced)
            if store.catalog is None:
                marker.remove()
        except BaseException:
            marker.release()  # left for recovery
            raise
    if store.catalog is not None:
        # Still held: a start-up or housekeeping pass elsewhere leaves it alone.
        with marker:  # released on the way out: kept if the row was not written
            if store._catalogue(final):
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


def place(store: DirectoryStore, recording: Recording, tmp: TempFile, directory: Path,
          entry: Path, size: int, digest: str) -> tuple[dict[str, Any], markers.Marker]:
    """Mark, then link ``tmp`` into ``directory`` under the first free name.

    Returns its record and its marker (held). The marker is (re)written for each
    name tried before trying it, so whenever a placed file exists its marker says
    where and which inode it is.
    """
    component = safe_component(recording.filename)
    dev, ino = tmp.identity()
    marker: markers.Marker | None = None
    n = 1
    try:
        while True:
            final = directory / with_suffix(component, n)
            n += 1
            if os.path.lexists(final):
                continue
            record = new_record(recording, final.relative_to(store.root).as_posix(),
                                size, digest)
            if marker is not None:
                marker.release()  # the previous name tried: replaced just below
            # "row": whether this upload's catalog row is still owed (so a store
            # opened without the catalog leaves the marker to one with it).
            marker_doc = {"record": record, "dev": dev, "ino": ino,
                          "row": store.catalog is not None}
            # Compact: only the store reads it, and json's indenting encoder is pure
            # Python (a third of a millisecond per upload for this document).
            data = json.dumps(marker_doc, ensure_ascii=True, sort_keys=True,
                              default=str).encode("utf-8")
            marker = markers.Marker.write(store._tmp, store.unnamed,
                                          store._pending / entry.name, data)
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


def write_record(store: DirectoryStore, record: dict[str, Any], final: Path,
                 entry: Path) -> None:
    """Put the sidecar beside ``final`` and the index entry in place: one file, two names.

    All names are put in place first and synced after. With ``one_sync`` that sync
    is the commit's only one: it commits the journal transaction holding every name
    and allocation made since the body was written back (see
    :mod:`~kzr_wsgi.stores.syncing`); the sidecar's own bytes are written back before
    its names exist, so a visible sidecar is never empty.
    """
    sidecar = final.with_name(final.name + SIDECAR_SUFFIX)
    with temporary(store._tmp, store.unnamed) as tmp:
        tmp.write(dumps(record).encode("utf-8"))
        if store.one_sync:
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
