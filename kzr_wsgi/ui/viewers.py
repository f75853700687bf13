"""Who may look: viewers, their secrets, the accounts they may see, the right to share.

Viewers are separate from Kazoo's upload credentials (:class:`~kzr_wsgi.auth.Guard`):
an upload credential never opens the UI and a viewer never uploads.

A viewer file has one viewer a line: ``USER:SECRET [ACCOUNTS] [share]``. SECRET is a
bcrypt or argon2id hash, or a plaintext password (see :mod:`kzr_wsgi.ui.passwords`).
ACCOUNTS is a comma-separated list of the account ids that viewer may see (and nothing
else), or ``*`` for every account, as when it is left out. ``share`` gives the right to
make share links. Blank lines and ``#`` comments are skipped::

    # the operator sees everything and may share
    ops:$argon2id$v=19$m=19456,t=2,p=1$...$...  *  share
    # a reseller's customer sees two accounts
    acme:$2y$10$...  4b3f0c...e1,91aa2...07

>>> viewers = parse_viewer_file("ops:pw * share\\nacme:pw2  acct1,acct2\\n")
>>> [(v.accounts, v.share) for v in viewers]
[(None, True), (('acct1', 'acct2'), False)]
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from werkzeug.datastructures import Authorization

from ..errors import KzrError, Unauthorized
from .passwords import (
    BCRYPT_WEAK_BELOW,
    SecretKind,
    UnsupportedSecret,
    bcrypt_cost,
    classify,
    verify,
    verify_dummy,
)

#: How long a verified credential is taken without checking its hash again (seconds).
REMEMBER_FOR = 60.0
#: The most credentials remembered at once (each a digest and a reference).
_REMEMBER_MAX = 4096
#: The word after the accounts that gives the right to make share links.
SHARE = "share"
#: The ACCOUNTS field that means every account.
EVERY_ACCOUNT = "*"
_USER_PASS = "a viewer must be USER:PASS (a password, or its bcrypt or argon2id hash)"


class ViewerFileError(KzrError, ValueError):
    """A viewer file (or ``--viewer`` value) that cannot be read; names the line."""


class UploadCredentials(Protocol):
    """What tells an upload credential (:class:`~kzr_wsgi.auth.Guard` is one)."""

    def accepts_basic(self, user: str, password: str) -> bool:
        """True when ``user:password`` would be taken for an upload."""
        ...


@dataclass(frozen=True)
class Viewer:
    """One person (or customer) allowed to search and listen.

    :param secret: the SECRET as written: a bcrypt or argon2id hash, or a plaintext
        password; checked by :meth:`Viewers.check`, never shown.
    :param accounts: the account ids this viewer may see; ``None`` sees every account
        (and the rows that have no account id).
    :param share: may make share links.
    :param line: where it was written (a viewer file's line number), for messages.
    :raises ViewerFileError: a secret of a kind that is not taken.
    """

    user: str
    secret: str = field(repr=False)
    accounts: tuple[str, ...] | None = None
    share: bool = False
    line: int | None = field(default=None, compare=False)
    kind: SecretKind = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            kind = classify(self.secret)
        except UnsupportedSecret as exc:
            raise ViewerFileError(f"viewer {self.user!r}: {exc}") from None
        object.__setattr__(self, "kind", kind)

    @property
    def scoped(self) -> bool:
        """True when the viewer sees only some accounts."""
        return self.accounts is not None

    def sees(self, account_id: str | None) -> bool:
        """True when this viewer may see a recording of ``account_id`` (``None``: a
        recording with no account id, which only unscoped viewers see)."""
        return self.accounts is None or account_id in self.accounts

    @property
    def password(self) -> str:
        """The SECRET as written (a hash, or a plaintext password): the old name of ``secret``.

        Only a plaintext SECRET is a password; compare with :meth:`Viewers.check`.
        """
        return self.secret


def parse_viewer(text: str, accounts: Iterable[str] | None = None, share: bool = False) -> Viewer:
    """``"user:SECRET"`` (a ``--viewer`` value) -> a :class:`Viewer`, every account unless given.

    Everything after the first ``:`` is the SECRET, white space included (a plaintext
    password may hold spaces here, unlike in a viewer file).

    >>> parse_viewer("ops:a:b")
    Viewer(user='ops', accounts=None, share=False, line=None)
    """
    user, colon, secret = text.partition(":")
    if not colon or not user:
        raise ViewerFileError(_USER_PASS)
    if any(c.isspace() for c in user):
        raise ViewerFileError(f"viewer {user.strip()!r}: a user name holds no white space")
    if not secret:
        raise ViewerFileError(f"viewer {user!r} has an empty password")
    return Viewer(user, secret, tuple(accounts) if accounts is not None else None, share)


class ViewerFields(NamedTuple):
    """A viewer line's fields, its SECRET not yet classified (see :func:`split_viewer_line`)."""

    user: str
    secret: str
    accounts: tuple[str, ...] | None
    share: bool


def split_viewer_line(line: str) -> ViewerFields:
    """A viewer file line's fields (``USER:SECRET [ACCOUNTS] [share]``, stripped).

    Only the shape is checked: the file editor rewrites a line whose SECRET is of a
    kind not taken. :raises ViewerFileError: naming what is wrong (not the line).
    """
    parts = line.split()
    share = len(parts) > 1 and parts[-1] == SHARE
    fields = parts[1:-1] if share else parts[1:]
    if not parts or len(fields) > 1:
        raise ViewerFileError(
            "expected USER:PASS, then optionally the account ids (comma-separated, or *) "
            "and the word share, separated by white space")
    accounts: tuple[str, ...] | None = None
    if fields and fields[0] != EVERY_ACCOUNT:
        accounts = tuple(fields[0].split(","))
        if not all(accounts):
            raise ViewerFileError("an empty account id in the list")
        if EVERY_ACCOUNT in accounts:
            raise ViewerFileError("* stands alone: every account, or a list of ids")
    user, colon, secret = parts[0].partition(":")
    if not colon or not user:
        raise ViewerFileError(_USER_PASS)
    if not secret:
        raise ViewerFileError(f"viewer {user!r} has an empty password")
    return ViewerFields(user, secret, accounts, share)


def parse_viewer_line(line: str, number: int | None = None) -> Viewer:
    """One viewer file line (``USER:SECRET [ACCOUNTS] [share]``, stripped) -> a :class:`Viewer`.

    :raises ViewerFileError: naming what is wrong (not the line: the caller knows it).
    """
    user, secret, accounts, share = split_viewer_line(line)
    return Viewer(user, secret, accounts, share, number)


def parse_viewer_file(text: str) -> list[Viewer]:
    """Every viewer in a viewer file's text (see the module docs); pure, no I/O.

    :raises ViewerFileError: naming the first malformed line by its number (a secret of
        a kind not taken included), never holding the secret itself.
    """
    viewers: list[Viewer] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            viewers.append(parse_viewer_line(line, number))
        except ViewerFileError as exc:
            raise ViewerFileError(f"line {number}: {exc}") from None
    return viewers


def read_viewer_file(path: str | Path) -> list[Viewer]:
    """:func:`parse_viewer_file` on a file's contents (UTF-8)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ViewerFileError(f"{path}: not UTF-8 ({exc})") from None
    try:
        return parse_viewer_file(text)
    except ViewerFileError as exc:
        raise ViewerFileError(f"{path}: {exc}") from None


# -- what serve says at start-up ----------------------------------------------------


def plaintext_lines(viewers: Iterable[Viewer]) -> list[tuple[int | None, str]]:
    """``(line number, user)`` of every viewer whose SECRET is a plaintext password.

    The line is ``None`` for a viewer not from a file (``--viewer``, the config file).
    """
    return [(v.line, v.user) for v in viewers if v.kind is SecretKind.PLAIN]


def secret_warnings(viewers: Iterable[Viewer], source: str = "") -> list[str]:
    """The start-up warnings for ``viewers``' secrets, one a viewer: plaintext, weak bcrypt.

    :param source: the viewer file's name, put before each line number.
    """
    warnings = []
    for viewer in viewers:
        where = (f"{source}: line {viewer.line}: " if source else f"line {viewer.line}: "
                 ) if viewer.line is not None else ""
        if viewer.kind is SecretKind.PLAIN:
            warnings.append(
                f"{where}viewer {viewer.user!r} has a plaintext password: replace it with a "
                "hash (kzr-wsgi viewer passwd, or htpasswd -B -C 10)")
        cost = bcrypt_cost(viewer.secret)
        if cost is not None and cost < BCRYPT_WEAK_BELOW:
            warnings.append(
                f"{where}viewer {viewer.user!r} has a bcrypt hash of cost {cost}: remake it "
                f"with a cost of at least {BCRYPT_WEAK_BELOW} (htpasswd -B -C "
                f"{BCRYPT_WEAK_BELOW}, or kzr-wsgi viewer passwd)")
    return warnings


def upload_clashes(viewers: Iterable[Viewer], uploads: UploadCredentials) -> list[Viewer]:
    """The plaintext viewers whose credentials are also an upload credential.

    Hashed viewers are not tried against every upload credential: ``viewer add`` and
    ``viewer passwd`` refuse such a password when they are given the credentials
    (:func:`is_upload_credential`).
    """
    return [v for v in viewers
            if v.kind is SecretKind.PLAIN and uploads.accepts_basic(v.user, v.secret)]


def is_upload_credential(user: str, password: str, uploads: UploadCredentials) -> bool:
    """True when ``user:password``, a viewer's new password, would also upload."""
    return uploads.accepts_basic(user, password)


def ended_users(before: Iterable[Viewer], after: Iterable[Viewer]) -> set[str]:
    """Users whose sessions a reread file ends: removed, or their SECRET changed."""
    now = {v.user: v.secret for v in after}
    return {v.user for v in before if now.get(v.user) != v.secret}


# -- checking credentials -----------------------------------------------------------


class Viewers:
    """The viewers of one UI: checks a user and password, says who it is.

    A user name is looked up, and its hash checked; an unknown name is checked against a
    dummy hash, so the time an answer takes tells nothing of which names exist. A
    credential once verified is remembered for :data:`REMEMBER_FOR` seconds under a
    keyed digest of the user and password (the key random per object, the password
    never kept), so that the API's HTTP Basic does not pay a slow hash on every request.
    A reread file is a new :class:`Viewers`: nothing remembered outlives it.
    """

    __slots__ = ("_viewers", "_by_user", "_key", "_remembered", "_lock", "_clock",
                 "_remember_for")

    def __init__(
        self,
        viewers: Iterable[Viewer | str],
        *,
        remember_for: float = REMEMBER_FOR,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        listed = [parse_viewer(v) if isinstance(v, str) else v for v in viewers]
        users = [v.user for v in listed]
        duplicated = sorted({u for u in users if users.count(u) > 1})
        if duplicated:
            raise ViewerFileError(f"viewer {duplicated[0]!r} is listed twice")
        self._viewers = tuple(listed)
        self._by_user = {v.user: v for v in listed}
        self._key = secrets.token_bytes(32)
        self._remembered: dict[bytes, tuple[Viewer, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._remember_for = remember_for

    def __len__(self) -> int:
        return len(self._viewers)

    def __iter__(self) -> Iterator[Viewer]:
        return iter(self._viewers)

    def __repr__(self) -> str:
        scoped = sum(1 for v in self._viewers if v.scoped)
        return f"Viewers({len(self._viewers)} viewer(s), {scoped} scoped)"

    def get(self, user: str) -> Viewer | None:
        """The viewer named ``user`` (a session's), ``None`` when there is none (any more)."""
        return self._by_user.get(user)

    def check(self, user: str, password: str) -> Viewer | None:
        """The viewer whose credentials these are, ``None`` when they are nobody's."""
        viewer = self._by_user.get(user)
        if viewer is None:
            verify_dummy(password)
            return None
        key = hmac.new(self._key, _b(user) + b"\0" + _b(password), hashlib.sha256).digest()
        now = self._clock()
        with self._lock:
            found = self._remembered.get(key)
        if found is not None and found[0] is viewer and found[1] > now:
            return viewer
        if not verify(viewer.secret, viewer.kind, password):
            return None
        self._remember(key, viewer, now)
        return viewer

    def forget(self) -> None:
        """Drop every remembered credential (the next check of each verifies its hash)."""
        with self._lock:
            self._remembered.clear()

    def authenticate(self, environ: Mapping[str, Any]) -> Viewer:
        """The viewer whose HTTP Basic credentials the request carries.

        :raises Unauthorized: none, not Basic, or no viewer matches.
        """
        header = environ.get("HTTP_AUTHORIZATION")
        auth = Authorization.from_header(header) if isinstance(header, str) else None
        if auth is None or auth.type != "basic" or auth.username is None:
            raise Unauthorized("viewer credentials required")
        found = self.check(auth.username, auth.password or "")
        if found is None:
            raise Unauthorized("wrong viewer credentials")
        return found

    def _remember(self, key: bytes, viewer: Viewer, now: float) -> None:
        with self._lock:
            if len(self._remembered) >= _REMEMBER_MAX:
                for stale in [k for k, (_v, until) in self._remembered.items() if until <= now]:
                    del self._remembered[stale]
                while len(self._remembered) >= _REMEMBER_MAX:
                    del self._remembered[next(iter(self._remembered))]
            self._remembered[key] = (viewer, now + self._remember_for)


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")
