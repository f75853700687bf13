"""Which Kazoo upload a request addresses, from its path and query alone.

Pure: no I/O, nothing read from the body. :class:`Router` is built once from the
mount's settings; :meth:`Router.route` turns a WSGI environ into a :class:`Target`
(or ``None``: not ours, pass it on).

The URL forms (the manual's Kazoo page, ``docs/kazoo.md``):

1. ``…/call_recording_<CALL_ID>.<EXT>`` (3.x, 4.x ``record_call``), with or without
   4.x's metadata query.
2. ``…?…&recording=call_recording_<CALL_ID>.<EXT>&…`` or the URL's last parameter
   filled with the name (4.x when the configured URL had a query).
3. ``…/<CALL_ID>.<EXT>`` (4.x ``record_caller``): ambiguous with a host app's own
   routes, so only when ``accept_caller`` is set.
4. Anything at all under ``attachments_prefix`` (storage plans, ``handler: http``).

**Decoding once.** Servers give ``PATH_INFO`` already percent-decoded, so ``%2F`` and
``/`` look the same there. Where the server also gives the raw request URI
(``RAW_URI``: gunicorn; ``REQUEST_URI``: werkzeug, uWSGI) the raw path is split on
``/`` first and each segment decoded exactly once. A 3.x call id with an unencoded
``/`` still arrives split, so the call name is "the first segment starting with
``call_recording_``, joined with everything after it": the same answer with or
without the raw URI.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from .errors import MalformedUpload
from .metadata import KNOWN_FIELDS, split_query
from .naming import RESERVED_SUFFIXES
from .recording import Kind, Name

CALL_PREFIX = "call_recording_"

#: Extensions Kazoo records in: mp3 (default), wav, and mp4 in 4.x code.
DEFAULT_EXTENSIONS = ("mp3", "wav", "mp4")

#: Longest file name accepted, in UTF-8 bytes. A SIP Call-ID has no length limit, but
#: real ones are under 256 bytes; 2048 leaves room for a 1,000-character id with
#: multi-byte characters and still fits gunicorn's 8190-byte request line.
DEFAULT_MAX_NAME_BYTES = 2048

_UPLOAD_METHODS = frozenset({"PUT", "POST"})
_READ_METHODS = frozenset({"GET", "HEAD"})


class Action(str, enum.Enum):
    """What the request asks of a recognised URL."""

    UPLOAD = "upload"
    READ = "read"
    #: A recognised URL with a method it does not take: ``405``.
    NOT_ALLOWED = "not_allowed"


@dataclass(frozen=True)
class Target:
    """A request the receiver owns: where it points and what it asks."""

    action: Action
    name: Name
    #: Decoded SIP call id (``None`` for attachments).
    call_id: str | None
    #: Lower-case extension; for attachments whatever follows the last dot, or ``""``.
    ext: str
    #: The query, split and decoded once, in order.
    pairs: tuple[tuple[str, str | None], ...]
    #: The methods this URL takes, for ``Allow``.
    allow: tuple[str, ...]


def url_prefix(prefix: str) -> str:
    """A URL path prefix in its one spelling: ``/a/b``, and ``/`` for the root.

    Empty segments go, so a missing or doubled slash does not make another prefix:

    >>> url_prefix("search/"), url_prefix("/a//b/"), url_prefix("/"), url_prefix("")
    ('/search', '/a/b', '/', '/')
    """
    return "/" + "/".join(s for s in prefix.split("/") if s)


def _norm_prefix(prefix: str) -> tuple[str, ...]:
    """The router's prefix as segments; it must be written from the root (``/…``)."""
    if not prefix.startswith("/"):
        raise ValueError(f"prefix must start with '/': {prefix!r}")
    canonical = url_prefix(prefix)
    return tuple(canonical[1:].split("/")) if canonical != "/" else ()


class Router:
    """Recognise Kazoo uploads under a prefix; everything else is ``None``.

    >>> r = Router("/kzr")
    >>> t = r.route({"REQUEST_METHOD": "PUT", "PATH_INFO": "/kzr/a/call_recording_x/y.mp3",
    ...              "QUERY_STRING": "", "RAW_URI": "/kzr/a/call_recording_x%2Fy.mp3"})
    >>> t.call_id, t.name.segments, t.ext
    ('x/y', ('a',), 'mp3')
    >>> r.route({"REQUEST_METHOD": "PUT", "PATH_INFO": "/api/users/7", "QUERY_STRING": ""}) is None
    True
    """

    def __init__(
        self,
        prefix: str = "/",
        *,
        attachments_prefix: str | None = None,
        accept_caller: bool = False,
        extensions: Iterable[str] = DEFAULT_EXTENSIONS,
        read_back: bool = False,
        max_name_bytes: int = DEFAULT_MAX_NAME_BYTES,
    ) -> None:
        self.prefix = _norm_prefix(prefix)
        self.attachments_prefix = (
            None if attachments_prefix is None else _norm_prefix(attachments_prefix)
        )
        self.accept_caller = accept_caller
        self.extensions = frozenset(e.lower().lstrip(".") for e in extensions)
        self.read_back = read_back
        self.max_name_bytes = max_name_bytes
        # The cheap pass-through test runs on PATH_INFO as the server gave it.
        self._prefix_text = "/" + "/".join(self.prefix) if self.prefix else ""
        self._att_text = (
            None
            if self.attachments_prefix is None
            else "/" + "/".join(self.attachments_prefix) if self.attachments_prefix else ""
        )
        # The longer prefix wins where they overlap.
        self._attachments_first = self.attachments_prefix is not None and len(
            self.attachments_prefix
        ) >= len(self.prefix)
        upload = ("POST", "PUT")
        self._recording_allow = (("GET", "HEAD") + upload) if read_back else upload
        self._attachment_allow = ("GET", "HEAD") + upload

    # -- the hot path ---------------------------------------------------------------

    def might_match(self, environ: dict[str, Any]) -> bool:
        """The one cheap test on every request: could this be ours at all?

        False means the request is certainly not ours. It reads two environ keys and
        does a few string checks; nothing else is touched.
        """
        path: str = environ.get("PATH_INFO", "")
        if self._att_text is not None and _under(path, self._att_text):
            return True
        if not _under(path, self._prefix_text):
            return False
        if self.accept_caller:
            return True
        return CALL_PREFIX in path or CALL_PREFIX in environ.get("QUERY_STRING", "")

    def route(self, environ: dict[str, Any]) -> Target | None:
        """The :class:`Target` this request addresses, or ``None`` when it is not ours.

        Raises :class:`~kzr_wsgi.errors.MalformedUpload` for a request that is clearly
        meant for the receiver but cannot be valid (bad extension, empty call id, a
        name that is not UTF-8 or holds control characters, an overlong name).
        """
        if not self.might_match(environ):
            return None
        segments = request_segments(environ)
        method = environ.get("REQUEST_METHOD", "GET").upper()
        raw_query = environ.get("QUERY_STRING", "")
        if self._attachments_first:
            target = self._attachment(segments, method, raw_query)
            if target is None:
                target = self._recording(segments, method, raw_query)
        else:
            target = self._recording(segments, method, raw_query)
            if target is None:
                target = self._attachment(segments, method, raw_query)
        return target

    # -- the forms --------------------------------------------------------------------

    def _recording(
        self, segments: list[str], method: str, raw_query: str
    ) -> Target | None:
        rest = _strip_prefix(segments, self.prefix)
        if rest is None:
            return None
        pairs = tuple(split_query(raw_query))
        # Form 1: the first segment that starts with the name prefix begins the name;
        # a 3.x call id with an unencoded "/" spans the segments after it.
        for i, segment in enumerate(rest):
            if segment.startswith(CALL_PREFIX):
                filename = "/".join(rest[i:])
                if "." not in filename[len(CALL_PREFIX) :]:
                    return None
                return self._call_target(tuple(rest[:i]), filename, method, pairs)
        # Form 2: the name travels in the query: `recording=…`, or the configured URL's
        # last parameter, which Kazoo's own fields follow (or nothing does). Any other
        # parameter holding such a text is a host app's business (`?title=call_recording_…`).
        for i, (key, value) in enumerate(pairs):
            if not (value and value.startswith(CALL_PREFIX) and "." in value[len(CALL_PREFIX) :]):
                continue
            following = pairs[i + 1][0] if i + 1 < len(pairs) else None
            if key == "recording" or following is None or following in KNOWN_FIELDS:
                return self._call_target(tuple(rest), value, method, pairs)
        # Form 3: record_caller's bare <CALL_ID>.<EXT>, only when asked for.
        if self.accept_caller and rest:
            call_id, dot, ext = rest[-1].rpartition(".")
            if dot and call_id and ext.lower() in self.extensions:
                name = Name(Kind.CALLER, tuple(rest[:-1]), rest[-1])
                self._check_name(name)
                return self._target(name, call_id, ext.lower(), method, pairs, False)
        return None

    def _call_target(
        self,
        segments: tuple[str, ...],
        filename: str,
        method: str,
        pairs: tuple[tuple[str, str | None], ...],
    ) -> Target:
        call_id, _dot, ext = filename[len(CALL_PREFIX) :].rpartition(".")
        if not call_id:
            raise MalformedUpload("empty call id")
        if ext.lower() not in self.extensions:
            allowed = ", ".join(sorted(self.extensions))
            raise MalformedUpload(f"extension {ext[:20]!r} not accepted (allowed: {allowed})")
        name = Name(Kind.CALL, segments, filename)
        self._check_name(name)
        return self._target(name, call_id, ext.lower(), method, pairs, False)

    def _attachment(self, segments: list[str], method: str, raw_query: str) -> Target | None:
        if self.attachments_prefix is None:
            return None
        rest = _strip_prefix(segments, self.attachments_prefix)
        if rest is None:
            return None
        filename = rest[-1] if rest else ""
        name = Name(Kind.ATTACHMENT, tuple(rest[:-1]), filename)
        self._check_name(name)
        _stem, dot, ext = filename.rpartition(".")
        pairs = tuple(split_query(raw_query))
        return self._target(name, None, ext.lower() if dot else "", method, pairs, True)

    def _target(
        self,
        name: Name,
        call_id: str | None,
        ext: str,
        method: str,
        pairs: tuple[tuple[str, str | None], ...],
        attachment: bool,
    ) -> Target:
        allow = self._attachment_allow if attachment else self._recording_allow
        if method in _UPLOAD_METHODS:
            action = Action.UPLOAD
        elif method in _READ_METHODS and "GET" in allow:
            action = Action.READ
        else:
            action = Action.NOT_ALLOWED
        return Target(action, name, call_id, ext, pairs, allow)

    def _check_name(self, name: Name) -> None:
        for text in (*name.segments, name.filename):
            check_text(text, "name")
        if len(name.filename.encode("utf-8")) > self.max_name_bytes:
            raise MalformedUpload(f"name longer than {self.max_name_bytes} bytes")
        reserved = next((s for s in RESERVED_SUFFIXES if name.filename.endswith(s)), None)
        if reserved is not None:
            # What a store keeps beside a recording (its analysis, its waveform): such
            # an upload would stand where another recording's file does.
            raise MalformedUpload(f"names ending in {reserved} are reserved")


def check_text(text: str, what: str) -> None:
    """Refuse text that no Kazoo sends: undecodable bytes or control characters.

    RFC 3261 call ids are printable; a NUL or a line break in one is an attack or
    a broken client, never a recording.
    """
    if any(ord(c) < 0x20 or ord(c) == 0x7F or 0xDC80 <= ord(c) <= 0xDCFF for c in text):
        raise MalformedUpload(f"{what} holds control characters or bytes that are not UTF-8")


def _under(path: str, prefix_text: str) -> bool:
    return path.startswith(prefix_text) and (
        len(path) == len(prefix_text) or path[len(prefix_text)] == "/" or not prefix_text
    )


def _strip_prefix(segments: list[str], prefix: tuple[str, ...]) -> list[str] | None:
    if tuple(segments[: len(prefix)]) != prefix:
        return None
    return segments[len(prefix) :]


def request_segments(environ: dict[str, Any]) -> list[str]:
    """The request path below ``SCRIPT_NAME`` as decoded segments, decoded exactly once.

    The leading empty segment of an absolute path is dropped, so ``/a/b`` gives
    ``["a", "b"]`` and ``/a/`` gives ``["a", ""]``. The raw request URI is used when
    the server gives it and it agrees with ``SCRIPT_NAME`` + ``PATH_INFO`` (a proxy or
    middleware may have rewritten them); otherwise ``PATH_INFO``. Text is UTF-8; bytes
    that are not become surrogate escapes, which :func:`check_text` refuses.
    """
    script_name: str = environ.get("SCRIPT_NAME", "")
    path_info: str = environ.get("PATH_INFO", "")
    raw = _raw_path(environ)
    if raw is not None:
        raw_segments = raw.split("/")[1:]
        skip = len([s for s in script_name.split("/") if s]) if script_name else 0
        # The raw URI is latin-1 text of the request bytes, like PATH_INFO; unquoting
        # the str itself would re-encode any raw non-ASCII byte as UTF-8 first.
        decoded = [unquote_to_bytes(s.encode("latin-1", "replace")) for s in raw_segments]
        joined = b"/".join(decoded).decode("latin-1")
        if ("/" + joined) == script_name + path_info or (
            not raw_segments and not script_name and not path_info
        ):
            return [_utf8(b) for b in decoded[skip:]]
    if not path_info:
        return []
    return [_utf8(s.encode("latin-1", "replace")) for s in path_info.split("/")[1:]]


def _raw_path(environ: dict[str, Any]) -> str | None:
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not raw or not isinstance(raw, str):
        return None
    if "://" in raw.split("?", 1)[0]:
        # absolute-form request target: drop scheme and authority.
        after = raw.split("://", 1)[1]
        slash = after.find("/")
        raw = after[slash:] if slash >= 0 else "/"
    path = raw.split("?", 1)[0].split("#", 1)[0]
    return path if path.startswith("/") else None


def _utf8(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")
