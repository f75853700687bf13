"""Running the receiver on its own: the gunicorn embedding and the direct body read.

:mod:`~kzr_wsgi.server.gunicorn` runs a WSGI app under gunicorn's ``gthread`` workers
(what ``kzr-wsgi serve`` uses); :mod:`~kzr_wsgi.server.fastread` reads a request body
straight from gunicorn's socket. ``from kzr_wsgi.server import gunicorn_options, run``
keeps working as before.
"""

from __future__ import annotations

from .gunicorn import DEFAULT_THREADS, DEFAULT_WORKERS, gunicorn_options, run

__all__ = ["DEFAULT_THREADS", "DEFAULT_WORKERS", "gunicorn_options", "run"]
