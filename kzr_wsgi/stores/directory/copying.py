"""The disk store's copy of a body to its temporary file: read, hash and write, overlapped.

:func:`copy_to_disk` is the one place a :class:`~kzr_wsgi.stores.directory.DirectoryStore`
upload's bytes pass through: large blocks from pooled buffers, the sha256 computed on the
way, and the disk's writeback started early so the commit's sync has little left to do.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ...body import BLOCK_SIZE, readinto_of
from ..tempfiles import write_all


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
                write_all(fd, view[:n])
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
        write_all(self.fd, block)
        self.size += len(block)
        if self.size - self.synced >= _WRITEBACK_EVERY:
            os.posix_fadvise(self.fd, self.synced, self.size - self.synced, os.POSIX_FADV_DONTNEED)
            self.synced = self.size

