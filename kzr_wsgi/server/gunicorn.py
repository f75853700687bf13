"""Run a WSGI app under the production server ``kzr-wsgi serve`` embeds (gunicorn).

Why gunicorn, with threaded workers (``gthread``):

* it hands the request body to the app as it arrives (waitress buffers whole bodies
  to its own disk first; a 691 MB WAV would be on the server's disk before the
  receiver could refuse it);
* a ``gthread`` worker's heartbeat runs in its own loop, so a three-hour recording
  uploading slowly is never killed by the worker timeout (a ``sync`` worker would be);
* it answers ``Expect: 100-continue`` (curl's and FreeSWITCH's default for PUT) and
  decodes chunked bodies, marking them terminated;
* it gives ``RAW_URI``, so an encoded ``%2F`` in a call id stays apart from ``/``.

The app is built once in the master (``preload_app``), so the store finishes the
commits and sweeps the files of writers that died once at start-up, before any worker
takes an upload; every process then repeats that every few seconds while it serves.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

#: Default worker processes: two keep one upload's fsync from stalling the other's.
DEFAULT_WORKERS = 2
#: Threads per worker: concurrent uploads each worker takes (Kazoo ends many calls at once).
DEFAULT_THREADS = 16


class MaskShareTokens(logging.Filter):
    """Masks share links' tokens in every record it sees (a token opens a recording)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Here, not at the top: the UI's package imports the server's (through the stores).
        from ..ui.shares import mask_tokens

        message = record.getMessage()
        masked = mask_tokens(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class MaskingLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger (error and access logs) with share links' tokens masked.

    ``serve`` sets it as gunicorn's ``logger_class``; a ``gunicorn.conf.py`` can too:
    ``logger_class = "kzr_wsgi.server.gunicorn.MaskingLogger"``.
    """

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        for logger in (self.error_log, self.access_log):
            logger.addFilter(MaskShareTokens())


class _Embedded(BaseApplication):  # type: ignore[misc]
    def __init__(self, app: WSGIApplication, options: dict[str, Any]) -> None:
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            # Settings newer than the installed gunicorn (control_socket_disable came
            # with 24) are skipped rather than fatal.
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> WSGIApplication:
        return self._app


def gunicorn_options(
    host: str,
    port: int,
    *,
    workers: int = DEFAULT_WORKERS,
    threads: int = DEFAULT_THREADS,
    certfile: str | None = None,
    keyfile: str | None = None,
    access_log: str | None = None,
) -> dict[str, Any]:
    """The gunicorn settings ``kzr-wsgi serve`` uses, also for a ``gunicorn.conf.py``.

    With ``certfile`` and ``keyfile`` (PEM) gunicorn itself terminates TLS. With
    ``access_log`` (a file, ``-`` for stderr) gunicorn logs each request there; share
    links' tokens are masked in it and in the error log (:class:`MaskingLogger`).
    """
    if (certfile is None) != (keyfile is None):
        raise ValueError("TLS needs both a certificate file and a key file")
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    tls = {"certfile": certfile, "keyfile": keyfile} if certfile is not None else {}
    return {
        **tls,
        "bind": [bind],
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        # Only a stuck worker loop trips this; an upload in progress does not.
        "timeout": 60,
        "graceful_timeout": 30,
        "keepalive": 30,
        # Room for a 1,000-character call id, percent-encoded, plus 4.x's metadata.
        "limit_request_line": 8190,
        "preload_app": True,
        # The scheme is https only over gunicorn's own TLS: whether a proxy's
        # X-Forwarded-Proto is believed is --trust-proxy's to say (gunicorn would
        # believe any loopback peer).
        "secure_scheme_headers": {},
        "accesslog": access_log,
        "logger_class": MaskingLogger,
        "errorlog": "-",
        "loglevel": os.environ.get("KZR_LOG_LEVEL", "info").lower(),
        "proc_name": "kzr-wsgi",
        # One shared control socket path would make two receivers on a host collide.
        "control_socket_disable": True,
    }


def run(app: WSGIApplication, options: dict[str, Any]) -> None:
    """Serve ``app`` with gunicorn until interrupted (Ctrl-C stops it cleanly)."""
    _Embedded(app, options).run()
