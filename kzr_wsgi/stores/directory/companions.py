"""Files the disk store keeps beside a copy, part of it: its analysis and its waveform.

``<file>.kzr.analysis.json`` and ``<file>.kzr.peaks.json`` (the endings are
:data:`~kzr_wsgi.naming.COMPANION_SUFFIXES`) sit beside the data file and its sidecar.
They are written under the lock of the copy's index shard, the lock commits and
removals of its name take, and only while the index entry names the copy: so a file
can never be written beside a copy a prune or an erase has already removed (the removal
holds the same lock and takes the companions with the data file,
:func:`~kzr_wsgi.stores.directory.changing.remove`). Each is written whole and synced
under a temporary name, then renamed into place: a reader sees the old file or the new
one, never half of one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import NotFound
from ...naming import COMPANION_SUFFIXES
from ..tempfiles import NAMED_SUFFIX, temporary
from .files import Places, fsync_dir, full_is_storage_full, locked, read_json


def check_suffix(suffix: str) -> None:
    """Refuse an ending that is not a companion file's (a program's mistake)."""
    if suffix not in COMPANION_SUFFIXES:
        raise ValueError(f"{suffix!r} is not a companion file's ending "
                         f"({', '.join(COMPANION_SUFFIXES)})")


def put(places: Places, unnamed: bool, record: Mapping[str, Any],
        files: Mapping[str, bytes]) -> bool:
    """Write ``files`` (ending -> bytes) beside the copy ``record`` names; ``False`` when
    its index entry is gone (the recording was removed: nothing is written)."""
    for suffix in files:
        check_suffix(suffix)
    entry = places.entry(record)
    with full_is_storage_full(), locked(entry.parent / ".lock"):
        final = _indexed_file(places, entry)
        if final is None:
            return False
        for suffix, data in files.items():
            with temporary(places.tmp, unnamed) as tmp:
                tmp.write(data)
                tmp.sync()
                # Named like the store's temporaries, so a kill between the link and
                # the rename leaves only what the reaper removes.
                staged = places.tmp / f"{uuid.uuid4().hex}{NAMED_SUFFIX}"
                tmp.link(staged)
                os.replace(staged, final.with_name(final.name + suffix))
        fsync_dir(final.parent)
    return True


def get(places: Places, record: Mapping[str, Any], suffix: str) -> bytes:
    """The companion file ``suffix`` of the copy ``record`` names; :class:`NotFound` when
    the copy or the file is not there."""
    check_suffix(suffix)
    final = _indexed_file(places, places.entry(record))
    if final is None:
        raise NotFound("no such recording")
    try:
        return final.with_name(final.name + suffix).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"no {suffix} beside the recording") from None


def remove(final: Path) -> None:
    """Unlink every companion file beside the data file ``final`` (those absent too)."""
    for suffix in COMPANION_SUFFIXES:
        final.with_name(final.name + suffix).unlink(missing_ok=True)


def _indexed_file(places: Places, entry: Path) -> Path | None:
    """The data file ``entry`` names, when the entry and the file are there."""
    indexed = read_json(entry)
    if indexed is None or "path" not in indexed:
        return None
    final: Path = places.root / str(indexed["path"])
    if not final.is_relative_to(places.root) or not final.is_file():
        return None
    return final
