"""The housekeeper: periodic work for a store, done by one process among all that serve it.

``kzr-wsgi serve`` starts one in its master process whenever :func:`jobs_for` gives it
work; however many workers, processes and hosts serve the same store, exactly one
housekeeper at a time does the work, chosen by a :class:`Lease`:

* a disk store: an ``flock`` on ``ROOT/.kzr/housekeeper.lock`` (it vanishes with its
  holder, so another process takes over at its next tick);
* a store with a PostgreSQL catalog: ``pg_try_advisory_lock`` on a session of its
  own (released when the session ends);
* a bucket without one: a lease object ``PREFIX/.kzr/housekeeper.lease``, created with
  ``If-None-Match``, renewed and taken over with ``If-Match`` on its ETag, and expiring
  when its holder stops renewing it.

The work is a list of :class:`Job` (each a name, an interval and a function returning a
summary line); each run is logged as one line. Which periodic work runs where, and why:

* **Here, once per store** (:func:`jobs_for`, the one place to add a job): work over
  the whole store that any one host can do for all, and that would only be repeated,
  or race, if every process did it: pruning by the config file's ``[retention]``
  policy (:func:`prune_job`, every ``interval``), for an S3 store the sweep of
  unfinished multipart uploads and unindexed objects killed hosts left
  (:func:`sweep_job`: daily, anything older than a day, as ``kzr-wsgi sweep``), and
  with the search page, forgetting its ended sessions, old failed sign-ins and ended
  share links (:func:`ui_sweep_job`) and pruning its access log past
  ``access-retention`` (:func:`access_prune_job`), hourly.
* **In every process that uses a** :class:`~kzr_wsgi.stores.DirectoryStore`, by the
  store's own upkeep (:meth:`~kzr_wsgi.stores.DirectoryStore.upkeep`, on its first use
  and every few seconds after; see :mod:`kzr_wsgi.stores.directory.upkeep`): recovering
  dead writers' uploads from their markers, reaping their named temporary files, and
  repairing the catalog from older markers. That work is bounded by what was in
  flight, not by the size of the store; it must follow a dead writer within seconds (a
  lease would add a tick's delay); each item is decided under its writer's own
  ``flock``, so processes never race on it; and a store used without ``serve`` (the
  Flask extension, the bare middleware) has no housekeeper at all.

::

    keeper = Housekeeper(jobs_for(store, config), lease_for(store))
    keeper.start()
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from ..ages import format_age
from ..catalog import Catalog
from ..configfile import Config
from ..stores.base import Store
from ..stores.state import DiskState, S3State
from .policy import RetentionPolicy
from .retention import Selection, prune
from .sweep import DEFAULT_OLDER_THAN, outcome, summary, sweep_s3

# Only a type here (resolvable, so the reference can show it): importable without boto3.
with contextlib.suppress(ImportError):
    from ..stores.s3 import S3Store

log = logging.getLogger("kzr_wsgi.housekeeper")

#: How often the housekeeper wakes to see whether it holds the lease and a job is due.
TICK = 30.0
#: How often the search page's tables are swept and its access log pruned.
UI_EVERY = timedelta(hours=1)
#: How often an S3 store is swept: leftovers are rare (a killed host) and cost little
#: while they wait, and each sweep lists the whole prefix.
SWEEP_EVERY = timedelta(days=1)


@dataclass
class Job:
    """One periodic task: ``run()`` does it and returns the line to log."""

    name: str
    every: timedelta
    run: Callable[[], str]
    #: Monotonic time of the last start; ``None`` until it first ran (then it is due).
    last: float | None = field(default=None, compare=False)

    def due(self, now: float) -> bool:
        """True when it never ran, or ran ``every`` ago."""
        return self.last is None or now - self.last >= self.every.total_seconds()


def prune_job(store: Store, policy: RetentionPolicy, catalog: Catalog | None = None) -> Job:
    """The retention policy as a job: prune ``store`` every ``policy.interval``."""

    def run() -> str:
        summary = prune(store, Selection(policy=policy), catalog=catalog)
        return summary.line()

    return Job("prune", policy.interval, run)


def sweep_job(store: S3Store, older_than: timedelta = DEFAULT_OLDER_THAN,
              every: timedelta = SWEEP_EVERY) -> Job:
    """The S3 sweep as a job: remove ``store``'s leftovers older than ``older_than``.

    Each leftover is logged as ``kzr-wsgi sweep`` prints it; the run's line is the
    command's summary.
    """

    def run() -> str:
        found = removed = 0
        for leftover, gone in sweep_s3(store, older_than):
            found += 1
            removed += gone
            log.info("housekeeper: sweep: %s %s", outcome(gone), leftover.describe())
        return summary(store, found, removed, older_than)

    return Job("sweep", every, run)


class UIUpkeep(Protocol):
    """What the housekeeper does for a search page (:class:`kzr_wsgi.ui.SearchUI` is one)."""

    @property
    def access(self) -> AccessPruner | None:
        """Its access log, when one is kept."""
        ...

    def sweep(self) -> str:
        """Forget ended sessions, old failed sign-ins and ended links; a summary line."""
        ...


class AccessPruner(Protocol):
    """An access log (:class:`kzr_wsgi.ui.access.AccessLog` is one)."""

    def prune(self, before: datetime) -> int:
        """Remove the days before ``before``; how many files or objects."""
        ...


def ui_sweep_job(ui: UIUpkeep, every: timedelta = UI_EVERY) -> Job:
    """The search page's tables as a job: forget what has ended."""
    return Job("ui-sweep", every, ui.sweep)


def access_prune_job(access: AccessPruner, retention: timedelta,
                     every: timedelta = UI_EVERY) -> Job:
    """The access log's retention as a job: remove the days older than ``retention``."""

    def run() -> str:
        gone = access.prune(datetime.now(timezone.utc) - retention)
        return f"{gone} day(s) of the access log older than {format_age(retention)} removed"

    return Job("access-prune", every, run)


def jobs_for(store: Store, config: Config | None, *, ui: UIUpkeep | None = None,
             access_retention: timedelta = timedelta(days=365)) -> list[Job]:
    """The periodic work ``serve`` gives its housekeeper for ``store`` under ``config``.

    The one place to add a job: ``serve`` starts a housekeeper whenever this list is
    not empty. Pruning when ``config`` has a ``[retention]`` table; a daily sweep of
    each bucket the store names (:meth:`~kzr_wsgi.stores.base.ServedStore.buckets`:
    itself, or one in a fan-out); with the search page (``ui``), its sweep and the
    access log's pruning past ``access_retention``.
    """
    jobs = []
    if config is not None and config.retention is not None:
        jobs.append(prune_job(store, config.retention))
    jobs += [sweep_job(bucket) for bucket in store.buckets()]
    if ui is not None:
        jobs.append(ui_sweep_job(ui))
        if ui.access is not None:
            jobs.append(access_prune_job(ui.access, access_retention))
    return jobs


class Lease(Protocol):
    """Who among all processes serving one store is the housekeeper."""

    def acquire(self) -> bool:
        """Take or keep the lease without waiting; True while this process holds it."""
        ...

    def release(self) -> None:
        """Give it up (a process that stops serving)."""
        ...


class DiskLease:
    """An ``flock`` on ``ROOT/.kzr/housekeeper.lock``, held while this process lives."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        #: The lock file.
        self.path = Path(path)
        self._fd: int | None = None
        self._pid = os.getpid()

    def acquire(self) -> bool:
        if self._fd is not None and self._pid == os.getpid():
            return True
        self._fd, self._pid = None, os.getpid()  # a forked child holds nothing
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


class PostgresLease:
    """``pg_try_advisory_lock`` on a session of its own, keyed by the store's identity."""

    def __init__(self, url: str, identity: str) -> None:
        #: The catalog's URL.
        self.url = url
        #: The lock's key: 64 bits of the identity's digest, as PostgreSQL's bigint.
        self.key = int.from_bytes(
            hashlib.sha256(f"kzr-housekeeper:{identity}".encode()).digest()[:8], "big",
            signed=True)
        self._conn: Any = None

    def acquire(self) -> bool:
        import psycopg

        if self._conn is not None:
            try:
                self._conn.execute("SELECT 1")
                return True  # the session lives, so the lock is still ours
            except psycopg.Error:
                self.release()
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            log.warning("housekeeper: cannot reach the catalog to take the lock: %s", exc)
            return False
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        if row is None or not row[0]:
            conn.close()
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        if self._conn is not None:
            # Ending the session releases the lock; a broken one is released all the same.
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


class S3Lease:
    """A lease object in the bucket: ``{"owner", "expires"}``, changed only conditionally."""

    def __init__(self, state: S3State, ttl: timedelta = timedelta(seconds=3 * TICK)) -> None:
        #: The store's state place (``PREFIX/.kzr/``).
        self.state = state
        #: How long a lease lasts without renewal: a few ticks.
        self.ttl = ttl
        #: This process's id in the lease.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

    def acquire(self) -> bool:
        from botocore.exceptions import ClientError

        client, bucket, key = self.state.client, self.state.bucket, self.state.key(
            "housekeeper.lease")
        now = datetime.now(timezone.utc)
        body = json.dumps({"owner": self.owner,
                           "expires": (now + self.ttl).isoformat()}).encode()
        try:
            current = client.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
                log.warning("housekeeper: cannot read the lease: %s", exc)
                return False
            condition: dict[str, str] = {"IfNoneMatch": "*"}
        else:
            with current["Body"] as stream:
                try:
                    lease = json.loads(stream.read())
                    expires = datetime.fromisoformat(lease["expires"])
                    holder = lease["owner"]
                except (ValueError, KeyError, TypeError):
                    holder, expires = None, now  # unreadable: as good as expired
            if holder != self.owner and expires > now:
                return False
            condition = {"IfMatch": current["ETag"]}
        try:
            client.put_object(Bucket=bucket, Key=key, Body=body,
                              ContentType="application/json", **condition)  # type: ignore[arg-type]
        except ClientError:
            return False  # another process renewed, took or created it first
        return True

    def release(self) -> None:
        from botocore.exceptions import ClientError

        client, bucket, key = self.state.client, self.state.bucket, self.state.key(
            "housekeeper.lease")
        try:
            current = client.get_object(Bucket=bucket, Key=key)
            with current["Body"] as stream:
                if json.loads(stream.read()).get("owner") == self.owner:
                    client.delete_object(Bucket=bucket, Key=key, IfMatch=current["ETag"])
        except (ClientError, ValueError):
            pass  # not ours any more, or gone: nothing to give up


def lease_for(store: Store, catalog_url: str | None = None) -> Lease:
    """The lease that fits ``store``: PostgreSQL when its catalog is, else in the place the
    store keeps its state (an ``flock`` there on a disk, a lease object in a bucket)."""
    state = store.state()
    if catalog_url is not None and catalog_url.startswith(("postgresql:", "postgres:")):
        return PostgresLease(catalog_url, state.where)
    if isinstance(state, DiskState):
        return DiskLease(state.path("housekeeper.lock"))
    return S3Lease(state)


class _ForkGuard:
    """No fork while a job runs, and no job while a fork is made.

    The housekeeper runs in gunicorn's master, which forks workers (at start, when one
    dies, on ``SIGHUP``). A fork made while a job's thread is inside SQLite (the page's
    sweep, a prune's catalog rows) would copy SQLite's locks into the child half-held,
    and the child's first catalog write would wait for them forever. So each job holds
    this lock, and so does every fork (as the disk store's upkeep does).
    """

    def __init__(self) -> None:
        self.busy = threading.RLock()

    def before_fork(self) -> None:
        """Wait for a running job to end; start none until the fork is made."""
        self.busy.acquire()

    def after_fork_in_parent(self) -> None:
        """Let jobs run again."""
        self.busy.release()

    def after_fork_in_child(self) -> None:
        """The child runs no job of its parent's: a fresh lock."""
        self.busy = threading.RLock()


#: The process's one guard (see :class:`_ForkGuard`).
_FORKS = _ForkGuard()
os.register_at_fork(before=_FORKS.before_fork, after_in_parent=_FORKS.after_fork_in_parent,
                    after_in_child=_FORKS.after_fork_in_child)


class Housekeeper:
    """Runs the due jobs every tick, whenever this process holds the lease.

    A job and a fork of this process never overlap (see :class:`_ForkGuard`).
    """

    def __init__(self, jobs: Sequence[Job], lease: Lease, *, tick: float = TICK) -> None:
        #: The periodic work.
        self.jobs = list(jobs)
        #: Who may do it.
        self.lease = lease
        #: Seconds between looks.
        self.tick = tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._holding: bool | None = None

    def run_once(self) -> list[str]:
        """One tick: if this process holds the lease, run every due job; their lines."""
        holding = self.lease.acquire()
        if holding != self._holding:
            # Said on each change only: which process does the work is worth a line.
            self._holding = holding
            log.info("housekeeper: %s", "holding the lease: this process does the work"
                     if holding else "standing by: another process holds the lease")
        if not holding:
            return []
        lines = []
        for job in self.jobs:
            now = time.monotonic()
            if not job.due(now):
                continue
            job.last = now
            started = time.monotonic()
            try:
                with _FORKS.busy:
                    said = job.run()
                line = f"housekeeper: {job.name}: {said} in {time.monotonic() - started:.1f}s"
                log.info("%s", line)
            except Exception as exc:  # one failed run must not end the housekeeping
                line = f"housekeeper: {job.name} failed: {exc}"
                log.exception("%s", line)
            lines.append(line)
        return lines

    def start(self) -> None:
        """Run in a daemon thread of this process until :meth:`stop`."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="kzr-housekeeper-jobs",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and give up the lease."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        self.lease.release()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the lease's store unreachable: try again next tick
                log.exception("housekeeper: tick failed")
            self._stop.wait(self.tick)
