"""The receiver in front of any WSGI application, with nothing but the middleware.

``site`` stands for the application you already have (Django's, Flask's, Pyramid's,
Bottle's: any callable ``(environ, start_response)``). Kazoo's uploads under ``/kazoo``
are taken by :class:`~kzr_wsgi.KazooRecordings`; every other request reaches ``site``
with the very same ``environ`` and nothing read from its body.

Run it::

    KZR_ROOT=/srv/recordings \\
        gunicorn -c examples/gunicorn.conf.py --chdir examples wsgi_app:application

Kazoo's callflow ``url``: ``http://<this host>:8080/kazoo``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from kzr_wsgi import DirectoryStore, KazooRecordings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def site(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The application you already have."""
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [b"the rest of the site\n"]


application = KazooRecordings(
    site,
    DirectoryStore(os.environ.get("KZR_ROOT", "./recordings")),
    prefix="/kazoo",
)
