"""The project's own errors, and the one table of the HTTP status each is answered with.

Every failure that can reach a client is one of these types. Parsing, bodies and
stores raise them without knowing anything of HTTP; the edges that answer clients
(the middleware, the search page, the metrics app) map each type to a status code
through :data:`STATUS` (:func:`status_of`), and nowhere else.

>>> status_of(BodyTooLarge("over 2 GiB")), status_of(KzrError("unmapped"))
(413, 500)
"""

from __future__ import annotations


class KzrError(Exception):
    """Base class of every error kzr_wsgi raises on purpose.

    The message is short, plain text and safe to show to the client.
    """


class MalformedUpload(KzrError):
    """The request is clearly meant for the receiver but cannot be a valid upload.

    For example a ``call_recording_`` name with an extension outside the allowlist,
    an empty call id, or a name longer than the configured limit.
    """


class LengthRequired(KzrError):
    """The request has neither ``Content-Length`` nor a terminated chunked body."""


class BodyTooLarge(KzrError):
    """The body is, or grew, larger than the configured maximum size."""


class BodyIncomplete(KzrError):
    """The body ended (or the client went away) before all announced bytes arrived."""


class BadRequest(KzrError):
    """A request the receiver cannot take as asked: a query parameter, a paging cursor."""


class MultipartError(KzrError):
    """A ``multipart/form-data`` body does not have the framing Kazoo sends."""


class StorageFull(KzrError):
    """The store has no room left (``ENOSPC``, ``EDQUOT``): nothing was kept."""


class StoreUnavailable(KzrError):
    """The store could not be reached or refused the write: nothing was kept."""


class NotFound(KzrError):
    """No stored file answers the request."""


class ReadNotSupported(KzrError):
    """The handler cannot serve reads, but the mount was asked to serve them."""


class Unauthorized(KzrError):
    """No credential, or a wrong one, where HTTP Basic authentication is required."""


class Forbidden(KzrError):
    """The client is outside the allowlist, or the URL token is missing or wrong.

    Also a request the credentials it carries do not allow: a viewer without the right
    to share, a page's request without its CSRF token.
    """


class TooManyAttempts(KzrError):
    """Too many failed sign-ins: refused for ``retry_after`` seconds, the password unread."""

    def __init__(self, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        #: Seconds until the next try may be made (``Retry-After``).
        self.retry_after = retry_after


#: Each error type's status. The first class in the exception's MRO found here wins;
#: an error of none of them is answered ``500``.
STATUS: dict[type[KzrError], int] = {
    MalformedUpload: 400,
    MultipartError: 400,
    BodyIncomplete: 400,
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    ReadNotSupported: 405,
    LengthRequired: 411,
    BodyTooLarge: 413,
    TooManyAttempts: 429,
    StoreUnavailable: 503,
    StorageFull: 507,
}


def status_of(exc: KzrError) -> int:
    """The HTTP status ``exc`` is answered with (:data:`STATUS`; ``500`` when unmapped)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500
