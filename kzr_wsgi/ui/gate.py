"""Who is asking: a signed-in session, or a script's HTTP Basic; and sign-in itself.

:meth:`Gate.identify` decides for every request under the UI's prefix that needs a
viewer (the page, the API, the audio):

1. a request carrying the session cookie is that session's, or nobody's: the session
   is resumed (:class:`~kzr_wsgi.ui.sessions.Sessions`: idle and longest life checked,
   ended on every worker and host once ended anywhere) and its viewer looked up in the
   viewer file *as it is now*: a viewer removed from it is signed out at once. HTTP
   Basic is never taken beside a session cookie;
2. otherwise HTTP Basic, for scripts, only when :func:`~kzr_wsgi.ui.cookies.basic_allowed`
   (no ``Sec-Fetch-Site`` other than ``none`` or ``same-origin``), throttled exactly as
   the sign-in form is (:meth:`Gate.check_password`).

Failed sign-ins (form or Basic) are counted per user and address and per address
(:class:`~kzr_wsgi.ui.throttle.Throttle`, kept in the catalog so every worker and host
counts together); a refused one is :class:`~kzr_wsgi.errors.TooManyAttempts` without its
password even being read. Each failure is logged (the user name as typed, escaped, and
the address; never the password) and written to the access log.

**CSRF.** A session's request that changes something (``POST``, ``DELETE``) must carry
the session's token (``X-CSRF-Token`` from the page's script, or a ``csrf`` form field):
:meth:`Gate.csrf_ok`. A Basic request has no session and no token; it cannot be forged
by another site because (a) a browser never learns Basic credentials from this UI (a
browser's request is never challenged), (b) Basic is refused beside a session cookie
and from another site (``Sec-Fetch-Site``), and (c) a Basic ``POST`` must be
``application/json``, which a page elsewhere cannot send without a CORS preflight that
is never granted (a ``DELETE`` always needs one).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from werkzeug.datastructures import Authorization
from werkzeug.wrappers import Request

from ..auth import Guard
from ..errors import TooManyAttempts, Unauthorized
from ..naming import shown
from .access import AccessAction, AccessLog, access_event
from .cookies import basic_allowed, request_cookie
from .sessions import Session, Sessions
from .throttle import Throttle
from .viewers import Viewer, Viewers

log = logging.getLogger("kzr_wsgi.ui")

#: The header the page's script sends its CSRF token in, and the form field's name.
CSRF_HEADER = "HTTP_X_CSRF_TOKEN"
CSRF_FIELD = "csrf"
#: The largest form body read for its token (an export's form of ids is the largest).
MAX_FORM_BODY = 2 * 1024 * 1024
#: Methods that change something (and so need the CSRF token, with a session).
STATE_CHANGING = frozenset(("POST", "PUT", "PATCH", "DELETE"))


class NoCredentials(Unauthorized):
    """The request carries no session and no Basic credentials that may be taken."""


class SignedOut(NoCredentials):
    """The request's session cookie names a session that has ended (its cookie is cleared)."""


class WrongCredentials(Unauthorized):
    """Basic credentials that are no viewer's."""


@dataclass(frozen=True)
class Caller:
    """Who a request is from."""

    viewer: Viewer
    #: ``None``: a script with HTTP Basic credentials.
    session: Session | None
    #: The client's address (after trusted proxies), as text; ``None`` when unknown.
    address: str | None

    @property
    def via(self) -> str:
        """``session`` or ``basic``."""
        return "session" if self.session is not None else "basic"

    def info(self, idle: float) -> dict[str, Any]:
        """``GET {ui}/api/session``: who, how, what they may do, and the CSRF token.

        :param idle: the sessions' idle limit in seconds.
        """
        viewer, session = self.viewer, self.session
        return {
            "user": viewer.user, "via": self.via, "share": viewer.share,
            "accounts": list(viewer.accounts) if viewer.accounts is not None else None,
            "csrf": session.csrf if session else None,
            "expires_at": datetime.fromtimestamp(session.record.expires_at, timezone.utc
                                                 ).isoformat() if session else None,
            "idle_timeout": int(idle) if session else None,
        }

    @property
    def listener(self) -> str:
        """Who listens, for telling plays apart: the session, or the Basic viewer."""
        if self.session is not None:
            return "session:" + self.session.record.id_hash
        return "basic:" + self.viewer.user


class Gate:
    """Identifies callers and signs viewers in (see the module docs).

    :param proxies: a :class:`~kzr_wsgi.auth.Guard` with ``--trust-proxy``'s networks,
        for the client's address.
    :param access: where sign-ins and failures are logged; ``None``: not logged.
    """

    def __init__(self, viewers: Viewers, sessions: Sessions, throttle: Throttle, *,
                 proxies: Guard | None = None, access: AccessLog | None = None) -> None:
        self.viewers = viewers
        self.sessions = sessions
        self.throttle = throttle
        self.proxies = proxies or Guard()
        self.access = access

    def address(self, environ: Mapping[str, Any]) -> str | None:
        """The client's address as text (after trusted proxies), ``None`` when unknown."""
        found = self.proxies.client_address(dict(environ))
        return None if found is None else str(found)

    def identify(self, environ: Mapping[str, Any]) -> Caller:
        """The caller of ``environ``; :raises Unauthorized: (see the subclasses) or
        :raises TooManyAttempts: Basic credentials from a throttled user or address."""
        cookie = request_cookie(environ)
        address = self.address(environ)
        if cookie is not None:
            session = self.sessions.resume(cookie)
            viewer = self.viewers.get(session.user) if session is not None else None
            if session is None or viewer is None:
                # Ended, expired, or its viewer gone from the file: signed out everywhere.
                self.sessions.end(cookie)
                raise SignedOut("signed out: sign in again")
            return Caller(viewer, session, address)
        header = environ.get("HTTP_AUTHORIZATION")
        if not isinstance(header, str) or not basic_allowed(environ):
            raise NoCredentials("viewer credentials required")
        auth = Authorization.from_header(header)
        if auth is None or auth.type != "basic" or auth.username is None:
            raise NoCredentials("viewer credentials required")
        viewer = self.check_password(auth.username, auth.password or "", address, via="basic")
        if viewer is None:
            raise WrongCredentials("wrong viewer credentials")
        return Caller(viewer, None, address)

    def check_password(self, user: str, password: str, address: str | None, *,
                       via: str) -> Viewer | None:
        """The viewer these credentials are, throttled; ``None`` when they are nobody's.

        :raises TooManyAttempts: the user from this address, or the address, is refused.
        """
        wait = self.throttle.refused(user, address)
        if wait is not None:
            log.warning("viewer sign-in refused (throttled) for user %s from %s (%s)",
                        shown(user), address or "an unknown address", via)
            raise TooManyAttempts("too many failed sign-ins: try again later", wait)
        viewer = self.viewers.check(user, password)
        if viewer is None:
            blocked = self.throttle.failed(user, address)
            log.warning("viewer sign-in failed for user %s from %s (%s)%s", shown(user),
                        address or "an unknown address", via,
                        f"; refused for {blocked:.0f} s" if blocked else "")
            self._log(AccessAction.SIGNIN_FAILED, user, address, via)
            return None
        self.throttle.succeeded(user, address)
        return viewer

    def sign_in(self, environ: Mapping[str, Any], user: str, password: str) -> Session | None:
        """The sign-in form's work: a new session, or ``None`` for wrong credentials.

        The session the request carried (a planted one included) is ended, never reused.
        :raises TooManyAttempts: as :meth:`check_password`.
        """
        address = self.address(environ)
        viewer = self.check_password(user, password, address, via="form")
        if viewer is None:
            return None
        session = self.sessions.start(viewer.user, replacing=request_cookie(environ))
        self._log(AccessAction.SIGNIN, viewer.user, address, "form")
        return session

    def sign_out(self, caller: Caller) -> None:
        """End the caller's session on every worker and host."""
        if caller.session is not None:
            self.sessions.end(caller.session.id)
            self._log(AccessAction.SIGNOUT, caller.viewer.user, caller.address, "form")

    @staticmethod
    def csrf_ok(caller: Caller, environ: Mapping[str, Any], form_token: str | None) -> bool:
        """True when a state-changing request may go on (see the module docs on CSRF)."""
        if caller.session is not None:
            header = environ.get(CSRF_HEADER)
            token = header if isinstance(header, str) else form_token
            return Sessions.csrf_ok(caller.session, token)
        content_type = str(environ.get("CONTENT_TYPE", "")).split(";")[0].strip().lower()
        return environ.get("REQUEST_METHOD") != "POST" or content_type == "application/json"

    def _log(self, action: AccessAction, user: str, address: str | None, via: str) -> None:
        if self.access is not None:
            self.access.record(access_event(action, viewer=user, address=address, via=via))


def form_token(request: Request, max_body: int = MAX_FORM_BODY) -> str | None:
    """The ``csrf`` field of a form body (the body is read once, and kept for the route)."""
    if request.mimetype != "application/x-www-form-urlencoded":
        return None
    request.max_content_length = request.max_form_memory_size = max_body
    request.get_data(cache=True)
    return request.form.get(CSRF_FIELD)
