"""The disk store's own files: where they are, index entry names, JSON documents, locks,
durable directories.

Small helpers the other modules of :mod:`kzr_wsgi.stores.directory` share; each says
which filesystem promise it leans on. Nothing here knows of a store object: the store
hands its modules a :class:`Places`, the paths they need.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import StorageFull
from ...naming import STATE_DIR, name_digest
from ...recording import Kind, Name
from ..tempfiles import TempFile

#: The store's own directory under its root: :data:`~kzr_wsgi.naming.STATE_DIR`, by the
#: name it had here.
STATE = STATE_DIR
_FULL = (errno.ENOSPC, errno.EDQUOT)
#: The name of an index entry, and so of an upload's marker.
ENTRY_NAME = re.compile(r"[0-9a-f]{64}-[0-9a-f]{16}-[0-9a-f]{64}\.json")


@dataclass(frozen=True)
class Places:
    """Where a disk store keeps what is its own: the paths its modules are handed.

    Everything but :attr:`root` is under ``ROOT/.kzr`` (:data:`~kzr_wsgi.naming.STATE_DIR`).
    """

    #: The store's root: the recordings, filed by their layout.
    root: Path
    #: ``ROOT/.kzr``: the store's own state (and the default catalog's file).
    state: Path
    #: ``ROOT/.kzr/tmp``: temporary files, on the recordings' filesystem.
    tmp: Path
    #: ``ROOT/.kzr/index``: one entry per stored copy, in 256 shards.
    index: Path
    #: ``ROOT/.kzr/pending``: one marker per upload in flight.
    pending: Path
    #: ``ROOT/.kzr/uncatalogued``: markers a store from before left (read only).
    uncatalogued: Path

    @classmethod
    def under(cls, root: Path) -> Places:
        """The places of the store at ``root``."""
        state = root / STATE_DIR
        return cls(root=root, state=state, tmp=state / "tmp", index=state / "index",
                   pending=state / "pending", uncatalogued=state / "uncatalogued")

    def shard(self, name: Name) -> Path:
        """The index shard holding ``name``'s entries (see :func:`shard`)."""
        return shard(self.index, name)

    def entry(self, record: Mapping[str, Any]) -> Path:
        """The index entry of the copy a sidecar dict describes."""
        name = record_name(record)
        return self.shard(name) / entry_name(name, record.get("recording_id"),
                                             str(record["sha256"]))


def entry_name(name: Name, recording_id: str | None, digest: str) -> str:
    """``<name digest>-<recording_id digest>-<body sha256>.json``: one per stored copy."""
    rid = hashlib.sha256((recording_id or "").encode("utf-8", "surrogateescape")).hexdigest()
    return f"{name_digest(name)}-{rid[:16]}-{digest}.json"


def record_name(record: Mapping[str, Any]) -> Name:
    """The :class:`~kzr_wsgi.recording.Name` a sidecar dict was stored under."""
    return Name(Kind(record["kind"]), tuple(record["segments"]), record["filename"])


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path``; ``None`` when absent, unreadable or not an object."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created when missing) while the block runs.

    The lock ends with the process, so one that can be taken proves its holder is gone.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def full_is_storage_full() -> Iterator[None]:
    """Turn a full disk or quota (``ENOSPC``, ``EDQUOT``) into :class:`StorageFull`."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL:
            raise StorageFull("no space left on the store") from exc
        raise


def link_replacing(tmp: TempFile, target: Path) -> None:
    """Give ``tmp`` the name ``target``, replacing a stale file there."""
    try:
        tmp.link(target)
    except FileExistsError:
        target.unlink(missing_ok=True)
        tmp.link(target)


def makedirs(directory: Path) -> None:
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
        fsync_dir(d.parent)


def make_shards(index: Path) -> None:
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
        fsync_dir(index)


def fsync_dir(directory: Path) -> None:
    """Make the names in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def shard(index: Path, name: Name) -> Path:
    """The shard of the index under ``index`` that holds ``name``'s entries (and their lock).

    Entries sit flat in 256 shards rather than in a directory per name: every inode
    created costs a journal update, and the shards exist after the first few hundred
    uploads. The shard's lock is shared by the names in it; commits hold it for a few
    milliseconds.
    """
    directory = index / name_digest(name)[:2]
    if not directory.is_dir():
        makedirs(directory)  # once per shard: the first few hundred uploads
    return directory
