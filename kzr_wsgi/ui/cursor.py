"""Opaque paging cursors: where a listing stopped, signed so nobody can forge one.

A cursor carries the keyset position (the last row's ``(sort_at, id)``) and the
snapshot (the first page's ``max_seq``), so following ``next`` visits every row that
matched when the first page was asked, exactly once, however many rows arrive
meanwhile. It is bound to the viewer and the filters it was made for: the HMAC
covers both, so a cursor replayed by another viewer, with other filters, altered, or
made with another secret is refused (:class:`BadCursor`, a ``400`` at the edge).

The secret is per process unless configured: ``serve`` builds the app once, before
its workers fork, so they share it. Several hosts behind one balancer need one
configured secret (``--ui-secret``) for a cursor from one host to work on another.

>>> signer = CursorSigner(b"k" * 32)
>>> from datetime import datetime, timezone
>>> key = (datetime(2026, 1, 2, tzinfo=timezone.utc), "abc")
>>> token = signer.dump("ops", "q=1", key, 7)
>>> signer.load(token, "ops", "q=1") == (key, 7)
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import datetime

from ..errors import KzrError

#: Longest cursor accepted: a real one is ~150 characters.
MAX_CURSOR = 1024

Key = tuple[datetime, str]


class BadCursor(KzrError, ValueError):
    """A cursor that is malformed, altered, foreign, or for another viewer or filters."""


class CursorSigner:
    """Make and check cursors with one secret (random per process unless given)."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes | str | None = None) -> None:
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        if secret is not None and len(secret) < 16:
            raise ValueError("a cursor secret must be at least 16 bytes")
        self._secret = secret if secret is not None else secrets.token_bytes(32)

    def __repr__(self) -> str:
        return "CursorSigner(<secret>)"

    def dump(self, viewer: str, filters: str, key: Key, max_seq: int | None) -> str:
        """A cursor for ``viewer`` and ``filters`` (a canonical text of them)."""
        payload = json.dumps([key[0].isoformat(), key[1], max_seq], separators=(",", ":"))
        body = _b64(payload.encode("utf-8"))
        return f"{body}.{self._mac(viewer, filters, body)}"

    def load(self, token: str, viewer: str, filters: str) -> tuple[Key, int | None]:
        """The position and snapshot in ``token``, if it was made for this viewer and filters.

        :raises BadCursor: anything else.
        """
        if len(token) > MAX_CURSOR or token.count(".") != 1:
            raise BadCursor("not a cursor")
        body, mac = token.split(".")
        if not hmac.compare_digest(mac.encode("ascii", "replace"),
                                   self._mac(viewer, filters, body).encode("ascii")):
            raise BadCursor("the cursor was not made for this viewer and these filters")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            when, row_id, max_seq = json.loads(raw)
            key = (datetime.fromisoformat(when), row_id)
        except (ValueError, TypeError):
            raise BadCursor("not a cursor") from None
        if not isinstance(row_id, str) or not (max_seq is None or isinstance(max_seq, int)):
            raise BadCursor("not a cursor")
        return key, max_seq

    def _mac(self, viewer: str, filters: str, body: str) -> str:
        message = "\0".join((viewer, filters, body)).encode("utf-8", "surrogateescape")
        return _b64(hmac.new(self._secret, message, hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
