"""Deliberately broken receivers for ``kzr-wsgi check`` to find out (run by ``wsgi_server``).

Each keeps files in memory by URL path only, as naive receivers do:

* ``php``: the Kazoo documentation's PHP example: ``file_put_contents($name,
  file_get_contents('php://input'))``: takes whatever arrived, a cut-short body
  included, and answers ``200``; a later body under the same name overwrites.
* ``overwrite``: checks the length (refuses short bodies) but keys files on the name
  alone, so a second recording of one call replaces the first.
* ``blackhole``: answers ``201`` to every upload and keeps nothing (reads ``404``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from werkzeug.wrappers import Response

Start = Callable[..., Any]


def broken(flavour: str) -> Callable[[dict[str, Any], Start], list[bytes]]:
    """The WSGI app for ``flavour`` (see the module docstring)."""
    files: dict[str, bytes] = {}
    lock = threading.Lock()

    def reply(start_response: Start, status: str, body: bytes = b"") -> list[bytes]:
        start_response(status, [("Content-Type", "application/octet-stream"),
                                ("Content-Length", str(len(body)))])
        return [body]

    def app(environ: dict[str, Any], start_response: Start) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ["REQUEST_METHOD"]
        if method == "GET":
            with lock:
                found = files.get(path)
            if found is None:
                return reply(start_response, "404 Not Found")
            # Reads themselves work (Range too): only the storing is broken.
            response = Response(found, mimetype="audio/mpeg").make_conditional(
                environ, accept_ranges=True, complete_length=len(found))
            return response(environ, start_response)  # type: ignore[no-any-return]
        announced = int(environ.get("CONTENT_LENGTH") or 0)
        # Reads what arrived: a client that stops early just gives fewer bytes.
        body = environ["wsgi.input"].read(announced)
        if flavour == "blackhole":
            return reply(start_response, "201 Created")
        if flavour == "overwrite" and len(body) != announced:
            return reply(start_response, "400 Bad Request")
        with lock:
            files[path] = body
        return reply(start_response, "200 OK")

    return app
