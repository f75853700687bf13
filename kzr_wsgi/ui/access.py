"""The access log: who signed in, listened, downloaded, exported and shared what, and when.

It lives beside the audit trail, in the place the store keeps its state
(:mod:`kzr_wsgi.stores.state`), so it is kept, copied and backed up with the recordings
it speaks of (the catalog, which ``reindex`` may rebuild from the sidecars, is not that
kind of place):

* disk: ``ROOT/.kzr/access/YYYY-MM-DD.jsonl``, one file a day (UTC), each batch appended
  in one write under an exclusive ``flock`` and ``fsync``-ed;
* S3 (and a fan-out with a bucket): one object a batch,
  ``PREFIX/.kzr/access/YYYY-MM-DD/<time>-<random>.jsonl``; objects are written whole,
  never appended to, so hosts never contend.

**Batched.** :meth:`AccessLog.record` only queues the event in the process; a thread
writes the queue every :data:`FLUSH_EVERY` seconds (sooner at :data:`MAX_BATCH` events)
and when the process exits: one durable write per batch, not one per request.

Each event is a JSON object with the keys :data:`KEYS`: ``at``, ``action``
(:class:`AccessAction`), ``viewer`` (a share link's use names its maker), ``address``,
``ids`` (recording ids), and what an action adds: ``count`` and ``filters`` (the NAMES
of an export's filters, never their values), ``share_id``, ``via`` (``form``,
``basic``, ``share``). Never a password, a token or a filter's value.

Kept for ``access-retention`` (default one year): :meth:`AccessLog.prune` drops whole
days, run by ``serve``'s housekeeper. ``kzr-wsgi audit --access`` prints it.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from ..errors import KzrError
from ..naming import shown
from ..stores.base import StateKeeper
from ..stores.directory.files import fsync_dir
from ..stores.state import DiskState, S3State
from ..stores.tempfiles import write_all
from ..textenum import TextEnum

log = logging.getLogger("kzr_wsgi.ui.access")

#: Seconds between writes of the queued events.
FLUSH_EVERY = 5.0
#: The most events queued before they are written without waiting.
MAX_BATCH = 500
#: Queued events kept at most while the place cannot be written (then the oldest go).
MAX_PENDING = 100_000
#: How long events are kept unless ``access-retention`` says otherwise.
DEFAULT_RETENTION = timedelta(days=365)
#: The folder under the state place.
FOLDER = "access"
#: The keys of every event, in the order they are written.
KEYS = ("at", "action", "viewer", "address", "ids", "count", "filters", "share_id", "via")
_DAY = re.compile(r"(\d{4}-\d{2}-\d{2})")


class AccessAction(TextEnum):
    """What an access event records."""

    SIGNIN = "signin"
    SIGNIN_FAILED = "signin_failed"
    SIGNOUT = "signout"
    #: The first audio request of a listener for a recording within 30 minutes.
    PLAY = "play"
    DOWNLOAD = "download"
    EXPORT = "export"
    SHARE_MADE = "share_made"
    SHARE_REVOKED = "share_revoked"
    SHARE_USED = "share_used"


def access_event(action: AccessAction, *, viewer: str | None, address: str | None,
                 ids: Iterable[str] = (), at: datetime | None = None,
                 **facts: Any) -> dict[str, Any]:
    """One event with every key (those not given are ``null``)."""
    unknown = set(facts) - set(KEYS)
    if unknown:
        raise TypeError(f"not an access event key: {sorted(unknown)}")
    event: dict[str, Any] = dict.fromkeys(KEYS)
    event.update(facts)
    event.update(at=(at or datetime.now(timezone.utc)).isoformat(), action=action.value,
                 viewer=viewer, address=address, ids=list(ids))
    return event


class AccessLog:
    """The access log of one store's state place (see the module docs).

    :param place: ``store.state()``: a disk's ``ROOT/.kzr`` or a bucket's ``PREFIX/.kzr``
        (:mod:`kzr_wsgi.stores.state`).
    """

    def __init__(self, place: DiskState | S3State, *, flush_every: float = FLUSH_EVERY,
                 max_batch: int = MAX_BATCH) -> None:
        self.place = place
        self.flush_every = flush_every
        self.max_batch = max_batch
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._pid: int | None = None
        #: Batches written by this process (for tests and the curious).
        self.batches = 0

    @classmethod
    def for_store(cls, store: object) -> AccessLog | None:
        """The access log in ``store``'s state place (``store.state()``), when it keeps one."""
        if not isinstance(store, StateKeeper):
            return None
        try:
            return cls(store.state())
        except KzrError:
            return None

    def __repr__(self) -> str:
        return f"AccessLog({self.where!r})"

    @property
    def where(self) -> str:
        """``ROOT/.kzr/access/`` or ``s3://bucket/PREFIX/.kzr/access/``."""
        return self.place.where.rstrip("/") + f"/{FOLDER}/"

    # -- writing ----------------------------------------------------------------------

    def record(self, event: Mapping[str, Any]) -> None:
        """Queue ``event`` (:func:`access_event`); it is written with the next batch."""
        with self._lock:
            if self._pid != os.getpid():
                self._start()
            self._pending.append(dict(event))
            if len(self._pending) > MAX_PENDING:
                del self._pending[: len(self._pending) - MAX_PENDING]
                log.error("access log %s: more than %d events waiting; the oldest dropped",
                          self.where, MAX_PENDING)
            full = len(self._pending) >= self.max_batch
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Write every queued event now; how many were written."""
        with self._flushing:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            by_day: dict[str, list[dict[str, Any]]] = {}
            for event in batch:
                by_day.setdefault(str(event["at"])[:10], []).append(event)
            written = 0
            try:
                for day, events in sorted(by_day.items()):
                    self._write(day, events)
                    written += len(events)
            except Exception:
                log.exception("access log %s: a batch could not be written; kept for the "
                              "next try", self.where)
                with self._lock:
                    left = [e for d, es in sorted(by_day.items()) for e in es][written:]
                    self._pending[:0] = left
            self.batches += 1 if written else 0
            return written

    def close(self) -> None:
        """Write what is queued (a process on its way out)."""
        if self._pid == os.getpid():
            self.flush()

    def _start(self) -> None:
        """This process's writer thread (a forked worker starts its own; under the lock)."""
        self._pid = os.getpid()
        self._pending = []  # what a parent queued is the parent's to write
        self._wake = threading.Event()
        thread = threading.Thread(target=self._loop, name="kzr-access-log", daemon=True)
        thread.start()
        atexit.register(self.close)

    def _loop(self) -> None:
        wake = self._wake
        while True:
            wake.wait(self.flush_every)
            wake.clear()
            self.flush()

    def _write(self, day: str, events: list[dict[str, Any]]) -> None:
        data = b"".join(json.dumps({k: e.get(k) for k in KEYS}, ensure_ascii=True).encode(
            "ascii") + b"\n" for e in events)
        if isinstance(self.place, S3State):
            stamp = datetime.now(timezone.utc).strftime("%H%M%S%f")
            self.place.create(f"{FOLDER}/{day}/{stamp}-{secrets.token_hex(6)}.jsonl", data)
            return
        path = self.place.path(f"{FOLDER}/{day}.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            new = os.fstat(fd).st_size == 0
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            fsync_dir(path.parent)

    # -- reading and pruning ----------------------------------------------------------

    def read(self, since: datetime | None = None, until: datetime | None = None, *,
             viewer: str | None = None, recording: str | None = None
             ) -> Iterator[dict[str, Any]]:
        """The written events in time order; ``since``/``until`` inclusive, on ``at``.

        :param recording: only events naming this recording id.
        """
        first = since.astimezone(timezone.utc).date().isoformat() if since else None
        last = until.astimezone(timezone.utc).date().isoformat() if until else None
        events: list[dict[str, Any]] = []
        for name, day in self._files():
            if (first is not None and day < first) or (last is not None and day > last):
                continue
            data = self.place.read(name) or b""
            for raw in data.splitlines():
                event = _parse(raw)
                if event is None:
                    continue
                try:
                    at = datetime.fromisoformat(str(event["at"]))
                except (KeyError, ValueError):
                    continue
                if ((since is None or at >= since) and (until is None or at <= until)
                        and (viewer is None or event.get("viewer") == viewer)
                        and (recording is None or recording in (event.get("ids") or []))):
                    events.append(event)
        events.sort(key=lambda e: str(e["at"]))
        yield from events

    def prune(self, before: datetime) -> int:
        """Remove the days wholly before ``before``'s day (UTC); how many files or objects."""
        cutoff = before.astimezone(timezone.utc).date().isoformat()
        gone = 0
        for name, day in self._files():
            if day < cutoff:
                self.place.delete(name, sync=False)
                gone += 1
        return gone

    def _files(self) -> list[tuple[str, str]]:
        """``(name, day)`` of every file or object of the log."""
        found = []
        for name, _modified in self.place.list(FOLDER):
            match = _DAY.search(name[len(FOLDER) + 1:])
            if match is not None and name.endswith(".jsonl"):
                found.append((name, match.group(1)))
        return sorted(found)


def event_line(event: Mapping[str, Any]) -> str:
    """One event as ``kzr-wsgi audit --access`` prints it, every value escaped."""
    facts = []
    ids = event.get("ids") or []
    if ids:
        facts.append("ids=" + ",".join(shown(str(i)) for i in ids))
    for key in ("count", "share_id", "via"):
        if event.get(key) is not None:
            facts.append(f"{key}={shown(str(event[key]))}")
    if event.get("filters"):
        facts.append("filters=" + ",".join(shown(str(f)) for f in event["filters"]))
    return (f"{shown(str(event.get('at')))}  {shown(str(event.get('action'))):13}  "
            f"{shown(str(event.get('viewer') or '-'))}  "
            f"{shown(str(event.get('address') or '-'))}  {' '.join(facts)}").rstrip()


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(raw)
    except ValueError:
        return None  # a line torn by a crash
    return event if isinstance(event, dict) else None
