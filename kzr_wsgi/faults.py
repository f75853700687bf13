"""Named crash points, for the tests that kill a store in the middle of its commit.

A store calls :func:`crash_point` at each step of its commit. Nothing happens unless the
environment variable ``KZR_CRASH_AT`` names that point; then the process ends at once
with ``os._exit`` (no ``finally``, no ``atexit``: as close to ``SIGKILL`` as Python gets;
the kernel still closes descriptors, frees unnamed temporary files and drops ``flock``
locks, as it does for a killed process)::

    KZR_CRASH_AT=dir.placed python -m kzr_wsgi serve --root /tmp/r   # dies in the commit

The points, in commit order:

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

Only tests set the variable; a production process pays one dictionary lookup per point.
"""

from __future__ import annotations

import os

#: The environment variable naming the point to die at.
CRASH_AT_ENV = "KZR_CRASH_AT"
#: The exit status of a process that died at a crash point (``EX_SOFTWARE``).
CRASH_STATUS = 70
#: Every point a store calls, so tests can check they name a real one.
POINTS = frozenset(
    ("dir.marked", "dir.placed", "dir.sidecar", "dir.indexed", "s3.completed", "s3.sidecar")
)


def crash_point(name: str) -> None:
    """End the process here, at once, when ``KZR_CRASH_AT`` is ``name``."""
    if os.environ.get(CRASH_AT_ENV) == name:
        os._exit(CRASH_STATUS)
