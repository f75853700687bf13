"""Worker processes, kept running: ``serve``'s background workers, ``worker --processes N``.

:class:`Supervisor` starts ``count`` processes of ``python -m kzr_wsgi worker`` (each
one worker) and watches them from a thread: a worker that dies is started again (after
a pause that grows while they keep dying, up to a minute), and the jobs it held are
made due at once rather than when their leases end (each child has a name the
supervisor chose, the one its leases carry). :meth:`Supervisor.stop` ends them all:
``SIGTERM`` (a worker abandons its decoding at the next block), then ``SIGKILL`` for
any that has not ended in time.

Each child learns its parent's process id (:data:`PARENT_ENV`) and stops by itself
should the parent die without stopping it, so a killed ``serve`` leaves no worker
behind. Options reach a child through its environment (``KZR_WORKER_…``), never its
command line: a catalog URL with a password must not show in ``ps``.

**Inside gunicorn's master** (``serve``), two things need care. gunicorn forks its own
workers at any time; a fork in the middle of :class:`subprocess.Popen` would hand the
new gunicorn worker the pipe through which ``Popen`` learns that its child started, and
``Popen`` would wait until that gunicorn worker ends. So a fork waits while a worker is
being started (:func:`os.register_at_fork` and one lock). And gunicorn's master reaps
every child that ends, ours included: a worker's end is seen either by reaping it first
or by finding it reaped (its status then unknown).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("kzr_wsgi.pipeline")

#: The name a child takes in the queue (the supervisor's choice, so it can end its leases).
NAME_ENV = "KZR_PIPELINE_WORKER_NAME"
#: The supervisor's process id: a child whose parent is no longer it stops.
PARENT_ENV = "KZR_PIPELINE_PARENT"
#: Seconds between two starts of a worker that keeps dying: first, and at most.
FIRST_PAUSE, LONGEST_PAUSE = 1.0, 60.0
#: Seconds a stopping worker is given before it is killed.
STOP_TIMEOUT = 30.0
#: Held while a worker is started; any ``os.fork`` of this process waits for it.
_STARTING = threading.Lock()
os.register_at_fork(before=_STARTING.acquire, after_in_parent=_STARTING.release,
                    after_in_child=_STARTING.release)


@dataclass
class _Child:
    """One worker process slot: its process, its name, how soon it may start again."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    name: str = ""
    pause: float = FIRST_PAUSE
    not_before: float = 0.0
    started: float = field(default=0.0)
    #: Ended for good (``restart=False``).
    finished: bool = False


class Supervisor:
    """Keeps ``count`` worker processes running (see the module docstring).

    :param env: the children's environment (the options, as ``KZR_WORKER_…``).
    :param restart: start a worker again when it ends (``False``: ``--once``, where a
        worker ending is the work being done).
    :param released: told the name of each worker that died (to end its leases).
    """

    def __init__(self, count: int, env: Mapping[str, str], *, restart: bool = True,
                 released: Callable[[str], Any] | None = None) -> None:
        self.count = count
        self.env = dict(env)
        self.restart = restart
        self.released = released
        self._children = [_Child(i) for i in range(count)]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: Exit statuses of the children that ended (``--once``: all 0 when all went well).
        self.statuses: list[int] = []

    def start(self) -> None:
        """Start the workers and the thread that watches them."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="kzr-workers", daemon=True)
        self._thread.start()

    def wait(self) -> bool:
        """Wait until every worker has ended (``restart=False``); True if all ended well."""
        if self._thread is not None:
            self._thread.join()
        return all(status == 0 for status in self.statuses)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """End every worker: ``SIGTERM``, then ``SIGKILL`` after ``timeout`` seconds."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            procs = [c.proc for c in self._children if c.proc is not None]
        for proc in procs:
            if not ended(proc)[0]:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            while not ended(proc)[0]:
                if time.monotonic() > deadline:
                    proc.kill()
                    deadline = time.monotonic() + 5  # dies at once: then it is reaped
                time.sleep(0.05)

    def pids(self) -> list[int]:
        """The running workers' process ids."""
        with self._lock:
            return [c.proc.pid for c in self._children
                    if c.proc is not None and c.proc.returncode is None]

    def _watch(self) -> None:
        while not self._stop.is_set():
            running = False
            for child in self._children:
                running |= self._tend(child)
            if not running and not self.restart:
                return
            self._stop.wait(0.5)

    def _tend(self, child: _Child) -> bool:
        """Start ``child`` when due, note its end; True while it runs or will again."""
        if child.finished:
            return False
        proc = child.proc
        if proc is not None:
            done, status = ended(proc)
            if not done:
                return True
            self._ended(child, status)
            if not self.restart:
                child.finished = True
                return False
        if time.monotonic() < child.not_before or self._stop.is_set():
            return True
        self._spawn(child)
        return True

    def _ended(self, child: _Child, status: int | None) -> None:
        self.statuses.append(-1 if status is None else status)
        with self._lock:
            child.proc = None
        if status == 0 and self.restart:
            # A worker ends well only when told to: a signal from outside, most often the
            # one the whole service gets when it is stopped (systemd, or a signal to the
            # process group), which reaches the workers before the server stops this
            # supervisor. No failure, so no warning; it is started again after the pause
            # unless the server stops first.
            log.info("background worker %d (%s) stopped when told to; starting it again "
                     "unless the server is stopping", child.index, child.name)
        elif status != 0 or self.restart:
            said = "reaped by the server" if status is None else f"with status {status}"
            log.warning("background worker %d (%s) ended %s%s", child.index, child.name,
                        said, "; starting it again" if self.restart else "")
        lived = time.monotonic() - child.started
        child.pause = FIRST_PAUSE if lived > LONGEST_PAUSE else min(child.pause * 2,
                                                                    LONGEST_PAUSE)
        child.not_before = time.monotonic() + child.pause
        if self.released is not None and (status != 0 or self.restart):
            try:
                self.released(child.name)
            except Exception:  # the catalog out of reach: the leases end by themselves
                log.exception("the jobs of worker %s could not be released", child.name)

    def _spawn(self, child: _Child) -> None:
        child.name = f"{socket.gethostname()}:{uuid.uuid4().hex[:12]}"
        env = {**self.env, NAME_ENV: child.name, PARENT_ENV: str(os.getpid())}
        try:
            with _STARTING:  # no fork of this process meanwhile (see the module docstring)
                proc = subprocess.Popen([sys.executable, "-m", "kzr_wsgi", "worker"], env=env,
                                        stdin=subprocess.DEVNULL)
        except OSError as exc:
            log.error("background worker %d could not be started: %s", child.index, exc)
            child.not_before = time.monotonic() + LONGEST_PAUSE
            return
        with self._lock:
            child.proc = proc
        child.started = time.monotonic()
        log.info("background worker %d started (process %d)", child.index, proc.pid)


def ended(proc: subprocess.Popen[bytes]) -> tuple[bool, int | None]:
    """Whether ``proc`` has ended, and its exit status (``None``: reaped elsewhere, so
    unknown; a signal's is minus its number)."""
    if proc.returncode is not None:
        return True, proc.returncode
    try:
        pid, status = os.waitpid(proc.pid, os.WNOHANG)
    except ChildProcessError:  # reaped by gunicorn's master before we looked
        proc.returncode = -1
        return True, None
    if pid == 0:
        return False, None
    proc.returncode = os.waitstatus_to_exitcode(status)
    return True, proc.returncode


def orphaned() -> bool:
    """True in a child whose supervisor is gone (its parent is no longer the one it had)."""
    parent = os.environ.get(PARENT_ENV)
    return parent is not None and os.getppid() != int(parent)
