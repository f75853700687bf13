"""Changing committed copies of the disk store: rewritten (``reindex``), discarded (a
fan-out taking back a copy), removed for good (retention).

Each runs under the lock of the copy's index shard, as a commit does, and first checks
that the index entry still names this copy (a retry may have stored the same name
afresh meanwhile). Plain functions over the store's
:class:`~kzr_wsgi.stores.directory.files.Places` (and, where a row goes too, its catalog).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ...catalog import Catalog
from ...metadata import dumps
from ...naming import SIDECAR_SUFFIX
from ...recording import Stored
from ..tempfiles import NAMED_SUFFIX, temporary
from . import companions
from .files import Places, fsync_dir, full_is_storage_full, locked, read_json

#: What identifies one stored copy of a name: a later copy under the same path differs.
_SAME_COPY = ("path", "sha256", "received_at")


def rewrite_record(places: Places, unnamed: bool, record: dict[str, Any]) -> bool:
    """Replace a copy's sidecar and index entry (two names of one file) with ``record``.

    A new file is written and synced, linked twice under temporary names, and both
    names are renamed into place, atomically each. ``False`` when the entry no longer
    names this copy.
    """
    entry = places.entry(record)
    final = places.root / record["path"]
    sidecar = final.with_name(final.name + SIDECAR_SUFFIX)
    body = dumps({k: v for k, v in record.items() if k != "location"}).encode("utf-8")
    with full_is_storage_full(), locked(entry.parent / ".lock"):
        current = read_json(entry)
        if current is None or current.get("path") != record["path"]:
            return False
        with temporary(places.tmp, unnamed) as tmp:
            tmp.write(body)
            tmp.sync()
            # Named like the store's temporaries, so a kill here leaves only what
            # the reaper removes.
            staged = [places.tmp / f"{uuid.uuid4().hex}{NAMED_SUFFIX}" for _ in "se"]
            for path in staged:
                tmp.link(path)
            os.replace(staged[0], sidecar)
            os.replace(staged[1], entry)
        for synced in (sidecar.parent, entry.parent):
            fsync_dir(synced)
    return True


def discard(places: Places, catalog: Catalog | None, stored: Stored) -> None:
    """Remove the index entry (if still this copy's, with its catalog row), file and sidecar."""
    final = Path(stored.location)
    sidecar = final.with_name(final.name + SIDECAR_SUFFIX)
    record = read_json(sidecar)
    if record is None or not final.is_relative_to(places.root):
        return
    entry = places.entry(record)
    with locked(entry.parent / ".lock"):
        indexed = read_json(entry)
        if indexed is not None and indexed.get("path") == record["path"]:
            entry.unlink(missing_ok=True)
            fsync_dir(entry.parent)
            if catalog is not None:
                catalog.remove_stored(record)
        final.unlink(missing_ok=True)
        companions.remove(final)
        sidecar.unlink(missing_ok=True)
        fsync_dir(final.parent)


def indexes(places: Places, record: Mapping[str, Any]) -> bool:
    """True when the index entry for ``record``'s name, recording id and sha256 is this copy."""
    indexed = read_json(places.entry(record))
    # The same path may have been given to the same recording stored afresh since.
    return indexed is not None and all(indexed.get(k) == record.get(k) for k in _SAME_COPY)


def remove(places: Places, record: Mapping[str, Any],
           unindexed: Callable[[], None] | None) -> bool:
    """Retention's removal, the shard's lock held: entry, ``unindexed()``, the file, its
    companion files (analysis, waveform), its sidecar.

    Each step is durable before the next and tolerates having been done already.
    """
    final = places.root / record["path"]
    if not final.is_relative_to(places.root):
        raise ValueError(f"{record['path']!r} is not in this store")
    entry = places.entry(record)
    indexed = indexes(places, record)
    if indexed:
        entry.unlink(missing_ok=True)
        fsync_dir(entry.parent)
    if unindexed is not None:
        unindexed()
    sidecar = final.with_name(final.name + SIDECAR_SUFFIX)
    current = read_json(sidecar)
    if current is not None and all(current.get(k) == record.get(k) for k in _SAME_COPY):
        # The file first, the sidecar last: a sidecar left alone still says whose name
        # this was, so a removal cut short is finished by running it again.
        final.unlink(missing_ok=True)
        companions.remove(final)
        sidecar.unlink(missing_ok=True)
        fsync_dir(final.parent)
    return indexed
