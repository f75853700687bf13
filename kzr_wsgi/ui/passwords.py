"""Viewer secrets: which kind a written secret is, hashing a new password, checking one.

A viewer's SECRET (in the viewer file, ``--viewer``, ``KZR_VIEWER``, the config file, the
Flask and :class:`~kzr_wsgi.ui.SearchUI` settings) is one of:

* a **bcrypt** hash, ``$2a$``, ``$2b$`` or ``$2y$`` (what ``htpasswd -B`` writes);
* an **argon2id** hash, ``$argon2id$`` (what ``kzr-wsgi viewer add`` writes by default);
* a **plaintext** password: still taken, but ``serve`` warns naming its line.

Every other hash kind is refused, by name where it has one (``$apr1$``, ``{SHA}``, ``$1$``,
``$5$``, ``$6$``, ...), and so is anything else shaped like one (``$...$`` or ``{...}`` at
the start): read as a plaintext password it would let in whoever types the hash itself,
and nobody else. A plaintext password therefore cannot start with ``$word$`` or
``{word}``. No message here ever holds the secret itself.

>>> classify("$2y$05$W5XPgFC469I7hRmZgv068.j.K01AyFFf8VvOalyJfZ6VRHsftVPTe")
<SecretKind.BCRYPT: 'bcrypt'>
>>> classify("correct-horse")
<SecretKind.PLAIN: 'plaintext'>
>>> classify("$apr1$abc$def")
Traceback (most recent call last):
...
kzr_wsgi.ui.passwords.UnsupportedSecret: an Apache MD5 hash ($apr1$, htpasswd -m) is not taken: ...
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import re
import secrets
import threading

import argon2
import bcrypt
from argon2.exceptions import InvalidHashError, VerificationError

from ..errors import KzrError

#: argon2id as OWASP's password storage guidance gives it (19 MiB, 2 passes, 1 lane):
#: tens of milliseconds a check, and little memory for each of several workers at once.
ARGON2_TIME_COST, ARGON2_MEMORY_KIB, ARGON2_PARALLELISM = 2, 19 * 1024, 1
#: bcrypt's cost for new hashes: OWASP's floor, and of the order of the argon2id check
#: above, so that which kind a viewer has shows little in a sign-in's time.
BCRYPT_COST = 10
#: bcrypt reads at most this many bytes of a password.
BCRYPT_MAX_BYTES = 72
#: Below this cost a bcrypt hash is worth a warning (``htpasswd -B`` alone writes 5).
BCRYPT_WEAK_BELOW = 10

_HASHER = argon2.PasswordHasher(time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB,
                                 parallelism=ARGON2_PARALLELISM)
_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
_DOLLAR = re.compile(r"\$([^$\s]{1,40})\$")
_BRACED = re.compile(r"\{([A-Za-z0-9._-]{1,40})\}")
#: Names and hints for the hash kinds people meet; the rest are named by their prefix.
_KNOWN_KINDS = {
    "apr1": "an Apache MD5 hash ($apr1$, htpasswd -m)",
    "1": "an MD5-crypt hash ($1$)",
    "5": "a SHA-256-crypt hash ($5$)",
    "6": "a SHA-512-crypt hash ($6$)",
    "y": "a yescrypt hash ($y$)",
    "argon2i": "an argon2i hash (only argon2id is taken)",
    "argon2d": "an argon2d hash (only argon2id is taken)",
    "2": "an old bcrypt hash ($2$)",
    "2x": "a bcrypt hash with the $2x$ bug marker",
}
_ADVICE = ("use a bcrypt hash (htpasswd -B -C 10) or an argon2id one "
           "(kzr-wsgi viewer add/passwd)")


class SecretKind(enum.Enum):
    """What a written SECRET is."""

    BCRYPT = "bcrypt"
    ARGON2ID = "argon2id"
    PLAIN = "plaintext"


class UnsupportedSecret(KzrError, ValueError):
    """A SECRET of a hash kind that is not taken, or a malformed bcrypt/argon2id hash."""


def classify(secret: str) -> SecretKind:
    """The kind of ``secret``, as written; raises :class:`UnsupportedSecret` (see the module).

    Pure: the hash is parsed, never checked against anything.
    """
    if secret.startswith(("$2a$", "$2b$", "$2y$")):
        match = _BCRYPT.fullmatch(secret)
        if match is None or not 4 <= int(match.group(1)) <= 31:
            raise UnsupportedSecret(f"a malformed bcrypt hash: {_ADVICE}")
        return SecretKind.BCRYPT
    if secret.startswith("$argon2id$"):
        try:
            argon2.extract_parameters(secret)
        except (InvalidHashError, ValueError):
            raise UnsupportedSecret(f"a malformed argon2id hash: {_ADVICE}") from None
        return SecretKind.ARGON2ID
    dollar = _DOLLAR.match(secret)
    if dollar is not None:
        kind = _KNOWN_KINDS.get(dollar.group(1), f"a ${_printable(dollar.group(1))}$ hash")
        raise UnsupportedSecret(f"{kind} is not taken: {_ADVICE}")
    braced = _BRACED.match(secret)
    if braced is not None:
        raise UnsupportedSecret(
            f"a {{{_printable(braced.group(1))}}} hash is not taken: {_ADVICE}")
    return SecretKind.PLAIN


def bcrypt_cost(secret: str) -> int | None:
    """The cost of a bcrypt hash, ``None`` for any other secret."""
    match = _BCRYPT.fullmatch(secret)
    return int(match.group(1)) if match is not None else None


def hash_password(password: str, kind: SecretKind = SecretKind.ARGON2ID) -> str:
    """A new hash of ``password`` (random salt): argon2id by default, or bcrypt.

    :raises ValueError: an empty password, one bcrypt would cut (over 72 bytes), or
        ``kind`` plaintext.
    """
    if not password:
        raise ValueError("the password is empty")
    if kind is SecretKind.ARGON2ID:
        return _HASHER.hash(password)
    if kind is SecretKind.BCRYPT:
        data = _b(password)
        if len(data) > BCRYPT_MAX_BYTES:
            raise ValueError(f"bcrypt takes at most {BCRYPT_MAX_BYTES} bytes of a password: "
                             "choose a shorter one, or argon2id")
        if b"\0" in data:
            raise ValueError("bcrypt cannot take a password holding a NUL character")
        return bcrypt.hashpw(data, bcrypt.gensalt(BCRYPT_COST)).decode("ascii")
    raise ValueError("a new password is always hashed (argon2id or bcrypt)")


def verify(secret: str, kind: SecretKind, password: str) -> bool:
    """True when ``password`` is the one ``secret`` (of ``kind``) was written for.

    A plaintext secret is compared in constant time (its digest, so not even the length
    shows) *after* a check against the dummy hash, so that it costs what an unknown
    user's check costs. A bcrypt check reads the first 72 bytes, as ``htpasswd`` does.
    """
    if kind is SecretKind.PLAIN:
        verify_dummy(password)
        return hmac.compare_digest(_digest(secret), _digest(password))
    if kind is SecretKind.BCRYPT:
        data = _b(password)[:BCRYPT_MAX_BYTES]
        try:
            return bcrypt.checkpw(data, secret.encode("ascii"))
        except ValueError:
            return False
    try:
        return _HASHER.verify(secret, password)
    except (VerificationError, InvalidHashError):
        return False


_dummy: str | None = None
_dummy_lock = threading.Lock()


def verify_dummy(password: str) -> None:
    """Spend what checking an argon2id hash costs, on a hash no password opens.

    For a user name that no viewer has: the answer comes as late as for a known one.
    """
    global _dummy
    with _dummy_lock:
        if _dummy is None:
            _dummy = _HASHER.hash(secrets.token_urlsafe(32))
        dummy = _dummy
    with contextlib.suppress(VerificationError, InvalidHashError):
        _HASHER.verify(dummy, password)


def _digest(text: str) -> bytes:
    return hashlib.sha256(_b(text)).digest()


def _b(text: str) -> bytes:
    # A Basic header may decode to anything; undecodable bytes stay comparable.
    return text.encode("utf-8", "surrogateescape")


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)
