"""Share links: a token that opens one recording without signing in; pure, no I/O.

A link is ``{public-url}{ui-prefix}/s/{token}``. The token is 256 random bits
(:func:`secrets.token_urlsafe`); only its SHA-256 is kept (:class:`Share`), so the
catalog, a backup or a replica gives no working link. A link also has an ``id`` of its
own, shown in listings and used to revoke it: the id opens nothing.

A link lives ``expires_in`` (the project's age grammar, :data:`SHORTEST` to
:data:`LONGEST`, :data:`DEFAULT_EXPIRES_IN` unless asked), and dies before that when it
is revoked, when its recording is gone, and when its maker may no longer see the
recording or share: each use checks all of these (see :mod:`kzr_wsgi.ui.share_routes`).

>>> token = new_token()
>>> len(token), is_token(token), is_token(token + "x"), is_token("../x")
(43, True, False, False)
>>> share_url("/ui", token, public_url="https://rec.example.net/") == \\
...     "https://rec.example.net/ui/s/" + token
True
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from ..ages import AgeError, format_age, parse_age
from ..errors import BadRequest

#: How long a link lives unless asked.
DEFAULT_EXPIRES_IN = timedelta(days=7)
#: The shortest life a link may be given.
SHORTEST = timedelta(hours=1)
#: The longest life a link may be given.
LONGEST = timedelta(days=30)
#: Random bytes in a token (256 bits), and what one looks like.
TOKEN_BYTES = 32
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
#: A link's token in a path or a URL (percent-encoding cannot hide it: a token is
#: URL-safe), for masking in log lines.
_TOKEN_IN_TEXT = re.compile(r"(/s/)[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")
#: What a link's id looks like (16 hex digits).
_ID = re.compile(r"[0-9a-f]{16}")
#: The path segment share links live under, below the UI's prefix.
SHARE_SEGMENT = "s"


class BadExpiry(BadRequest, ValueError):
    """``expires_in`` is not an age from :data:`SHORTEST` to :data:`LONGEST`."""


@dataclass(frozen=True)
class Share:
    """What is kept of a link (times are UTC)."""

    id: str
    #: SHA-256 of the token, hex.
    token_hash: str
    #: The recording's catalog row id.
    recording: str
    #: The viewer who made it.
    maker: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None

    def status(self, now: datetime) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.expires_at > now else "expired"

    def live(self, now: datetime) -> bool:
        """True while the link may open its recording (its maker and row still checked)."""
        return self.status(now) == "active"

    def to_json(self, now: datetime) -> dict[str, Any]:
        """The API's view of a link: never its token (which is not kept)."""
        return {
            "id": self.id, "recording_id": self.recording, "maker": self.maker,
            "created_at": _iso(self.created_at), "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at) if self.revoked_at else None,
            "status": self.status(now),
        }


class ShareStore(Protocol):
    """Where links are kept: every worker and host must see the same ones."""

    def create(self, share: Share) -> None:
        """Keep a new link."""
        ...

    def by_token_hash(self, token_hash: str) -> Share | None:
        """The link with this token hash, ``None`` when there is none."""
        ...

    def by_id(self, share_id: str) -> Share | None:
        """The link with this id, ``None`` when there is none."""
        ...

    def listed(self, maker: str | None) -> list[Share]:
        """Links made by ``maker`` (``None``: everyone's), newest first."""
        ...

    def revoke(self, share_id: str, at: datetime) -> bool:
        """Revoke a live link; False when it was revoked already or is unknown."""
        ...

    def delete_ended(self, before: datetime) -> int:
        """Forget links that expired or were revoked before ``before``; how many."""
        ...


def new_token() -> str:
    """A new link's token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_share_id() -> str:
    """A new link's id (not secret: it opens nothing)."""
    return secrets.token_hex(8)


def token_hash(token: str) -> str:
    """What a link is kept under: SHA-256 of its token, hex."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def is_token(text: str) -> bool:
    """True when ``text`` looks like a token (anything else is never looked up)."""
    return _TOKEN.fullmatch(text) is not None


def is_share_id(text: str) -> bool:
    """True when ``text`` looks like a link's id."""
    return _ID.fullmatch(text) is not None


def mask_tokens(text: str) -> str:
    """``text`` with every share link's token replaced by ``***`` (for log lines).

    >>> mask_tokens("GET /ui/s/" + "a" * 43 + "/audio HTTP/1.1")
    'GET /ui/s/***/audio HTTP/1.1'
    """
    return _TOKEN_IN_TEXT.sub(r"\1***", text)


def parse_expires_in(body: Mapping[str, Any]) -> timedelta:
    """A request body's ``expires_in`` (absent or null: the default), checked.

    >>> parse_expires_in({}), parse_expires_in({"expires_in": "1h"})
    (datetime.timedelta(days=7), datetime.timedelta(seconds=3600))
    """
    given = body.get("expires_in")
    if given is None or given == "":
        return DEFAULT_EXPIRES_IN
    bounds = f"from {format_age(SHORTEST)} to {format_age(LONGEST)}"
    if not isinstance(given, str):
        raise BadExpiry(f"expires_in: an age such as 7d, {bounds}")
    try:
        age = parse_age(given)
    except AgeError as exc:
        raise BadExpiry(f"expires_in: {exc}") from None
    if not SHORTEST <= age <= LONGEST:
        raise BadExpiry(f"expires_in: {given} is outside {bounds}")
    return age


def share_path(base: str, token: str) -> str:
    """``{base}/s/{token}``: ``base`` is the UI's prefix as the browser sees it."""
    return f"{base.rstrip('/')}/{SHARE_SEGMENT}/{token}"


def share_url(base: str, token: str, *, public_url: str | None) -> str:
    """The link as the API answers it: ``--public-url`` before the path, or the path alone.

    Never made from the request's ``Host`` header, which the client writes: the page
    completes a bare path with its own origin.
    """
    path = share_path(base, token)
    return public_url.rstrip("/") + path if public_url else path


def check_public_url(text: str) -> str:
    """``--public-url``: ``http(s)://host[:port]`` and an optional path, no query.

    :raises ValueError: anything else (said naming the option by the caller).
    """
    match = re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~/%-]*)?", text)
    if match is None:
        raise ValueError(f"{text!r} is not a URL such as https://rec.example.net")
    return text.rstrip("/")


def now_utc() -> datetime:
    """The current time, UTC."""
    return datetime.now(timezone.utc)


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat()
