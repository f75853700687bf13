"""Who may look: viewers, their HTTP Basic credentials and the accounts they may see.

Viewers are separate from Kazoo's upload credentials (:class:`~kzr_wsgi.auth.Guard`):
an upload credential never opens the UI and a viewer never uploads.

A viewer file has one viewer a line: ``USER:PASS``, optionally followed by white
space and a comma-separated list of the account ids that viewer may see (and nothing
else); with no list the viewer sees every account. Blank lines and ``#`` comments
are skipped::

    # the operator sees everything
    ops:correct-horse-battery
    # a reseller's customer sees two accounts
    acme:Tr0ub4dor  4b3f0c...e1,91aa2...07

>>> viewers = parse_viewer_file("ops:pw\\nacme:pw2  acct1,acct2\\n")
>>> [v.accounts for v in viewers]
[None, ('acct1', 'acct2')]
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.datastructures import Authorization

from ..auth import parse_basic
from ..errors import KzrError, Unauthorized


class ViewerFileError(KzrError, ValueError):
    """A viewer file (or ``--viewer`` value) that cannot be read; names the line."""


@dataclass(frozen=True)
class Viewer:
    """One person (or customer) allowed to search and listen.

    :param accounts: the account ids this viewer may see; ``None`` sees every account
        (and the rows that have no account id).
    """

    user: str
    password: str = field(repr=False)
    accounts: tuple[str, ...] | None = None

    @property
    def scoped(self) -> bool:
        """True when the viewer sees only some accounts."""
        return self.accounts is not None


def parse_viewer(text: str, accounts: Iterable[str] | None = None) -> Viewer:
    """``"user:pass"`` (a ``--viewer`` value) -> an unscoped :class:`Viewer`.

    >>> parse_viewer("ops:a:b")
    Viewer(user='ops', accounts=None)
    """
    try:
        user, password = parse_basic(text)
    except ValueError:
        raise ViewerFileError("a viewer must be USER:PASS") from None
    if not password:
        raise ViewerFileError(f"viewer {user!r} has an empty password")
    return Viewer(user, password, tuple(accounts) if accounts is not None else None)


def parse_viewer_file(text: str) -> list[Viewer]:
    """Every viewer in a viewer file's text (see the module docs); pure, no I/O.

    :raises ViewerFileError: naming the first malformed line by its number.
    """
    viewers: list[Viewer] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) > 2:
            raise ViewerFileError(
                f"line {number}: expected USER:PASS and an optional comma-separated "
                "account list (no spaces inside either)")
        accounts: tuple[str, ...] | None = None
        if len(parts) == 2:
            accounts = tuple(a for a in parts[1].split(","))
            if not all(accounts):
                raise ViewerFileError(f"line {number}: an empty account id in the list")
        try:
            viewers.append(parse_viewer(parts[0], accounts))
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


class Viewers:
    """The viewers of one UI: checks a request's Basic credentials, says who it is.

    Every credential is compared with :func:`hmac.compare_digest`, against every
    viewer without stopping at the first match, so timing tells nothing about which
    one was close.
    """

    __slots__ = ("_viewers",)

    def __init__(self, viewers: Iterable[Viewer | str]) -> None:
        listed = [parse_viewer(v) if isinstance(v, str) else v for v in viewers]
        users = [v.user for v in listed]
        duplicated = sorted({u for u in users if users.count(u) > 1})
        if duplicated:
            raise ViewerFileError(f"viewer {duplicated[0]!r} is listed twice")
        self._viewers = tuple(listed)

    def __len__(self) -> int:
        return len(self._viewers)

    def __iter__(self) -> Iterator[Viewer]:
        return iter(self._viewers)

    def __repr__(self) -> str:
        scoped = sum(1 for v in self._viewers if v.scoped)
        return f"Viewers({len(self._viewers)} viewer(s), {scoped} scoped)"

    def authenticate(self, environ: Mapping[str, Any]) -> Viewer:
        """The viewer whose credentials the request carries.

        :raises Unauthorized: none, not Basic, or no viewer matches.
        """
        header = environ.get("HTTP_AUTHORIZATION")
        auth = Authorization.from_header(header) if isinstance(header, str) else None
        if auth is None or auth.type != "basic" or auth.username is None:
            raise Unauthorized("viewer credentials required")
        user, password = _b(auth.username), _b(auth.password or "")
        found: Viewer | None = None
        for viewer in self._viewers:
            same = hmac.compare_digest(user, _b(viewer.user)) & hmac.compare_digest(
                password, _b(viewer.password))
            if same:
                found = viewer
        if found is None:
            raise Unauthorized("wrong viewer credentials")
        return found


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")
