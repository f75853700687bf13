"""The UI's answers: JSON, HTML and errors, each with the security headers.

Every answer under the UI's prefix carries :data:`SECURITY_HEADERS`: a
``Content-Security-Policy`` that allows no inline script and nothing from elsewhere
(caller names come from SIP headers anyone can set), ``nosniff``, ``no-referrer``
(a share link's token never leaves in a ``Referer``) and ``DENY`` for frames.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from werkzeug.wrappers import Response

from .. import errors

#: No inline script or style, nothing from elsewhere: markup that slips into the page
#: through a caller name has nothing it could run or load.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
#: Sent with every answer under the prefix.
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
#: The challenge a script without credentials gets (never a browser: see ``cookies``).
BASIC_CHALLENGE = ("WWW-Authenticate", 'Basic realm="kzr_wsgi recordings", charset="UTF-8"')


def secure(response: Response) -> Response:
    """``response`` with :data:`SECURITY_HEADERS`."""
    for name, value in SECURITY_HEADERS:
        response.headers[name] = value
    return response


def json_response(status: int, data: Any, headers: Sequence[tuple[str, str]] = ()) -> Response:
    """``data`` as JSON, never cached."""
    response = Response(json.dumps(data, separators=(",", ":")), status=status,
                        mimetype="application/json", headers=list(headers))
    response.headers["Cache-Control"] = "no-store"
    return secure(response)


def html_response(status: int, html: str, headers: Sequence[tuple[str, str]] = ()) -> Response:
    """A page made for this request (a token or a nonce in it): never cached."""
    response = Response(html, status=status, mimetype="text/html", headers=list(headers))
    response.headers["Cache-Control"] = "no-store"
    return secure(response)


def error_response(exc: errors.KzrError, headers: Sequence[tuple[str, str]] = ()) -> Response:
    """One of the project's errors as JSON, with the status :data:`kzr_wsgi.errors.STATUS`
    gives it (a 5xx says only "unavailable": what failed behind is not the viewer's)."""
    status = errors.status_of(exc)
    extra = list(headers)
    if isinstance(exc, errors.TooManyAttempts):
        extra.append(("Retry-After", str(max(1, math.ceil(exc.retry_after)))))
    return json_response(status, {"error": str(exc) if status < 500 else "unavailable"}, extra)
