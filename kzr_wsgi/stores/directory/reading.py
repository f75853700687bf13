"""Reading the disk store back: by name (the Kazoo-facing GET), by location (the search
page's player and downloads), and every copy's record (``reindex``, ``verify``).

Plain functions over the store's root and index directory (its
:class:`~kzr_wsgi.stores.directory.files.Places`); what they open is handed to the caller,
who closes it. A file that is gone is :class:`~kzr_wsgi.errors.NotFound`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ...errors import NotFound
from ...naming import COMPANION_SUFFIXES, SIDECAR_SUFFIX, STATE_DIR, guess_type, name_digest
from ...recording import Name, StoredFile
from .files import Places, read_json


def open_named(places: Places, name: Name, recording_id: str | None) -> StoredFile:
    """The copy indexed under ``name`` (with ``recording_id`` when given, else the latest)."""
    digest = name_digest(name)
    directory = places.index / digest[:2]
    best: dict[str, Any] | None = None
    try:
        entries = list(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound("no such recording") from None
    for path in entries:
        if not path.name.startswith(digest + "-"):
            continue
        entry = read_json(path)
        if entry is None:
            continue
        if recording_id is not None and entry.get("recording_id") != recording_id:
            continue
        if best is None or entry.get("received_at", "") > best.get("received_at", ""):
            best = entry
    if best is None:
        raise NotFound("no such recording")
    return _opened(places.root / best["path"],
                   best.get("content_type")
                   or guess_type(name.filename, name.filename.rpartition(".")[2]),
                   best["sha256"])


def open_stored(root: Path, location: str, sha256: str | None = None) -> StoredFile:
    """The data file at ``location`` (absolute, or relative to ``root``), confined to it.

    The path must lead to a data file inside the root (symlinks resolved; never the
    store's own state under ``.kzr``, a sidecar nor a companion file); anything else,
    and a file that is gone, is :class:`~kzr_wsgi.errors.NotFound`. ``sha256`` becomes
    the ETag.
    """
    root = root.resolve()
    try:
        path = (root / location).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        raise NotFound("no such recording") from None
    inside = path.is_relative_to(root) and not path.is_relative_to(root / STATE_DIR)
    if not inside or path.name.endswith((SIDECAR_SUFFIX, *COMPANION_SUFFIXES)) or (
            not path.is_file()):
        raise NotFound("no such recording")
    return _opened(path, guess_type(path.name, path.suffix.lstrip(".")), sha256)


def _opened(path: Path, content_type: str, sha256: str | None) -> StoredFile:
    """``path`` opened for serving, with its size and times; gone is ``NotFound``.

    Without ``sha256`` the ETag is made of the size and modification time.
    """
    try:
        fh = open(path, "rb")  # noqa: SIM115 - StoredFile owns it
    except OSError:
        raise NotFound("no such recording") from None
    st = os.fstat(fh.fileno())
    return StoredFile(
        fileobj=fh,
        size=st.st_size,
        content_type=content_type,
        etag=sha256 or f"{st.st_size:x}-{st.st_mtime_ns:x}",
        last_modified=datetime.fromtimestamp(int(st.st_mtime), tz=timezone.utc),
        location=str(path),
    )


def records(places: Places) -> Iterator[dict[str, Any]]:
    """Every index entry's record, with ``location`` added (the index's order)."""
    for shard in sorted(places.index.iterdir()):
        if not shard.is_dir():
            continue
        for entry in sorted(shard.iterdir()):
            if not entry.name.endswith(".json"):
                continue
            record = read_json(entry)
            if record is None or "path" not in record:
                continue
            record["location"] = str(places.root / record["path"])
            yield record


def count(places: Places) -> int:
    """How many index entries there are: names only, no file read."""
    return sum(1 for shard in places.index.iterdir() if shard.is_dir()
               for entry in os.listdir(shard) if entry.endswith(".json"))
