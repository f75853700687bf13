"""What the edges send back over WSGI: a stored file, a short plain-text answer, an error.

A stored file (:func:`send_stored`), in one place for the middleware's read-back and
the UI's audio URLs: werkzeug's :meth:`~werkzeug.wrappers.Response.make_conditional`
answers ``If-None-Match``, ``If-Modified-Since`` and ``Range`` (``206``, or ``416`` for a
range past the end), and the file goes out through the server's ``wsgi.file_wrapper``
when it has one. A plain-text answer (:func:`send_text`), and one of the project's errors
as the status :data:`kzr_wsgi.errors.STATUS` gives it (:func:`send_error`), for the
middleware and the metrics app.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.wrappers import Response
from werkzeug.wsgi import wrap_file

from . import errors
from .recording import StoredFile

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("kzr_wsgi")


def send_stored(
    environ: WSGIEnvironment,
    start_response: StartResponse,
    stored: StoredFile,
    *,
    mimetype: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> Iterable[bytes]:
    """Answer the request with ``stored``'s bytes (closed when the reply is done).

    :param mimetype: overrides ``stored.content_type`` (the UI sends audio types only).
    :param headers: added to every answer, the ``416`` included.
    """
    response = Response(
        wrap_file(environ, stored.fileobj),
        mimetype=mimetype or stored.content_type,
        direct_passthrough=True,
        headers=list(headers),
    )
    response.content_length = stored.size
    response.last_modified = stored.last_modified
    response.set_etag(stored.etag)
    try:
        response = response.make_conditional(
            environ, accept_ranges=True, complete_length=stored.size
        )
    except RequestedRangeNotSatisfiable as exc:
        stored.close()
        refused = exc.get_response(environ)
        refused.headers.extend(headers)
        return refused(environ, start_response)
    return response(environ, start_response)


def send_text(
    environ: WSGIEnvironment,
    start_response: StartResponse,
    status: int,
    text: str,
    headers: Sequence[tuple[str, str]] = (),
) -> Iterable[bytes]:
    """Answer with ``status`` and ``text`` as ``text/plain`` (UTF-8)."""
    response = Response(text, status=status, mimetype="text/plain", headers=list(headers))
    return response(environ, start_response)


def send_error(
    exc: errors.KzrError, environ: WSGIEnvironment, start_response: StartResponse
) -> Iterable[bytes]:
    """Answer with ``exc``'s status and message (a ``401`` with a Basic challenge).

    An error the table does not map is a bug: logged, and answered ``500`` without its
    message.
    """
    status = errors.status_of(exc)
    headers: list[tuple[str, str]] = []
    if isinstance(exc, errors.Unauthorized):
        headers.append(("WWW-Authenticate", 'Basic realm="kzr_wsgi", charset="UTF-8"'))
    if status == 500:
        log.error("unmapped error: %r", exc)
        return send_text(environ, start_response, 500, "internal error\n")
    return send_text(environ, start_response, status, f"{exc}\n", headers)
