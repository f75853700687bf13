"""The sign-in form and sign-out: what answers ``{ui}/`` without a session, ``POST
{ui}/signin`` and ``POST {ui}/signout``.

The form has no session yet, so its CSRF token is made from a random nonce kept in a
cookie of its own (``kzr_signin``: ``SameSite=Strict``, ``HttpOnly``, ten minutes; see
:mod:`kzr_wsgi.ui.cookies`); a post without the matching pair is refused (``403``) with
a fresh form. A success makes a new session (the id the request carried, if any, is
ended and never reused), sets ``kzr_session`` (``HttpOnly``, ``SameSite=Lax``,
``Secure`` when the client reached us over TLS, a trusted proxy's included) and sends the
browser to the page (``303``). Wrong credentials are ``401`` and a throttled sign-in
``429`` (``Retry-After``), each with the form again and a message that says which.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from werkzeug.wrappers import Request, Response

from ..auth import IPNetwork
from ..errors import TooManyAttempts
from .cookies import (
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    clear_session_cookie,
    clear_signin_cookie,
    cookie_path,
    request_cookie,
    request_is_https,
    session_cookie,
    signin_cookie,
)
from .gate import CSRF_FIELD, Caller, Gate
from .pages import signin_page
from .responses import html_response, secure
from .sessions import csrf_matches, csrf_token, new_nonce

#: The largest sign-in form body read (a user name and a password are short).
MAX_FORM = 16 * 1024
WRONG = "Wrong user name or password."
THROTTLED = "Too many failed sign-ins: try again in {minutes} minute(s)."
EXPIRED = "The form had expired. Please sign in again."


class SignIn:
    """The sign-in form, its post, and sign-out (see the module docs).

    :param trusted: ``--trust-proxy``'s networks, for ``Secure`` behind a TLS proxy.
    """

    def __init__(self, gate: Gate, prefix: str, *, trusted: Iterable[IPNetwork] = ()) -> None:
        self.gate = gate
        self.prefix = prefix
        self.trusted = tuple(trusted)

    def form(self, environ: Mapping[str, Any], *, status: int = 200,
             message: str | None = None, username: str = "",
             headers: Iterable[tuple[str, str]] = (), signed_out: bool = False) -> Response:
        """The form with a new nonce (and its cookie).

        :param signed_out: the request's session has ended: its cookie is cleared.
        """
        path, secure_cookie = self._cookie_args(environ)
        nonce = new_nonce()
        sent = [*headers, ("Set-Cookie", signin_cookie(nonce, path=path, secure=secure_cookie))]
        if signed_out and request_cookie(environ, SESSION_COOKIE) is not None:
            sent.append(("Set-Cookie", clear_session_cookie(path=path, secure=secure_cookie)))
        page = signin_page(self._base(environ), csrf_token(nonce), message=message,
                           username=username)
        return html_response(status, page, sent)

    def post(self, environ: Mapping[str, Any]) -> Response:
        """``POST {ui}/signin``: a session and a ``303`` to the page, or the form again."""
        request = Request(dict(environ))
        request.max_content_length = MAX_FORM
        request.max_form_memory_size = MAX_FORM
        form = request.form
        username = form.get("username", "")[:200]
        if not csrf_matches(request_cookie(environ, SIGNIN_COOKIE), form.get(CSRF_FIELD)):
            return self.form(environ, status=403, message=EXPIRED, username=username)
        try:
            session = self.gate.sign_in(environ, username, form.get("password", ""))
        except TooManyAttempts as exc:
            wait = max(1, math.ceil(exc.retry_after))
            return self.form(environ, status=429, username=username,
                             message=THROTTLED.format(minutes=math.ceil(wait / 60)),
                             headers=[("Retry-After", str(wait))])
        if session is None:
            return self.form(environ, status=401, message=WRONG, username=username)
        path, secure_cookie = self._cookie_args(environ)
        response = Response("", 303, headers=[
            ("Location", quote(self._base(environ) + "/")),
            ("Set-Cookie", session_cookie(session.id, path=path, secure=secure_cookie,
                                          max_age=int(self.gate.sessions.max_age))),
            ("Set-Cookie", clear_signin_cookie(path=path, secure=secure_cookie)),
        ])
        response.headers["Cache-Control"] = "no-store"
        return secure(response)

    def sign_out(self, environ: Mapping[str, Any], caller: Caller | None) -> Response:
        """``POST {ui}/signout``: the session ends everywhere; the cookie is cleared."""
        if caller is not None:
            self.gate.sign_out(caller)
        path, secure_cookie = self._cookie_args(environ)
        response = Response("", 303, headers=[
            ("Location", quote(self._base(environ) + "/")),
            ("Set-Cookie", clear_session_cookie(path=path, secure=secure_cookie)),
        ])
        response.headers["Cache-Control"] = "no-store"
        return secure(response)

    def _base(self, environ: Mapping[str, Any]) -> str:
        return cookie_path(environ, self.prefix)

    def _cookie_args(self, environ: Mapping[str, Any]) -> tuple[str, bool]:
        return cookie_path(environ, self.prefix), request_is_https(environ, self.trusted)
