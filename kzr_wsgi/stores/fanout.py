"""One upload, several stores: ``FanOut(DirectoryStore(...), S3Store(...))``.

>>> disk = DirectoryStore("/srv/recordings")                 # doctest: +SKIP
>>> bucket = S3Store.from_url("s3://rec/kazoo")               # doctest: +SKIP
>>> app = KazooRecordings(app, FanOut(disk, bucket))          # doctest: +SKIP

**How the body reaches every store: a tee with bounded pipes.** The request body can
be read only once. Each store runs in its own thread and reads its own stream (a
:class:`~kzr_wsgi.body.Body` over an in-memory pipe); the calling thread reads the
request body in large blocks and hands each block (the same ``bytes`` object, never
copied) to every pipe. A pipe holds at most :data:`PIPE_DEPTH` blocks, and handing a
block to a full pipe waits: the upload goes at the pace of the slowest store, and
memory stays at about ``PIPE_DEPTH x BLOCK_SIZE`` per store whatever the body's size
(no spooling to disk, no buffering the body whole). The tee also hashes the body, and
every store's sha256 must match it: all stores got identical bytes, or the upload fails.

**Success only when every store committed.** If the body breaks off or any store
fails, every other store's pipe is broken too (its next read raises), so a store still
reading aborts as it would on a client disconnect and keeps nothing. A store that had
already committed (it read everything before another failed at its own commit) is
rolled back with its ``discard(stored)`` method when it has one (see
:class:`~kzr_wsgi.stores.base.DiscardableStore`). A copy that cannot be rolled back is
never a silent half: the raised error names the store that kept it (by position and
type; the location goes to the log, not to the client), and a retry of the upload
completes the set, since stores de-duplicate it.

The error raised is the failing store's own type (``StorageFull`` stays ``507``,
``StoreUnavailable`` ``503``) with a message that says what happened everywhere; a
store failing with anything else becomes :class:`~kzr_wsgi.errors.StoreUnavailable`.

**Reading back** (:meth:`FanOut.open`) asks each store that can serve reads
(:class:`~kzr_wsgi.recording.ReadableStore`), in order, and returns the first copy found.

**Everything else** a consumer asks of a store (:mod:`kzr_wsgi.stores.base`) a fan-out
answers from its stores: its :meth:`~FanOut.parts` are the stores that hold copies (a
nested fan-out's too), its state and its catalog are its bucket's when it has one (what
every host shares), else its first store's.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from ..body import BLOCK_SIZE, Body
from ..errors import BodyIncomplete, KzrError, NotFound, ReadNotSupported, StoreUnavailable
from ..recording import Handler, Name, ReadableStore, Recording, Stored, StoredFile, Stream
from .base import CopyReader, CopyStore, DiscardableStore, ServedStore
from .state import DiskState, S3State

if TYPE_CHECKING:
    from ..catalog import Catalog
    from .s3 import S3Store

__all__ = ["PIPE_DEPTH", "DiscardableStore", "FanOut"]

log = logging.getLogger("kzr_wsgi.store")

_R = TypeVar("_R")

#: Blocks a store may lag behind the tee. With 1 MiB blocks, 4 MiB per store.
PIPE_DEPTH = 4


class FanOut:
    """Write each upload to every store; succeed only when all have committed.

    :param stores: handlers (stores) to write to, at least one. The first one's
        location is the result's ``location``; the others' go to ``also``.
    """

    __slots__ = ("stores",)

    def __init__(self, *stores: Handler) -> None:
        if not stores:
            raise ValueError("FanOut needs at least one store")
        #: The stores, in order.
        self.stores: tuple[Handler, ...] = stores

    def __repr__(self) -> str:
        return f"FanOut({', '.join(map(repr, self.stores))})"

    # -- writing ----------------------------------------------------------------------

    def __call__(self, recording: Recording) -> Stored | None:
        """Stream ``recording`` to every store at once; return the combined result.

        ``created`` is the first store's: put the store every receiver shares first
        (S3 before a local disk), so a retry that lands on another host, whose own disk
        has never seen it, is still a retry (no second 201, no second notification).
        Raises when the body or any store fails, after rolling back what it can (see
        the module docstring).
        """
        branches = [_Branch(store, recording, i) for i, store in enumerate(self.stores)]
        for branch in branches:
            branch.thread.start()
        sha = hashlib.sha256()
        size = 0
        source_error: BaseException | None = None
        try:
            read = recording.stream.read
            while True:
                block = read(BLOCK_SIZE)
                if not block:
                    break
                sha.update(block)
                size += len(block)
                for branch in branches:
                    branch.pipe.put(block)
                if any(b.error is not None for b in branches):
                    break  # no use reading on: the upload fails
        except BaseException as exc:
            source_error = exc
        finally:
            broken = source_error is not None or any(b.error is not None for b in branches)
            for branch in branches:
                if broken:
                    branch.pipe.fail()
                else:
                    # The source's final b"" has just set the audio (the middleware's
                    # inspector); each branch reads its copy of the recording after its
                    # own b"", which finish() is about to give: its sidecar has it too.
                    branch.recording.audio = recording.audio
                    branch.pipe.finish()
            for branch in branches:
                branch.thread.join()
        return self._settle(branches, source_error, size, sha.hexdigest())

    def _settle(
        self, branches: list[_Branch], source_error: BaseException | None, size: int,
        digest: str,
    ) -> Stored | None:
        """All stores are done: return the combined result, or roll back and raise."""
        for branch in branches:
            if branch.error is None and not branch.body.complete and source_error is None:
                branch.error = RuntimeError(
                    f"returned after reading {branch.body.bytes_read} of {size} bytes")
            result = branch.result
            if branch.error is None and result is not None and (
                    result.sha256 != digest or result.size != size):
                branch.error = RuntimeError(
                    f"stored {result.size} bytes with sha256 {result.sha256}, "
                    f"but the body was {size} bytes with sha256 {digest}")
        failed = [b for b in branches if b.error is not None]
        if source_error is None and not failed:
            return _combine([b.result for b in branches])
        self._roll_back(branches, source_error)

    def _roll_back(self, branches: list[_Branch], source_error: BaseException | None) -> NoReturn:
        """Take back every copy made by this upload where possible; raise what happened."""
        rolled_back: list[str] = []
        kept: list[str] = []
        for branch in branches:
            result = branch.result
            # A copy with created=False was stored by an earlier upload: not ours to remove.
            # A store that committed but is counted failed (it read short, or its sha256
            # differs) made a copy all the same: it is rolled back like the others.
            if result is None or not result.created:
                continue
            store: object = branch.store  # any handler: a store may take its copy back
            if isinstance(store, DiscardableStore):
                try:
                    store.discard(result)
                except Exception:
                    log.exception("fan-out: %s could not discard %s", branch.label,
                                  result.location)
                else:
                    rolled_back.append(branch.label)
                    continue
            kept.append(branch.label)
            log.error("fan-out: %s kept a copy at %s that could not be rolled back",
                      branch.label, result.location)
        if source_error is not None and not isinstance(source_error, Exception):
            raise source_error  # KeyboardInterrupt and the like: nothing to add
        # The body's own error (cut short, too large) is the cause when there is one.
        # Stores whose pipe was broken did not fail on their own: name only the others.
        failed = [b for b in branches
                  if b.error is not None and not isinstance(b.error, _PipeBroken)]
        cause = source_error if source_error is not None else failed[0].error
        assert cause is not None
        parts = []
        if source_error is None:
            parts.append("; ".join(f"{b.label} failed: {_brief(b.error)}" for b in failed))
        else:
            parts.append(f"body failed: {_brief(source_error)}")
        if rolled_back:
            parts.append(f"rolled back in {', '.join(rolled_back)}")
        if kept:
            parts.append(f"a copy was KEPT by {', '.join(kept)} (not rolled back)")
        message = "fan-out: " + "; ".join(p for p in parts if p)
        if source_error is not None and isinstance(source_error, KzrError):
            raise type(source_error)(message) from source_error
        if isinstance(cause, KzrError) and not isinstance(cause, BodyIncomplete):
            raise type(cause)(message) from cause
        log.error("%s", message, exc_info=cause)
        raise StoreUnavailable(message) from cause

    # -- reading ----------------------------------------------------------------------

    def open(self, name: Name, recording_id: str | None = None) -> StoredFile:
        """The first copy found among the stores that serve reads, in order.

        A store without the copy (``NotFound``) or out of reach (another error) is
        passed over for the next; when none has it, the last error is raised.
        """
        readers = [s for s in self.stores if isinstance(s, ReadableStore)]
        if not readers:
            raise ReadNotSupported("none of the fan-out's stores can serve reads")
        return _first_found(readers, lambda store: store.open(name, recording_id))

    def open_stored(self, location: str, sha256: str | None = None) -> StoredFile:
        """The copy at ``location`` from whichever store holds it (see ``open``)."""
        parts: list[object] = list(self.stores)  # any handler; only stores open copies
        readers = [s for s in parts if isinstance(s, CopyReader)]
        return _first_found(readers, lambda store: store.open_stored(location, sha256))

    def open_copy(self, record: dict[str, Any]) -> Stream:
        """The bytes of the copy ``record`` describes, from the store whose it is."""
        location = str(record.get("location", ""))
        for part in self.parts():
            if part.owns(location):
                return part.open_copy(record)
        raise NotFound(f"{location} is in none of the fan-out's stores")

    # -- what consumers beside the upload path need -----------------------------------

    def put_companions(self, record: Mapping[str, Any], files: Mapping[str, bytes]) -> bool:
        """Write the files beside the copy in every store that holds it; ``True`` when at
        least one did (each store writes only beside a copy it still indexes)."""
        wrote = [part.put_companions(record, files) for part in self.parts()]
        return any(wrote)

    def get_companion(self, record: Mapping[str, Any], suffix: str) -> bytes:
        """The file from the first store that has it beside its copy (NotFound if none)."""
        last: KzrError = NotFound("no such recording")
        for part in self.parts():
            try:
                return part.get_companion(record, suffix)
            except NotFound as exc:
                last = exc
            except KzrError as exc:
                log.warning("fan-out: %r cannot serve a read: %s", part, exc)
                last = exc
        raise last

    def parts(self) -> tuple[CopyStore, ...]:
        """The stores that hold copies themselves, in order (a nested fan-out's too)."""
        found: list[CopyStore] = []
        for store in self.stores:
            served: object = store  # any handler; only stores hold copies
            if isinstance(served, ServedStore):
                found += served.parts()
        return tuple(found)

    def buckets(self) -> tuple[S3Store, ...]:
        """The buckets among the stores: each gets the housekeeper's daily sweep."""
        return tuple(bucket for part in self.parts() for bucket in part.buckets())

    def preflight(self) -> list[str]:
        """Every store's preflight, in order; their warnings."""
        return [warning for part in self.parts() for warning in part.preflight()]

    def state(self) -> DiskState | S3State:
        """Where holds and the audit trail live: the bucket's place when there is one
        (every host shares it), else the first store's."""
        places = [part.state() for part in self.parts()]
        if not places:
            raise KzrError(f"{self!r} keeps no state of its own")
        shared = [place for place in places if place.shared]
        return (shared or places)[0]

    @property
    def catalog(self) -> Catalog | None:
        """The catalog of the first store that writes one."""
        return next((part.catalog for part in self.parts() if part.catalog is not None), None)


class _PipeBroken(Exception):
    """Raised in a store's reads when the upload failed elsewhere."""


class _Pipe:
    """A bounded one-producer, one-consumer queue of blocks: a store's side of the tee."""

    __slots__ = ("_blocks", "_cond", "_eof", "_broken", "_closed", "_depth")

    def __init__(self, depth: int = PIPE_DEPTH) -> None:
        self._blocks: deque[bytes] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._eof = False
        self._broken = False
        self._closed = False
        self._depth = depth

    # producer (the tee)
    def put(self, block: bytes) -> None:
        """Hand over a block, waiting while the store is ``depth`` blocks behind."""
        with self._cond:
            while len(self._blocks) >= self._depth and not self._closed:
                self._cond.wait()
            if not self._closed:  # a store that has returned takes nothing more
                self._blocks.append(block)
                self._cond.notify()

    def finish(self) -> None:
        """The body ended: the store's next read after the last block gives ``b""``."""
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def fail(self) -> None:
        """The upload failed elsewhere: the store's next read raises."""
        with self._cond:
            self._broken = True
            self._blocks.clear()
            self._cond.notify_all()

    # consumer (the store's thread)
    def read(self, size: int = -1) -> bytes:
        with self._cond:
            while not self._blocks and not self._eof and not self._broken:
                self._cond.wait()
            if self._broken:
                raise _PipeBroken("the upload failed in another store")
            if not self._blocks:
                return b""
            block = self._blocks[0]
            if 0 <= size < len(block):
                self._blocks[0] = block[size:]
                block = block[:size]
            else:
                self._blocks.popleft()
            self._cond.notify()
            return block

    def close(self) -> None:
        """The store returned or raised: drop what is left and stop waiting for it."""
        with self._cond:
            self._closed = True
            self._blocks.clear()
            self._cond.notify_all()


class _Branch:
    """One store, its pipe, and the thread that runs it."""

    __slots__ = ("store", "label", "pipe", "body", "recording", "thread", "result", "error")

    def __init__(self, store: Handler, recording: Recording, index: int) -> None:
        self.store = store
        #: How the store is named in errors shown to the client: position and type only.
        self.label = f"store #{index + 1} ({type(store).__name__})"
        self.pipe = _Pipe()
        # Length unknown to the branch (a multipart file part is shorter than the
        # request): read to the end; the tee already enforced the size limit.
        self.body = Body(self.pipe, None, sys.maxsize)
        #: The store's own copy of the recording (its stream is this branch's pipe).
        self.recording = replace(recording, stream=self.body)
        self.result: Stored | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(
            target=self._run, args=(self.recording,),
            name=f"kzr-fanout-{index + 1}", daemon=True,
        )

    def _run(self, recording: Recording) -> None:
        try:
            self.result = self.store(recording)
        except BaseException as exc:
            # A store that failed only because the pipe was broken elsewhere did not
            # fail on its own: keep that apart from a real failure.
            self.error = _pipe_broken_in(exc) or exc
        finally:
            self.pipe.close()


def _pipe_broken_in(exc: BaseException) -> _PipeBroken | None:
    """The broken pipe behind ``exc`` (``Body`` wraps it in BodyIncomplete), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, _PipeBroken):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _combine(results: list[Stored | None]) -> Stored | None:
    """One :class:`Stored` for all: the first location and ``created``, the others in ``also``."""
    stored = [r for r in results if r is not None]
    if not stored:
        return None
    first = stored[0]
    also = [*first.also]
    for other in stored[1:]:
        also += [other.location, *other.also]
    return replace(first, also=tuple(also))


def _brief(exc: BaseException | None) -> str:
    text = str(exc) if exc is not None else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _first_found(stores: list[_R], read: Callable[[_R], StoredFile]) -> StoredFile:
    """What ``read`` gives for the first of ``stores`` that has the copy; else the last error.

    A store without it (``NotFound``) or out of reach (another error, logged) is passed
    over for the next.
    """
    last: KzrError = NotFound("no such recording")
    for store in stores:
        try:
            return read(store)
        except NotFound as exc:
            last = exc
        except KzrError as exc:
            log.warning("fan-out: %r cannot serve a read: %s", store, exc)
            last = exc
    raise last
