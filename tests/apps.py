"""WSGI apps the integration tests run under real servers (see ``servers.wsgi_server``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from werkzeug.middleware.lint import LintMiddleware

from kzr_wsgi import DirectoryStore, KazooRecordings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def host_app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    """A host app that reports what it was given: method, path, and whether it saw the body."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    payload = json.dumps({
        "host": True,
        "method": environ["REQUEST_METHOD"],
        "path": environ.get("PATH_INFO", ""),
        "query": environ.get("QUERY_STRING", ""),
        "body_len": len(body),
        "kzr_keys": sorted(k for k in environ if "kzr" in k.lower()),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(payload)))])
    return [payload]


def recordings_app(root: str, unnamed_temporaries: bool = True, preflight: bool = False,
                   **options: Any) -> WSGIApplication:
    """``host_app`` wrapped by the middleware over a ``DirectoryStore(root)``, linted.

    ``unnamed_temporaries=False`` gives the store the named temporary files of a
    filesystem without ``O_TMPFILE``. ``preflight`` starts the store before serving, as
    ``kzr-wsgi serve`` does (its first upkeep pass, then its upkeep thread); without it
    the store starts on its first use, as under any host app.
    """
    store = DirectoryStore(root, unnamed_temporaries=unnamed_temporaries)
    if preflight:
        store.preflight()
    return LintMiddleware(KazooRecordings(host_app, store, **options))
