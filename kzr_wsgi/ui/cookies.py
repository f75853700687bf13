"""The UI's cookies and what a request says about itself: TLS, browser, same site.

Pure functions of a WSGI environ and settings; nothing here keeps state.

**The session cookie** ``kzr_session``: ``HttpOnly`` (the page's script never reads it;
it gets its CSRF token from an answer), ``Path`` the UI's prefix (nothing else on the
host sees it), ``Secure`` whenever the client reached us over TLS, and
``SameSite=Lax``. Lax rather than Strict: a link to the page from mail or a ticket opens
it signed in, and what Lax still lets through from another site is a top-level ``GET``,
which changes nothing here (every request that changes something is a ``POST`` or
``DELETE`` carrying the session's CSRF token, which another site cannot read). Strict
would add nothing to that but a sign-in form after every such link.

**The sign-in cookie** ``kzr_signin`` holds a nonce whose HMAC is the sign-in form's CSRF
token (the form has no session yet): ``SameSite=Strict``, ``HttpOnly``, ten minutes.

**TLS behind a proxy.** ``X-Forwarded-Proto`` is believed only from a trusted proxy
(``--trust-proxy``), and only its right-most value, the one that proxy wrote.

>>> header = session_cookie("x" * 43, path="/ui", secure=True, max_age=43200)
>>> sorted(part.strip().split("=")[0] for part in header.split(";"))
['Expires', 'HttpOnly', 'Max-Age', 'Path', 'SameSite', 'Secure', 'kzr_session']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from werkzeug.http import dump_cookie, parse_cookie

from ..auth import IPNetwork, parse_address, parse_network
from ..forms import url_prefix

#: The session's cookie, and the sign-in form's.
SESSION_COOKIE = "kzr_session"
SIGNIN_COOKIE = "kzr_signin"
#: How long a sign-in form may stay open before it is sent (seconds).
SIGNIN_MAX_AGE = 600
#: ``Sec-Fetch-Site`` values that come from the page itself, or from no page at all.
_SAME_SITE = frozenset(("same-origin", "none"))


def session_cookie(session_id: str, *, path: str, secure: bool, max_age: int | None) -> str:
    """The ``Set-Cookie`` value that gives the browser a session.

    :param path: the UI's prefix as the browser sees it (``SCRIPT_NAME`` + prefix).
    :param secure: :func:`request_is_https` of the sign-in request.
    :param max_age: seconds (the session's longest life); ``None`` for a browser session.
    """
    return dump_cookie(SESSION_COOKIE, session_id, max_age=max_age, path=path, secure=secure,
                       httponly=True, samesite="Lax")


def clear_session_cookie(*, path: str, secure: bool) -> str:
    """The ``Set-Cookie`` value that removes the session cookie (sign-out, expired)."""
    return dump_cookie(SESSION_COOKIE, "", max_age=0, expires=0, path=path, secure=secure,
                       httponly=True, samesite="Lax")


def signin_cookie(nonce: str, *, path: str, secure: bool) -> str:
    """The ``Set-Cookie`` value for the sign-in form's nonce."""
    return dump_cookie(SIGNIN_COOKIE, nonce, max_age=SIGNIN_MAX_AGE, path=path, secure=secure,
                       httponly=True, samesite="Strict")


def clear_signin_cookie(*, path: str, secure: bool) -> str:
    """The ``Set-Cookie`` value that removes the sign-in nonce (after a sign-in)."""
    return dump_cookie(SIGNIN_COOKIE, "", max_age=0, expires=0, path=path, secure=secure,
                       httponly=True, samesite="Strict")


def request_cookie(environ: Mapping[str, Any], name: str = SESSION_COOKIE) -> str | None:
    """The value of cookie ``name`` the request carries, ``None`` when it has none."""
    header = environ.get("HTTP_COOKIE")
    if not isinstance(header, str) or not header:
        return None
    value = parse_cookie(header).get(name)
    return value if value else None


def trusted_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``--trust-proxy``'s CIDRs, parsed once."""
    return tuple(parse_network(c) for c in cidrs)


def request_is_https(environ: Mapping[str, Any], trusted: Iterable[IPNetwork] = ()) -> bool:
    """True when the client reached us over TLS: our own, or a trusted proxy's.

    :param trusted: :func:`trusted_networks` of ``--trust-proxy``; a peer outside them
        cannot make a request look encrypted by writing a header.
    """
    if environ.get("wsgi.url_scheme") == "https":
        return True
    remote = parse_address(environ.get("REMOTE_ADDR"))
    if remote is None or not any(remote in net for net in trusted):
        return False
    header = environ.get("HTTP_X_FORWARDED_PROTO")
    if not isinstance(header, str):
        return False
    values = [v.strip().lower() for v in header.split(",") if v.strip()]
    return bool(values) and values[-1] == "https"


def is_browser_request(environ: Mapping[str, Any]) -> bool:
    """True when a browser sent the request (it carries ``Sec-Fetch-Mode`` or ``-Dest``).

    Such a request never gets a ``WWW-Authenticate: Basic`` challenge: a navigation goes
    to the sign-in form, a script's request gets a plain ``401``.
    """
    return bool(environ.get("HTTP_SEC_FETCH_MODE") or environ.get("HTTP_SEC_FETCH_DEST"))


def is_navigation(environ: Mapping[str, Any]) -> bool:
    """True for a browser's page navigation (``Sec-Fetch-Mode: navigate``)."""
    return str(environ.get("HTTP_SEC_FETCH_MODE", "")).lower() == "navigate"


def basic_allowed(environ: Mapping[str, Any]) -> bool:
    """True when HTTP Basic may be taken: no session cookie, and not sent from another site.

    ``Sec-Fetch-Site`` absent (a script), ``none`` (typed by the user) or
    ``same-origin``: a page elsewhere cannot lean on credentials the browser remembers.
    """
    if request_cookie(environ) is not None:
        return False
    site = environ.get("HTTP_SEC_FETCH_SITE")
    return site is None or str(site).lower() in _SAME_SITE


def cookie_path(environ: Mapping[str, Any], prefix: str) -> str:
    """The path the UI's cookies are scoped to: ``SCRIPT_NAME`` + the UI's prefix."""
    return url_prefix(str(environ.get("SCRIPT_NAME", "")) + url_prefix(prefix))
