"""Who may upload and read: HTTP Basic, a URL token, a network allowlist.

A :class:`Guard` is built once from the mount's settings and checked by
:class:`~kzr_wsgi.middleware.KazooRecordings` on every request it owns (uploads and
reads alike), before a byte of the body is read::

    >>> from kzr_wsgi.auth import Guard
    >>> guard = Guard(basic=["kazoo:s3cret"], allow=["10.20.0.0/16"])
    >>> app = KazooRecordings(app, store, guard=guard)  # doctest: +SKIP

The mechanisms, each off unless configured:

* **HTTP Basic** (``basic``): Kazoo's httpc turns ``http://user:pass@host/…`` into an
  ``Authorization: Basic`` header, and so does libcurl (FreeSWITCH). Missing or wrong:
  :class:`~kzr_wsgi.errors.Unauthorized` (``401`` with ``WWW-Authenticate``).
* **URL token** (``tokens``): for set-ups that cannot send headers. Either the first
  path segment after the prefix (``URL = http://host/kzr/<TOKEN>``; works with every
  Kazoo version, and the segment is removed from the recording's name) or a
  ``token`` query parameter (4.x only: 3.x appends the file name after the whole URL,
  query included). Missing or wrong: :class:`~kzr_wsgi.errors.Forbidden` (``403``).
* **Network allowlist** (``allow``): CIDRs the client must be in. Outside:
  ``403``. The client is ``REMOTE_ADDR``, unless ``REMOTE_ADDR`` is one of the
  ``trusted_proxies`` (none by default): then it is the right-most
  ``X-Forwarded-For`` address that is not itself a trusted proxy, the first hop no
  trusted proxy can vouch for. ``X-Forwarded-For`` from anyone else is ignored, since
  any client can write the header.

When several are configured, all must pass. They are checked in this order, and
the first failure answers (**precedence of 401 and 403**):

1. allowlist -> ``403``: a client outside the network learns nothing else;
2. URL token -> ``403``: without the URL's secret a client is not even told that
   Basic credentials exist;
3. Basic -> ``401`` with ``WWW-Authenticate``.

So a request with neither token nor credentials gets ``403`` when a token is
configured, and ``401`` only once the token (and network) are right.

Every secret is compared with :func:`hmac.compare_digest`, against every configured
value without stopping at the first match, so timing tells nothing about which
byte or which credential was wrong. Secrets can come from files
(:func:`read_secrets`) or the environment rather than a command line.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from werkzeug.datastructures import Authorization

from .errors import Forbidden, Unauthorized
from .recording import Name

if TYPE_CHECKING:
    import os

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The query parameter a 4.x URL can carry the token in.
TOKEN_PARAM = "token"


class Guard:
    """Decide whether a request the receiver owns may go on; see the module docs.

    :param basic: ``"user:pass"`` strings or ``(user, pass)`` pairs; any one matches.
    :param tokens: URL secrets; any one matches.
    :param allow: CIDRs (``"10.0.0.0/8"``, ``"2001:db8::/32"``, or one address).
    :param trusted_proxies: CIDRs of proxies whose ``X-Forwarded-For`` is believed.
    """

    __slots__ = ("_basic", "_tokens", "_allow", "_trusted")

    def __init__(
        self,
        *,
        # HTTP Basic credentials; Kazoo sends them from `user:pass@` in its URL.
        basic: Iterable[str | tuple[str, str]] = (),
        # Secrets in the URL, for clients that cannot send headers.
        tokens: Iterable[str] = (),
        # Networks uploads may come from; empty allows every address.
        allow: Iterable[str] = (),
        # Proxies in front of the receiver; off by default, as XFF is client-written.
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        pairs = [parse_basic(c) if isinstance(c, str) else c for c in basic]
        for user, _password in pairs:
            if not user or ":" in user:
                raise ValueError("a Basic user name must be non-empty and hold no ':'")
        self._basic = tuple((_b(u), _b(p)) for u, p in pairs)
        token_list = list(tokens)
        for token in token_list:
            if not token or "/" in token or token.strip() != token:
                raise ValueError("a URL token must be non-empty, hold no '/' and no edge spaces")
        self._tokens = tuple(_b(t) for t in token_list)
        self._allow = tuple(parse_network(c) for c in allow)
        self._trusted = tuple(parse_network(c) for c in trusted_proxies)

    def __repr__(self) -> str:
        # Never the secrets themselves.
        return (
            f"Guard(basic={len(self._basic)} credential(s), tokens={len(self._tokens)}, "
            f"allow={[str(n) for n in self._allow]}, "
            f"trusted_proxies={[str(n) for n in self._trusted]})"
        )

    @property
    def authenticates(self) -> bool:
        """True when a secret (Basic or token) is required, not only a network."""
        return bool(self._basic or self._tokens)

    @property
    def enabled(self) -> bool:
        """True when any check is configured; a guard with none lets everyone in."""
        return bool(self._basic or self._tokens or self._allow)

    def accepts_basic(self, user: str, password: str) -> bool:
        """True when ``user:password`` is one of the Basic credentials this guard takes.

        For refusing set-ups where another door (the UI's viewers) would share a secret
        with uploads.
        """
        given = (_b(user), _b(password))
        matched = False
        for want_user, want_password in self._basic:
            same = hmac.compare_digest(given[0], want_user) & hmac.compare_digest(
                given[1], want_password)
            matched = same | matched
        return matched

    def check(
        self,
        environ: dict[str, Any],
        name: Name,
        pairs: Sequence[tuple[str, str | None]] = (),
    ) -> Name:
        """Let the request in or raise; return ``name`` without its token segment.

        :param environ: the request's WSGI environ (headers and ``REMOTE_ADDR``).
        :param name: where the request points, as :class:`~kzr_wsgi.forms.Router` found it.
        :param pairs: its query, split and decoded once.
        :raises Forbidden: outside the allowlist, or the URL token missing or wrong.
        :raises Unauthorized: Basic credentials missing or wrong.
        """
        if self._allow:
            client = self.client_address(environ)
            if client is None or not any(client in net for net in self._allow):
                raise Forbidden("client address not allowed")
        if self._tokens:
            name = self._check_token(name, pairs)
        if self._basic:
            self._check_basic(environ)
        return name

    def client_address(self, environ: dict[str, Any]) -> IPAddress | None:
        """The client's address, after trusted proxies; ``None`` when unknown or unparsable."""
        remote = parse_address(environ.get("REMOTE_ADDR"))
        if remote is None or not self._is_trusted(remote):
            return remote
        hops = [h.strip() for h in str(environ.get("HTTP_X_FORWARDED_FOR", "")).split(",")]
        # Right to left: each trusted proxy vouches for the hop before it; the first
        # hop that is not a trusted proxy is the client. Anything left of it was
        # written by the client and proves nothing.
        for hop in reversed([h for h in hops if h]):
            address = parse_address(hop)
            if address is None:
                # A trusted proxy passed on something that is not an address: unknown.
                return None
            if not self._is_trusted(address):
                return address
            remote = address
        # Every hop was a trusted proxy (or there were none): the left-most one is it.
        return remote

    # -- the checks -------------------------------------------------------------------

    def _is_trusted(self, address: IPAddress) -> bool:
        return any(address in net for net in self._trusted)

    def _check_token(self, name: Name, pairs: Sequence[tuple[str, str | None]]) -> Name:
        if name.segments and self._matches_token(name.segments[0]):
            return replace(name, segments=name.segments[1:])
        # Evaluate every `token` value, so timing does not show which one matched.
        found = False
        for key, value in pairs:
            if key == TOKEN_PARAM and value is not None:
                found = self._matches_token(value) | found
        if found:
            return name
        raise Forbidden("URL token missing or wrong")

    def _matches_token(self, candidate: str) -> bool:
        given = _b(candidate)
        matched = False
        for token in self._tokens:
            matched = hmac.compare_digest(given, token) | matched
        return matched

    def _check_basic(self, environ: dict[str, Any]) -> None:
        header = environ.get("HTTP_AUTHORIZATION")
        auth = Authorization.from_header(header) if isinstance(header, str) else None
        if auth is None or auth.type != "basic" or auth.username is None:
            raise Unauthorized("Basic credentials required")
        user, password = _b(auth.username), _b(auth.password or "")
        matched = False
        for want_user, want_password in self._basic:
            # `&` and `|`, not `and`/`or`: both comparisons run for every credential.
            same = hmac.compare_digest(user, want_user) & hmac.compare_digest(
                password, want_password
            )
            matched = same | matched
        if not matched:
            raise Unauthorized("wrong Basic credentials")


# -- configuration helpers ----------------------------------------------------------


def parse_basic(text: str) -> tuple[str, str]:
    """``"user:pass"`` -> ``("user", "pass")``; the password may hold ``:``.

    >>> parse_basic("kazoo:a:b")
    ('kazoo', 'a:b')
    """
    user, colon, password = text.partition(":")
    if not colon or not user:
        raise ValueError("Basic credentials must be USER:PASS")
    return user, password


def parse_network(text: str) -> IPNetwork:
    """A CIDR or a single address as a network (host bits are allowed and dropped)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"not a network or address: {text!r}") from None


def parse_address(text: object) -> IPAddress | None:
    """An address as the server or a proxy wrote it, or ``None`` when it is not one.

    IPv4-mapped IPv6 (``::ffff:10.0.0.1``, what a dual-stack socket reports) becomes
    plain IPv4, so ``10.0.0.0/8`` matches it; ``[::1]`` and ``1.2.3.4:5678`` (proxies
    that add brackets or ports) are understood.
    """
    if not isinstance(text, str) or not text:
        return None
    value = text.strip()
    if value.startswith("[") and "]" in value:
        value = value[1 : value.index("]")]
    elif value.count(":") == 1 and "." in value:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def read_secrets(path: str | os.PathLike[str]) -> list[str]:
    """The secrets in a file, one a line; blank lines and ``#`` comments are skipped.

    Keeps secrets off the command line (where ``ps`` shows them). Leading and
    trailing whitespace of each line is dropped.
    """
    text = Path(path).read_text(encoding="utf-8")
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def is_loopback_host(host: str) -> bool:
    """True when ``host`` only listens on this machine (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host.strip("[]").lower() == "localhost":
        return True
    address = parse_address(host)
    return address is not None and address.is_loopback


def _b(text: str) -> bytes:
    # compare_digest takes str only when ASCII; UTF-8 bytes work for any text, and
    # surrogateescape keeps undecodable request bytes comparable (they never match).
    return text.encode("utf-8", "surrogateescape")
