"""A handler of your own: keep each recording where you like, with the same promise.

A handler is any callable that takes a :class:`~kzr_wsgi.Recording`, reads
``recording.stream`` to its end, and returns only when the bytes are safe. Returning
answers Kazoo ``201``; raising answers an error, and Kazoo retries later. This one
writes every recording to one flat directory, named by its call id and
``recording_id``, and makes it durable before it returns.

Run it::

    KZR_ROOT=/srv/flat \\
        gunicorn -c examples/gunicorn.conf.py --chdir examples custom_handler:application

For anything real, start from :class:`~kzr_wsgi.DirectoryStore` (retries kept as one
copy, a sidecar per recording, read-back, the catalog): a handler is for when the bytes
must go somewhere else (a database, a queue, another service).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from kzr_wsgi import KazooRecordings, Recording, Stored

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


class FlatDirectory:
    """Every recording as ``<call id>.<recording_id>.<sha256 prefix>.<ext>`` in one directory.

    The body's hash is part of the name, so a retry of the same recording finds its own
    file (one copy), and a different body under the same name never overwrites it.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def __call__(self, rec: Recording) -> Stored:
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".partial-")
        try:
            with os.fdopen(fd, "wb") as out:
                # Exactly the body, then b""; BodyIncomplete if the client stops early
                # (let it through: Kazoo gets 400 and retries).
                while block := rec.stream.read(1 << 20):
                    digest.update(block)
                    size += len(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            sha256 = digest.hexdigest()
            # The call id is untrusted text: quote() makes it part of one file name,
            # never a path.
            parts = [rec.call_id or rec.filename, rec.recording_id or "-", sha256[:16], rec.ext]
            target = self.root / ".".join(quote(p, safe="") for p in parts)
            try:
                os.link(tmp, target)  # never replaces: a visible file is complete and final
                created = True
            except FileExistsError:
                created = False  # a retry: these very bytes are already kept
        finally:
            os.unlink(tmp)
        dirfd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dirfd)  # the name itself is durable before Kazoo hears 201
        finally:
            os.close(dirfd)
        return Stored(location=str(target), size=size, sha256=sha256, created=created)


def not_found(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Whatever is not a recording."""
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not a Kazoo recording URL\n"]


application = KazooRecordings(not_found, FlatDirectory(os.environ.get("KZR_ROOT", "./flat")))
