"""The embedded default store: recordings as files under one directory.

``KazooRecordings(app, DirectoryStore("/srv/recordings"))`` is the whole set-up.

What it promises, and how:

* **A visible file is always complete; a 2xx means durable.** The body goes to a
  temporary file in ``ROOT/.kzr/tmp`` (same filesystem), is ``fsync``-ed, then
  hard-linked into place under a name no other file has (``link`` fails rather than
  overwrite), and the directory is ``fsync``-ed before the handler returns.
* **Names are data.** Every path component comes from
  :func:`~kzr_wsgi.naming.safe_component`: a call id can hold ``/``, ``..``, ``\\``
  or ``%`` and still never leaves ``ROOT`` nor meets another id's file.
* **Idempotent under Kazoo's retries.** Every stored copy is indexed by its
  :class:`~kzr_wsgi.recording.Name`, ``recording_id`` and sha256 in
  ``ROOT/.kzr/index``. The same recording with the same body again (a retry, days
  later or racing the original) finds its entry and keeps one copy; a different body
  under the same name is kept beside it (``…~2.mp3``), never overwriting. The check
  and the commit run under a per-name ``flock``, so concurrent retries in several
  processes sharing the root agree.
* **Metadata beside the file**: ``<file>.kzr.json`` with the call id, Kazoo's fields,
  size, sha256, content type and time received.
* **Dead writers leave nothing.** A writer holds an exclusive ``flock`` on its
  temporary file while it lives; at start-up, temporary files nobody holds are removed
  (see :meth:`DirectoryStore.sweep`), and a live writer's are left alone.

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
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from ..body import BLOCK_SIZE
from ..errors import NotFound, StorageFull
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

log = logging.getLogger("kzr_wsgi.store")

_STATE = ".kzr"
#: A temporary file younger than this is never swept, locked or not: it may belong to
#: a writer between creating it and locking it.
_SWEEP_MIN_AGE = 60.0
_FULL = (errno.ENOSPC, errno.EDQUOT)


class DirectoryStore:
    """Keep each upload as a file under ``root``; itself a handler and a reader.

    >>> store = DirectoryStore("/srv/recordings")          # doctest: +SKIP
    >>> app = KazooRecordings(app, store)                   # doctest: +SKIP
    """

    __slots__ = ("root", "layout", "sweep_min_age", "_tmp", "_index")

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        layout: str = DEFAULT_LAYOUT,
        sweep_min_age: float = _SWEEP_MIN_AGE,
    ) -> None:
        #: The store's root directory, created when missing.
        self.root = Path(root).absolute()
        #: Template for the directory of each file (see :func:`~kzr_wsgi.naming.layout_fields`).
        self.layout = layout
        #: Seconds a temporary file must be old before a sweep may remove it.
        self.sweep_min_age = sweep_min_age
        render_layout(layout, dict.fromkeys(
            ("kind", "account_id", "owner_id", "yyyy", "mm", "dd", "segments"), "x"))
        self._tmp = self.root / _STATE / "tmp"
        self._index = self.root / _STATE / "index"
        for directory in (self._tmp, self._index):
            _makedirs(directory)
        self.sweep()

    def __repr__(self) -> str:
        return f"DirectoryStore({str(self.root)!r})"

    # -- writing ----------------------------------------------------------------------

    def __call__(self, recording: Recording) -> Stored:
        """Stream ``recording`` to disk and commit it; return where it is.

        Raises :class:`~kzr_wsgi.errors.StorageFull` when the disk is full, and lets
        the body's own errors through; in every error case nothing is left visible.
        """
        with self._temporary() as (tmp_path, fh):
            try:
                size, digest = copy_to_disk(recording.stream, fh.fileno(), recording.content_length)
                os.fsync(fh.fileno())
            except OSError as exc:
                if exc.errno in _FULL:
                    raise StorageFull("no space left on the store") from exc
                raise
            try:
                return self._commit(recording, tmp_path, size, digest)
            except OSError as exc:
                if exc.errno in _FULL:
                    raise StorageFull("no space left on the store") from exc
                raise

    def _commit(self, recording: Recording, tmp_path: Path, size: int, digest: str) -> Stored:
        index_dir = self._index_dir(recording.name)
        entry = index_dir / _entry_name(recording.name, recording.recording_id, digest)
        with _locked(index_dir / ".lock"):
            existing = _read_json(entry)
            if existing is not None:
                path = self.root / existing["path"]
                if path.is_file() and path.stat().st_size == existing["size"]:
                    return Stored(str(path), size, digest, created=False)
                # The indexed copy was removed by hand: store this one afresh.
            directory = self.root / render_layout(self.layout, layout_fields(recording))
            _makedirs(directory)
            final = _link_unique(tmp_path, directory, safe_component(recording.filename))
            relative = final.relative_to(self.root).as_posix()
            record = self._record(recording, relative, size, digest)
            sidecar = final.with_name(final.name + SIDECAR_SUFFIX)
            # One file is both the sidecar beside the recording and its index entry
            # (two hard links). All names are put in place first and synced after:
            # on a journaling filesystem the first fsync commits them all at once, so
            # the ones after it cost next to nothing.
            with self._temporary() as (side_tmp, side_fh):
                side_fh.write(dumps(record).encode("utf-8"))
                os.replace(side_tmp, sidecar)
                entry.unlink(missing_ok=True)  # a stale entry whose file was removed
                os.link(sidecar, entry)
                os.fsync(side_fh.fileno())
            for synced in (directory, index_dir):
                _fsync_dir(synced)
        return Stored(str(final), size, digest, created=True)

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

    @contextmanager
    def _temporary(self) -> Iterator[tuple[Path, IO[bytes]]]:
        """A locked temporary file in the store, removed on the way out whatever happens."""
        path = self._tmp / f"{uuid.uuid4().hex}.part"
        try:
            fh = open(path, "xb", buffering=0)  # noqa: SIM115 - closed below
        except OSError as exc:
            if exc.errno in _FULL:
                raise StorageFull("no space left on the store") from exc
            raise
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            yield path, fh
        finally:
            try:
                path.unlink(missing_ok=True)
            finally:
                fh.close()

    def _write_small(self, target: Path, text: str) -> None:
        """Write a small file atomically and durably (temp, fsync, rename)."""
        with self._temporary() as (tmp_path, fh):
            fh.write(text.encode("utf-8"))
            os.fsync(fh.fileno())
            os.replace(tmp_path, target)

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
            final.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
            _fsync_dir(final.parent)

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

    # -- housekeeping -----------------------------------------------------------------

    def sweep(self) -> int:
        """Remove temporary files of writers that died; return how many were removed.

        A file is removed only when no process holds its lock and it is older than a
        minute: a live writer, in this process or another sharing the root, keeps its
        file.
        """
        removed = 0
        now = time.time()
        for path in self._tmp.iterdir():
            try:
                with open(path, "rb") as fh:
                    if now - os.fstat(fh.fileno()).st_mtime < self.sweep_min_age:
                        continue
                    try:
                        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue
                    path.unlink(missing_ok=True)
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            log.warning("removed %d temporary file(s) left by writers that died", removed)
        return removed


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
    readinto = _readinto_of(stream)
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
#: How often the writer starts the disk's writeback.
_WRITEBACK_EVERY = 16 << 20
#: Buffers circulating in one pipeline (one being read, the rest hashed or written).
_PIPE_BUFFERS = 4


def _readinto_of(stream: Any) -> Callable[[bytearray], int]:
    """``stream.readinto``, or the same made from ``stream.read`` for streams without it."""
    readinto: Callable[[bytearray], int] | None = getattr(stream, "readinto", None)
    if readinto is not None:
        return readinto

    def from_read(buffer: bytearray) -> int:
        data = stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    return from_read


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


def _link_unique(source: Path, directory: Path, component: str) -> Path:
    """Hard-link ``source`` into ``directory`` under the first free ``component~N``."""
    n = 1
    while True:
        target = directory / with_suffix(component, n)
        try:
            os.link(source, target)
            return target
        except FileExistsError:
            n += 1


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


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
