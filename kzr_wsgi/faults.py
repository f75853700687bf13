"""Named crash points: the one fault-injection hook, for tests only.

The stores' commits, prune's removals and the pipeline's workers call :func:`crash_point`
at each of their steps.
Nothing happens unless the environment variable ``KZR_CRASH_AT`` names that point; then
the process kills itself with ``SIGKILL`` at once (no ``finally``, no ``atexit``: the
kernel closes descriptors, frees unnamed temporary files and drops ``flock`` locks, as
it does for any killed process)::

    KZR_CRASH_AT=dir.placed python -m kzr_wsgi serve --root /tmp/r   # dies in the commit
    KZR_CRASH_AT=prune.file:3 kzr-wsgi prune --root /tmp/r ...      # at the 3rd removal

``POINT:N`` dies the ``N``-th time this process reaches the point (``POINT`` alone: the
first time). ``KZR_TEST_PRUNE_KILL=STEP:N``, the older spelling of ``prune.STEP:N``, is
still read when ``KZR_CRASH_AT`` is not set.

The points, in the order each job reaches them:

``dir.marked``
    :class:`~kzr_wsgi.stores.DirectoryStore`: the pending marker is written; the file
    is not yet in place.
``dir.placed``
    The file is linked into place; no sidecar and no index entry yet.
``dir.sidecar``
    The sidecar is in place; no index entry yet.
``dir.indexed``
    The index entry is in place; no catalog row yet, and the marker is not yet removed.
``s3.completed``
    :class:`~kzr_wsgi.stores.s3.S3Store`: the object is complete; no sidecar and no
    index entry yet.
``s3.sidecar``
    The sidecar is written; no index entry yet.
``prune.journal``
    :func:`~kzr_wsgi.housekeeping.retention.prune`: the removal's journal marker is
    written; nothing else yet.
``prune.audit``
    The audit line is written; the copy is still indexed.
``prune.index``
    The index entry is gone; the catalog row and the file are still there.
``prune.catalog``
    The catalog row is gone; the file is still there.
``prune.file``
    The file and its sidecar are gone; the journal marker is not yet removed.
``erase.journal``
    :mod:`kzr_wsgi.housekeeping.eraser`: the erasure's journal marker (ids and hashes)
    is written; nothing else yet.
``erase.tombstone``
    The tombstone is written; no audit line yet.
``erase.audit``
    The ``erase`` audit line is written; the copy is still indexed.
``erase.index``
    The index entry is gone; the catalog row and the files are still there.
``erase.catalog``
    The catalog row (jobs, segments, share links) is gone; the files are still there.
``erase.file``
    The file, its companions and its sidecar are gone; a bucket's versions are not yet.
``erase.versions``
    Every version is gone; the journal marker is not yet removed.
``worker.claimed``
    :class:`~kzr_wsgi.pipeline.worker.Worker`: a job is claimed (its lease held); nothing
    of it is done yet.
``worker.decoding``
    Between two decoded blocks of the job's recording (``:N``: the ``N``-th block).

Never set it in production; a production process pays two dictionary lookups per point.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

#: The environment variable naming the point to die at (``POINT`` or ``POINT:N``).
CRASH_AT_ENV = "KZR_CRASH_AT"
#: The older spelling for prune's points: ``STEP:N`` means ``prune.STEP:N``.
PRUNE_KILL_ENV = "KZR_TEST_PRUNE_KILL"
#: How a process that died at a crash point ends, as :attr:`subprocess.Popen.returncode`
#: and :func:`os.waitstatus_to_exitcode` report it: killed by ``SIGKILL``.
CRASH_STATUS = -signal.SIGKILL
#: Every point the code calls, so tests can check they name a real one.
POINTS = frozenset((
    "dir.marked", "dir.placed", "dir.sidecar", "dir.indexed", "s3.completed", "s3.sidecar",
    "prune.journal", "prune.audit", "prune.index", "prune.catalog", "prune.file",
    "worker.claimed", "worker.decoding",
))

_passed: Counter[str] = Counter()
_lock = threading.Lock()


def armed() -> tuple[str, int] | None:
    """The point the environment names and at which pass to die there; ``None`` if none."""
    spec = os.environ.get(CRASH_AT_ENV)
    if not spec:
        old = os.environ.get(PRUNE_KILL_ENV)
        if not old:
            return None
        spec = f"prune.{old}"
    point, _, nth = spec.partition(":")
    return point, int(nth or "1")


def crash_point(name: str) -> None:
    """Kill this process here when ``KZR_CRASH_AT`` names ``name`` (and this pass)."""
    target = armed()
    if target is None or target[0] != name:
        return
    with _lock:
        _passed[name] += 1
        due = _passed[name] == target[1]
    if due:
        os.kill(os.getpid(), signal.SIGKILL)
