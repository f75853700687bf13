"""Send a stored file back over WSGI: ``GET``, ``HEAD``, conditional requests and ``Range``.

One place for it, used by the middleware's read-back and by the UI's audio URLs:
werkzeug's :meth:`~werkzeug.wrappers.Response.make_conditional` answers ``If-None-Match``,
``If-Modified-Since`` and ``Range`` (``206``, or ``416`` for a range past the end), and the
file goes out through the server's ``wsgi.file_wrapper`` when it has one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.wrappers import Response
from werkzeug.wsgi import wrap_file

from .recording import StoredFile

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


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
