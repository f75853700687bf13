"""Uploads shaped like Kazoo's, byte for byte, over raw sockets: what ``kzr-wsgi check`` sends.

A general HTTP client would normalise exactly what the check must reproduce (header
case, an empty ``te:``, an unencoded path, ``Expect: 100-continue``, a body cut
short), so requests are written by hand here (see the manual's Kazoo page, ``docs/kazoo.md``):

* :func:`httpc_request`: Erlang/OTP ``httpc`` as Kazoo 4.x's ``kz_att_http`` drives it:
  lower-case header names, an empty ``te:``, ``connection: keep-alive``,
  ``authorization: Basic`` from the URL's ``user:pass`` exactly as written there;
* :func:`libcurl_put`: FreeSWITCH's ``http_put``: ``Expect: 100-continue`` (the body
  follows the ``100``, or after one second without it), its user agent;
* :func:`cut_short_put`: announces ``N`` bytes, sends fewer, closes its sending side.

:class:`KazooURL` turns the configured URL into the targets Kazoo sends to;
:func:`silent_mp3` makes the bodies: a valid MP3 the way FreeSWITCH writes one.
"""

from __future__ import annotations

import base64
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.client import parse_headers
from typing import IO
from urllib.parse import quote, unquote, urlsplit

#: FreeSWITCH's mod_http_cache user agent.
FREESWITCH_AGENT = "freeswitch-http-cache/1.0"

#: Longest answer body read (a read-back of the check's own small files fits easily).
_MAX_BODY = 16 << 20

#: How long libcurl waits for ``100 Continue`` before sending the body anyway.
_CONTINUE_WAIT = 1.0

# MPEG-2 Layer III, no CRC (0xFFF3); 64 kbit/s, 16 kHz, no padding (0x88); stereo (0x00):
# Kazoo's default recording (16 kHz stereo) as FreeSWITCH's LAME encodes it.
_FRAME_HEADER = b"\xff\xf3\x88\x00"
#: Bytes of one such frame: 576 samples / 8 x 64000 / 16000.
MP3_FRAME_BYTES = 288
#: Milliseconds of audio in one frame: 576 samples at 16 kHz.
MP3_FRAME_MS = 36


def silent_mp3(frames: int) -> bytes:
    """``frames`` frames of silence (36 ms each), after an ID3v2 tag of 128 bytes of padding.

    Each frame is a valid MPEG-2 Layer III frame at 16 kHz stereo 64 kbit/s whose side
    information is all zero: no main data, so a decoder plays silence. That is the
    shape FreeSWITCH writes (``docs/audio.md``), small enough to upload in milliseconds.
    """
    if frames < 1:
        raise ValueError("an MP3 needs at least one frame")
    # ID3v2.3 header: version 3.0, no flags, a syncsafe size of 128 (all padding).
    tag = b"ID3\x03\x00\x00\x00\x00\x01\x00" + bytes(128)
    frame = _FRAME_HEADER + bytes(MP3_FRAME_BYTES - len(_FRAME_HEADER))
    return tag + frame * frames


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: scheme, host (no brackets) and port."""

    scheme: str
    host: str
    port: int

    @property
    def netloc(self) -> str:
        """``host:port`` as a ``Host`` header writes it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Answer:
    """What came back: a status, or ``None`` with the reason there was none."""

    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: Why there is no status: the connection failed, closed or timed out.
    error: str | None = None
    #: True when the server sent ``100 Continue`` first.
    continued: bool = False

    @property
    def ok(self) -> bool:
        """True for any ``2xx``."""
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        """``"201"``, or why there was no answer."""
        return str(self.status) if self.status is not None else f"no answer ({self.error})"


class KazooURL:
    """The URL Kazoo is configured with, and the request targets Kazoo makes of it (pure).

    :raises ValueError: not an ``http://`` or ``https://`` URL with a host.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http:// or https:// URL: {url!r}")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise ValueError(f"bad port in {url!r}") from exc
        self.endpoint = Endpoint(parts.scheme, parts.hostname, port)
        netloc = parts.netloc
        userinfo, at, _ = netloc.rpartition("@")
        #: ``user:pass`` exactly as written in the URL (percent-escapes left alone).
        self.raw_userinfo: str | None = userinfo if at else None
        #: The configured URL's path, its trailing ``/`` stripped (Kazoo adds one).
        self.path = parts.path.rstrip("/")
        #: The configured URL's query (``None``: it has none).
        self.query: str | None = parts.query if parts.query or url.endswith("?") else None

    @property
    def httpc_userinfo(self) -> str | None:
        """What httpc puts in ``authorization``: the userinfo as written, or nothing.

        httpc sends no credentials at all when the password holds a ``:``.
        """
        if self.raw_userinfo is None:
            return None
        user, _, password = self.raw_userinfo.partition(":")
        return None if ":" in password else f"{user}:{password}"

    @property
    def curl_userinfo(self) -> str | None:
        """What libcurl sends: the user and password percent-decoded."""
        if self.raw_userinfo is None:
            return None
        user, _, password = self.raw_userinfo.partition(":")
        return f"{unquote(user)}:{unquote(password)}"

    def kazoo4(self, filename: str, fields: list[tuple[str, str]]) -> str:
        """Where Kazoo 4.x's ``record_call`` uploads ``filename`` (``docs/kazoo.md``, URL forms)."""
        meta = "&".join(f"{k}={quote(v, safe='')}" for k, v in fields)
        name = quote(filename, safe="")
        if self.query is None:
            return f"{self.path}/{name}?{meta}"
        # kz_att_http:check_url_param: the name goes into the configured query.
        query = self.query
        last = query.rsplit("&", 1)[-1]
        if not last:
            query = f"{query}recording={name}"
        elif "=" not in last:
            query = f"{query}={name}"
        elif last.endswith("="):
            query = f"{query}{name}"
        else:
            query = f"{query}&recording={name}"
        return f"{self.path or '/'}?{query}&{meta}"

    def freeswitch(self, filename: str) -> str | None:
        """The target 3.x's FreeSWITCH uploads to: the name unencoded after the URL.

        None when the URL has a query: 3.x appends the name after it, where no
        receiver finds it.
        """
        if self.query is not None:
            return None
        return f"{self.path}/{filename}"


def basic_header(userinfo: str) -> str:
    """``Basic base64(userinfo)``."""
    return "Basic " + base64.b64encode(userinfo.encode("utf-8")).decode("ascii")


def httpc_headers(
    endpoint: Endpoint, length: int | None, userinfo: str | None,
    content_type: str = "audio/mpeg",
) -> list[tuple[str, str]]:
    """The header block ``httpc`` sends for ``kz_att_http``, in its order and case.

    ``length`` None: a request without a body (a read-back ``GET``).
    """
    headers: list[tuple[str, str]] = []
    if userinfo is not None:
        # httpc_request:handle_user_info turns user:pass@ in the URL into this header.
        headers.append(("authorization", basic_header(userinfo)))
    if length is not None:
        headers += [("content-type", content_type), ("content-length", str(length))]
    return [*headers, ("te", ""), ("host", endpoint.netloc), ("connection", "keep-alive")]


def request_head(method: str, target: str, headers: Sequence[tuple[str, str]]) -> bytes:
    """A request line and headers exactly as given (no name case changed, none added)."""
    out = f"{method} {target} HTTP/1.1\r\n"
    out += "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (out + "\r\n").encode("latin-1")


def httpc_request(
    endpoint: Endpoint, method: str, target: str, body: bytes | None, *,
    userinfo: str | None, timeout: float, extra: Sequence[tuple[str, str]] = (),
) -> Answer:
    """One request as ``kz_att_http`` sends it (``body`` None: no body, e.g. ``GET``)."""
    headers = httpc_headers(endpoint, None if body is None else len(body), userinfo)
    head = request_head(method, target, [*headers, *extra])
    try:
        with _connect(endpoint, timeout) as sock:
            sock.sendall(head + (body or b""))
            return _read_answer(sock.makefile("rb"), method)
    except (OSError, ValueError) as exc:
        return Answer(None, error=_reason(exc))


def libcurl_put(
    endpoint: Endpoint, target: str, body: bytes, *, userinfo: str | None, timeout: float,
) -> Answer:
    """Upload as FreeSWITCH's libcurl does, ``Expect: 100-continue`` included.

    Like libcurl: wait up to one second for ``100 Continue``; when a final answer comes
    instead, do not send the body; when nothing comes, send it anyway.
    """
    headers = [("Host", endpoint.netloc)]
    if userinfo is not None:
        headers.append(("Authorization", basic_header(userinfo)))
    headers += [
        ("User-Agent", FREESWITCH_AGENT),
        ("Accept", "*/*"),
        ("Content-Type", "audio/mpeg"),
        ("Content-Length", str(len(body))),
        ("Expect", "100-continue"),
    ]
    try:
        with _connect(endpoint, timeout) as sock:
            sock.sendall(request_head("PUT", target, headers))
            fp = sock.makefile("rb")
            sock.settimeout(_CONTINUE_WAIT)
            try:
                line: bytes | None = fp.readline(65537)
            except TimeoutError:
                # No interim answer in time: libcurl sends the body anyway. A file object
                # that timed out refuses further reads; nothing was read, so start afresh.
                line = None
                fp = sock.makefile("rb")
            sock.settimeout(timeout)
            if line is not None and _status_of(line) != 100:
                return _read_answer(fp, "PUT", first_line=line)
            if line is not None:
                parse_headers(fp)  # the rest of the 100's head
            sock.sendall(body)
            answer = _read_answer(fp, "PUT")
            return Answer(answer.status, answer.headers, answer.body, answer.error,
                          continued=line is not None)
    except (OSError, ValueError) as exc:
        return Answer(None, error=_reason(exc))


def cut_short_put(
    endpoint: Endpoint, target: str, body: bytes, announced: int, *,
    userinfo: str | None, timeout: float,
) -> Answer:
    """Announce ``announced`` bytes, send only ``body``, then close the sending side.

    What a client that crashed mid-upload leaves behind. The answer, if the server
    gives one; a closed connection or a timeout is an :class:`Answer` without status.
    """
    if len(body) >= announced:
        raise ValueError("a cut-short body must be shorter than announced")
    headers = httpc_headers(endpoint, announced, userinfo)
    try:
        with _connect(endpoint, timeout) as sock:
            sock.sendall(request_head("PUT", target, headers) + body)
            # TLS has no half-close: there the client just stops sending, as a stalled one.
            if not isinstance(sock, ssl.SSLSocket):
                sock.shutdown(socket.SHUT_WR)
            return _read_answer(sock.makefile("rb"), "PUT")
    except (OSError, ValueError) as exc:
        return Answer(None, error=_reason(exc))


# -- connections and answers -------------------------------------------------------------


def _connect(endpoint: Endpoint, timeout: float) -> socket.socket:
    sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
    if endpoint.scheme != "https":
        return sock
    context = ssl.create_default_context()
    try:
        return context.wrap_socket(sock, server_hostname=endpoint.host)
    except BaseException:
        sock.close()
        raise


def _status_of(line: bytes) -> int | None:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None
    return int(parts[1])


def _read_answer(fp: IO[bytes], method: str, first_line: bytes | None = None) -> Answer:
    """Read one response (skipping interim ``1xx``) from ``fp``."""
    line = first_line if first_line is not None else fp.readline(65537)
    while True:
        if not line:
            return Answer(None, error="the server closed the connection without answering")
        status = _status_of(line)
        if status is None:
            return Answer(None, error=f"not an HTTP answer: {line[:60]!r}")
        message = parse_headers(fp)
        if not 100 <= status < 200:
            break
        line = fp.readline(65537)
    headers = {k.lower(): v for k, v in message.items()}
    if method == "HEAD" or status in (204, 304):
        return Answer(status, headers)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _read_chunked(fp)
    elif "content-length" in headers:
        want = int(headers["content-length"])
        body = fp.read(min(want, _MAX_BODY))
    else:
        body = fp.read(_MAX_BODY)
    return Answer(status, headers, body)


def _read_chunked(fp: IO[bytes]) -> bytes:
    out = bytearray()
    while len(out) < _MAX_BODY:
        size = int(fp.readline(1024).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            break
        out += fp.read(size)
        fp.readline(1024)
    return bytes(out)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "the server closed the connection"
    return f"{type(exc).__name__}: {exc}"
