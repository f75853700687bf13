"""Signed-in sessions: ids, expiry, rotation, CSRF tokens, and where they are kept.

A session id is 256 random bits (:func:`secrets.token_urlsafe`) that live only in the
viewer's cookie; the store keeps its SHA-256, so reading the store (a backup, a
replica) gives no session. A session ends when it has been idle for ``idle`` (default
30 minutes) or has lasted ``max_age`` (default 12 hours), at sign-out, and when its
viewer leaves the viewer file or changes password (:meth:`Sessions.end_for_user`).
Every sign-in makes a new id: an id from before (a planted one included) is never
taken over, and the one the request carried is deleted.

**CSRF.** A session's token is ``HMAC-SHA256(key=session id, "kzr_wsgi csrf")``: it needs
no storage and no key shared between hosts (the session already lives in the shared
catalog), changes with every new session, cannot be made from what the store holds
(the id's SHA-256 is not the id), and does not reveal the id. The page gets it from an
answer (never from the cookie, which is ``HttpOnly``) and sends it with every request
that changes anything; :meth:`Sessions.csrf_ok` compares in constant time. The
sign-in form, which has no session yet, uses the same construction over a random
nonce kept in a short-lived cookie of its own (see :mod:`kzr_wsgi.ui.cookies`).

>>> sessions = Sessions(MemorySessionStore(), clock=lambda: 1000.0)
>>> first = sessions.start("ops")
>>> sessions.resume(first.id).user
'ops'
>>> second = sessions.start("ops", replacing=first.id)
>>> sessions.resume(first.id) is None, second.id != first.id
(True, True)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Protocol

#: How long a session lives without a request, and at most.
DEFAULT_IDLE = timedelta(minutes=30)
DEFAULT_MAX_AGE = timedelta(hours=12)
#: A session's last request is written at most this often (seconds): not one store
#: write per request; the idle limit is kept to within this much.
TOUCH_EVERY = 60.0
#: Random bytes in a session id or a nonce.
ID_BYTES = 32
#: What an id or nonce looks like (``token_urlsafe`` of :data:`ID_BYTES`); anything else
#: is not looked up.
_ID = re.compile(r"[A-Za-z0-9_-]{43}")
_CSRF_LABEL = b"kzr_wsgi csrf"


@dataclass(frozen=True)
class SessionRecord:
    """What the store keeps of a session (times are Unix seconds)."""

    #: SHA-256 of the id, hex.
    id_hash: str
    user: str
    created_at: float
    last_seen: float
    #: ``created_at`` + the longest a session may last.
    expires_at: float


@dataclass(frozen=True)
class Session:
    """A live session: its id (for the cookie) and CSRF token (for the page)."""

    id: str = field(repr=False)
    record: SessionRecord
    csrf: str = field(repr=False)

    @property
    def user(self) -> str:
        """The viewer signed in."""
        return self.record.user


class SessionStore(Protocol):
    """Where sessions are kept: every worker and host must see the same ones."""

    def create(self, record: SessionRecord) -> None:
        """Keep a new session."""
        ...

    def get(self, id_hash: str) -> SessionRecord | None:
        """The session with this id hash, ``None`` when there is none."""
        ...

    def touch(self, id_hash: str, last_seen: float) -> None:
        """Note a request at ``last_seen``; a session gone meanwhile stays gone."""
        ...

    def delete(self, id_hash: str) -> None:
        """End one session (one already gone is no error)."""
        ...

    def delete_for_user(self, user: str) -> int:
        """End every session of ``user``; how many there were."""
        ...

    def delete_expired(self, now: float, idle_before: float) -> int:
        """End those past ``expires_at`` or last seen before ``idle_before``; how many."""
        ...


class MemorySessionStore:
    """A :class:`SessionStore` in this process's memory (tests, a single process)."""

    def __init__(self) -> None:
        self._sessions: dict[str, SessionRecord] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, record: SessionRecord) -> None:
        with self._lock:
            self._sessions[record.id_hash] = record

    def get(self, id_hash: str) -> SessionRecord | None:
        with self._lock:
            return self._sessions.get(id_hash)

    def touch(self, id_hash: str, last_seen: float) -> None:
        with self._lock:
            record = self._sessions.get(id_hash)
            if record is not None:
                self._sessions[id_hash] = replace(record, last_seen=last_seen)

    def delete(self, id_hash: str) -> None:
        with self._lock:
            self._sessions.pop(id_hash, None)

    def delete_for_user(self, user: str) -> int:
        with self._lock:
            gone = [k for k, r in self._sessions.items() if r.user == user]
            for key in gone:
                del self._sessions[key]
        return len(gone)

    def delete_expired(self, now: float, idle_before: float) -> int:
        with self._lock:
            gone = [k for k, r in self._sessions.items()
                    if r.expires_at <= now or r.last_seen <= idle_before]
            for key in gone:
                del self._sessions[key]
        return len(gone)


class Sessions:
    """Starts, resumes and ends sessions kept in a :class:`SessionStore`.

    :param idle: a session unused this long has ended.
    :param max_age: a session this old has ended, however busy.
    :param clock: Unix seconds (injectable for tests).
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        idle: timedelta = DEFAULT_IDLE,
        max_age: timedelta = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.time,
        touch_every: float = TOUCH_EVERY,
    ) -> None:
        if idle <= timedelta(0) or max_age <= timedelta(0):
            raise ValueError("a session's idle and longest times must be positive")
        self.store = store
        self.idle = idle.total_seconds()
        self.max_age = max_age.total_seconds()
        self._clock = clock
        self._touch_every = min(touch_every, self.idle / 2)

    def start(self, user: str, *, replacing: str | None = None) -> Session:
        """A new session for ``user`` (just signed in); ``replacing``, the id the request
        carried, is ended: never reused, whatever it was."""
        if replacing is not None and _ID.fullmatch(replacing):
            self.store.delete(id_hash(replacing))
        new_id = secrets.token_urlsafe(ID_BYTES)
        now = self._clock()
        record = SessionRecord(id_hash(new_id), user, now, now, now + self.max_age)
        self.store.create(record)
        return Session(new_id, record, csrf_token(new_id))

    def resume(self, session_id: str | None) -> Session | None:
        """The live session with this id (a cookie's value), ``None`` when there is none.

        An expired session is deleted as it is found; a live one is touched (at most
        once every ``touch_every`` seconds).
        """
        if session_id is None or not _ID.fullmatch(session_id):
            return None
        key = id_hash(session_id)
        record = self.store.get(key)
        if record is None:
            return None
        now = self._clock()
        if record.expires_at <= now or record.last_seen + self.idle <= now:
            self.store.delete(key)
            return None
        if now - record.last_seen >= self._touch_every:
            self.store.touch(key, now)
            record = replace(record, last_seen=now)
        return Session(session_id, record, csrf_token(session_id))

    def end(self, session_id: str | None) -> None:
        """Sign-out: the session is gone on every worker and host."""
        if session_id is not None and _ID.fullmatch(session_id):
            self.store.delete(id_hash(session_id))

    def end_for_user(self, user: str) -> int:
        """End every session of ``user`` (removed from the file, password changed)."""
        return self.store.delete_for_user(user)

    def sweep(self) -> int:
        """Delete every ended session from the store; how many."""
        now = self._clock()
        return self.store.delete_expired(now, now - self.idle)

    @staticmethod
    def csrf_ok(session: Session, token: str | None) -> bool:
        """True when ``token`` (a request's) is ``session``'s CSRF token (constant time)."""
        return csrf_matches(session.id, token)


def id_hash(session_id: str) -> str:
    """What the store keys a session by: SHA-256 of its id, hex."""
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


def new_nonce() -> str:
    """A random value for the sign-in form's cookie (its CSRF token is made from it)."""
    return secrets.token_urlsafe(ID_BYTES)


def is_id(value: str | None) -> bool:
    """True when ``value`` looks like a session id or nonce (else it is never looked up)."""
    return value is not None and _ID.fullmatch(value) is not None


def csrf_token(secret_id: str) -> str:
    """The CSRF token of a session id (or a sign-in nonce): see the module docs."""
    mac = hmac.new(secret_id.encode("ascii"), _CSRF_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def csrf_matches(secret_id: str | None, token: str | None) -> bool:
    """True when ``token`` is ``secret_id``'s CSRF token; compared in constant time."""
    if secret_id is None or token is None or not is_id(secret_id):
        return False
    given = token.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(csrf_token(secret_id).encode("ascii"), given)
