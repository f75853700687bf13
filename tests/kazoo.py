"""Clients that upload the way Kazoo does, byte for byte (contract §3).

Each helper opens its own connection to a server on loopback, sends one request and
returns a :class:`Reply` (or, for :func:`erlang_httpc_put`, the status httpc saw):

* :func:`httpc_put`: Erlang/OTP ``httpc`` as ``kz_att_http`` drives it, spelled out
  by hand: lower-case header names, an empty ``te:``, ``connection: keep-alive``, the
  stray ``content_type`` header of Kazoo 4.0-4.3, ``authorization: Basic`` from
  ``user:pass``.
* :func:`freeswitch_put`: FreeSWITCH's ``http_put`` (libcurl): ``Expect: 100-continue``
  (the body follows the ``100``, or after one second without it),
  ``User-Agent: freeswitch-http-cache/1.0``, ``audio/mpeg``.
* :func:`put_cut_short`: announces ``N`` bytes, sends fewer and stops sending.
* :func:`curl_put`: the real ``curl -T`` (its own ``Expect: 100-continue``), or a
  chunked upload from stdin.
* :func:`erlang_httpc_put`: the real thing, ``httpc:request(put, …)`` run by ``erl``.

Paths are sent exactly as given (already percent-encoded as the client would), so a
test controls every byte of the request line.
"""

from __future__ import annotations

import base64
import http.client
import select
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Every helper gives up after this many seconds: a hung server fails the test.
TIMEOUT = 20.0

#: FreeSWITCH's mod_http_cache user agent.
FREESWITCH_AGENT = "freeswitch-http-cache/1.0"


@dataclass(frozen=True)
class Reply:
    """A server's final answer: status, headers (names lower-case) and body."""

    status: int
    headers: dict[str, str]
    body: bytes
    #: True when the server sent ``100 Continue`` before the final answer.
    continued: bool = False


def _connect(host: str, port: int) -> socket.socket:
    return socket.create_connection((host, port), timeout=TIMEOUT)


def _read_reply(sock: socket.socket, method: str, continued: bool = False) -> Reply:
    response = http.client.HTTPResponse(sock, method=method)
    try:
        response.begin()
        body = response.read()
    finally:
        response.close()
    headers = {k.lower(): v for k, v in response.getheaders()}
    return Reply(response.status, headers, body, continued)


def send_raw(host: str, port: int, head: bytes, body: bytes = b"", method: str = "PUT") -> Reply:
    """Send ``head`` (request line and headers, ending in a blank line) and ``body``."""
    with _connect(host, port) as sock:
        sock.sendall(head + body)
        return _read_reply(sock, method)


def request_head(method: str, target: str | bytes, headers: Sequence[tuple[str, str]]) -> bytes:
    """A request line and headers exactly as given (no name case changed, none added)."""
    line = target if isinstance(target, bytes) else target.encode("ascii")
    out = method.encode("ascii") + b" " + line + b" HTTP/1.1\r\n"
    for name, value in headers:
        out += f"{name}: {value}\r\n".encode("latin-1")
    return out + b"\r\n"


def httpc_headers(
    host: str,
    port: int,
    length: int,
    *,
    content_type: str = "audio/mpeg",
    stray_content_type: bool = False,
    userinfo: str | None = None,
) -> list[tuple[str, str]]:
    """The header block ``httpc`` sends for ``kz_att_http``'s PUT, in its order and case."""
    headers: list[tuple[str, str]] = []
    if stray_content_type:
        # Kazoo 4.0 to early 4.3 put this in the header list by mistake, underscore and all.
        headers.append(("content_type", content_type))
    if userinfo is not None:
        # httpc_request:handle_user_info turns user:pass@ in the URL into this header.
        token = base64.b64encode(userinfo.encode("utf-8")).decode("ascii")
        headers.append(("authorization", f"Basic {token}"))
    headers += [
        ("content-type", content_type),
        ("content-length", str(length)),
        ("te", ""),
        ("host", f"{host}:{port}"),
        ("connection", "keep-alive"),
    ]
    return headers


def httpc_put(
    host: str,
    port: int,
    target: str | bytes,
    body: bytes,
    *,
    method: str = "PUT",
    content_type: str = "audio/mpeg",
    stray_content_type: bool = False,
    userinfo: str | None = None,
) -> Reply:
    """Upload ``body`` to ``target`` (path and query) the way ``kz_att_http`` does."""
    headers = httpc_headers(host, port, len(body), content_type=content_type,
                            stray_content_type=stray_content_type, userinfo=userinfo)
    return send_raw(host, port, request_head(method, target, headers), body, method)


def freeswitch_headers(host: str, port: int, length: int,
                       content_type: str = "audio/mpeg") -> list[tuple[str, str]]:
    """The header block libcurl sends for FreeSWITCH's ``http_put``."""
    return [
        ("Host", f"{host}:{port}"),
        ("User-Agent", FREESWITCH_AGENT),
        ("Accept", "*/*"),
        ("Content-Type", content_type),
        ("Content-Length", str(length)),
        ("Expect", "100-continue"),
    ]


def freeswitch_put(
    host: str, port: int, target: str | bytes, body: bytes, *, content_type: str = "audio/mpeg"
) -> Reply:
    """Upload as FreeSWITCH's libcurl does, ``Expect: 100-continue`` included.

    Like libcurl: wait up to one second for ``100 Continue``; if a final answer comes
    instead, do not send the body at all; if nothing comes, send it anyway.
    """
    head = request_head("PUT", target, freeswitch_headers(host, port, len(body), content_type))
    with _connect(host, port) as sock:
        sock.sendall(head)
        interim = _peek_head(sock, 1.0)
        continued = interim is not None and interim.split(b" ", 2)[1:2] == [b"100"]
        if continued:
            assert interim is not None
            _consume(sock, len(interim))
        if continued or interim is None:
            sock.sendall(body)
        return _read_reply(sock, "PUT", continued)


def _peek_head(sock: socket.socket, wait: float) -> bytes | None:
    """The first response head waiting on ``sock`` (left unread), or None after ``wait``."""
    deadline = time.monotonic() + wait
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            return None
        data = sock.recv(65536, socket.MSG_PEEK)
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            return data[: end + 4]
        if not data:
            return None
        time.sleep(0.01)


def _consume(sock: socket.socket, n: int) -> None:
    while n:
        n -= len(sock.recv(n))


def put_cut_short(
    host: str,
    port: int,
    target: str | bytes,
    body: bytes,
    announced: int,
    *,
    content_type: str = "audio/mpeg",
    headers: Sequence[tuple[str, str]] = (),
) -> Reply | None:
    """Announce ``announced`` bytes, send only ``body`` (fewer), then stop sending.

    The write side is shut down, as a client that crashed mid-upload leaves it; the
    reply is returned if the server gives one, ``None`` if it just hangs up.
    """
    assert len(body) < announced
    all_headers = [("Host", f"{host}:{port}"), ("Content-Type", content_type),
                   ("Content-Length", str(announced)), *headers]
    with _connect(host, port) as sock:
        sock.sendall(request_head("PUT", target, all_headers) + body)
        sock.shutdown(socket.SHUT_WR)
        try:
            return _read_reply(sock, "PUT")
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return None


@dataclass(frozen=True)
class CurlResult:
    """What ``curl`` reported: final status (0 when none), body, and its ``-v`` trace."""

    status: int
    body: bytes
    trace: str


def curl_put(url: str, *, file: Path | None = None, data: bytes | None = None,
             headers: Sequence[str] = ()) -> CurlResult:
    """``curl -T FILE URL``, or ``curl -T - URL`` fed ``data`` (a chunked upload).

    curl adds ``Expect: 100-continue`` itself; the trace shows what it sent.
    ``--path-as-is`` keeps ``..`` segments as given instead of resolving them.
    """
    source = str(file) if file is not None else "-"
    cmd = ["curl", "-sS", "-v", "--path-as-is", "-o", "-", "-w", "\n%{http_code}",
           "-T", source]
    for header in headers:
        cmd += ["-H", header]
    proc = subprocess.run([*cmd, url], input=data, capture_output=True, timeout=TIMEOUT,
                          check=False)
    out, _, code = proc.stdout.rpartition(b"\n")
    return CurlResult(int(code or 0), out, proc.stderr.decode(errors="replace"))


def erlang_httpc_put(url: str, file: Path, *, content_type: str = "audio/mpeg",
                     method: str = "put") -> int:
    """Upload ``file`` with Erlang/OTP's own httpc, exactly as ``kz_att_http`` calls it.

    ``httpc:request(put, {Url, [], ContentType, Body}, [], [])`` after ``inets:start()``.
    Returns the status httpc reports; raises if the request itself failed.
    """
    script = (
        "inets:start(),"
        f'{{ok, Body}} = file:read_file("{_erl_string(str(file))}"),'
        f'R = httpc:request({method}, {{"{_erl_string(url)}", [], '
        f'"{_erl_string(content_type)}", Body}}, [], []),'
        "case R of"
        ' {ok, {{_, Status, _}, _, _}} -> io:format("status ~p~n", [Status]);'
        ' Other -> io:format("error ~p~n", [Other])'
        " end,"
        "halt()."
    )
    proc = subprocess.run(["erl", "-noshell", "-eval", script], capture_output=True,
                          timeout=TIMEOUT * 2, check=False, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("status "):
            return int(line.split()[1])
    raise RuntimeError(f"httpc upload failed: {proc.stdout}{proc.stderr}")


def _erl_string(text: str) -> str:
    # An Erlang string literal body: escape the two characters that end or escape it.
    return text.replace("\\", "\\\\").replace('"', '\\"')
