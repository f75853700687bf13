"""Clients that talk to a storage-plan mount the way Kazoo's ``kz_att_http`` does.

Built on :mod:`kazoo` (byte-exact request heads, raw sockets); this module adds what
storage plans need on top (contract §2.5, §3, §5):

* :func:`kazoo_boundary` and :func:`multipart_body`: ``kz_http_util:encode_multipart``'s
  exact framing, document part first, then the file part.
* :func:`stream_upload`: a body produced piece by piece and sent as it is produced, so
  a test can upload hundreds of MB without holding them.
* :func:`erlang_put_get`: the storage-plan credential check (``cb_storage``), PUT then
  GET of the same URL, run by Erlang/OTP's own ``httpc``.
* :func:`attachment_url`: ``kz_att_util:format_url``'s URL shapes for a field list.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from kazoo import (
    TIMEOUT,
    Reply,
    _connect,
    _read_reply,
    httpc_headers,
    put_cut_short,
    request_head,
)

#: The document part's type, as kz_att_http sends it.
DOCUMENT_TYPE = "application/json"


def kazoo_boundary(seed: bytes | None = None) -> str:
    """A boundary like cowlib's ``cow_multipart:boundary()``: 48 random bytes, base64.

    64 characters that may hold ``+`` and ``/`` (sent unquoted by Kazoo).
    """
    return base64.b64encode(seed if seed is not None else os.urandom(48)).decode("ascii")


def multipart_content_type(boundary: str) -> str:
    """The request's ``Content-Type`` for a multipart plan upload."""
    return f"multipart/form-data; boundary={boundary}"


def multipart_head(boundary: str, doc_id: str, document: dict[str, object] | bytes,
                   attachment: str, content_type: str) -> bytes:
    """Everything a Kazoo multipart body holds before the file's bytes.

    ``\\r\\n--B\\r\\n`` + the document part's headers + blank line + JSON, then the
    file part's delimiter and headers: the file's bytes follow directly.
    """
    # kz_json:encode gives compact JSON.
    doc = (document if isinstance(document, bytes)
           else json.dumps(document, separators=(",", ":")).encode())
    b = boundary.encode("ascii")
    return (
        b"\r\n--" + b + b"\r\n"
        + f"content-disposition: form-data; name={doc_id}\r\n".encode()
        + f"content-type: {DOCUMENT_TYPE}\r\n".encode()
        + b"\r\n" + doc
        + b"\r\n--" + b + b"\r\n"
        + f"content-disposition: form-data; name={attachment}\r\n".encode()
        + f"content-type: {content_type}\r\n".encode()
        + b"\r\n"
    )


def multipart_tail(boundary: str) -> bytes:
    """The closing delimiter: ``\\r\\n--B--`` and nothing after it (no final CRLF)."""
    return b"\r\n--" + boundary.encode("ascii") + b"--"


def multipart_body(boundary: str, doc_id: str, document: dict[str, object] | bytes,
                   attachment: str, data: bytes, content_type: str = "audio/mpeg",
                   *, base64_encode: bool = False) -> bytes:
    """A whole body as ``kz_att_http`` builds it (``base64:encode`` of the file if asked)."""
    payload = base64.b64encode(data) if base64_encode else data
    return (multipart_head(boundary, doc_id, document, attachment, content_type)
            + payload + multipart_tail(boundary))


def plan_put(host: str, port: int, target: str, body: bytes, *,
             content_type: str = "audio/mpeg", method: str = "PUT") -> Reply:
    """One upload with httpc's header block, Kazoo 4.0-4.3's stray ``content_type`` too."""
    headers = httpc_headers(host, port, len(body), content_type=content_type,
                            stray_content_type=True)
    with _connect(host, port) as sock:
        sock.sendall(request_head(method, target, headers) + body)
        return _read_reply(sock, method)


def get(host: str, port: int, target: str, *, method: str = "GET",
        headers: Sequence[tuple[str, str]] = ()) -> Reply:
    """A GET (or HEAD) as httpc sends it, plus any ``headers`` (``Range``, …)."""
    all_headers = [("te", ""), ("host", f"{host}:{port}"), ("connection", "keep-alive"),
                   *headers]
    with _connect(host, port) as sock:
        sock.sendall(request_head(method, target, all_headers))
        return _read_reply(sock, method)


@dataclass(frozen=True)
class Streamed:
    """What :func:`stream_upload` sent and got back."""

    reply: Reply
    #: Bytes sent on the wire (the whole body).
    sent: int
    #: sha256 of the file bytes alone (what the server must store).
    file_sha256: str
    file_size: int


def stream_upload(host: str, port: int, target: str, head: bytes,
                  file_chunks: Iterable[bytes], tail: bytes, *, content_type: str,
                  content_length: int) -> Streamed:
    """Send ``head``, each of ``file_chunks`` as produced, then ``tail``; never all at once.

    ``content_length`` is announced up front (httpc never chunks), so the caller
    computes it from sizes; the file's sha256 is computed on the way.
    """
    headers = httpc_headers(host, port, content_length, content_type=content_type)
    sha = hashlib.sha256()
    size = 0
    with _connect(host, port) as sock:
        sock.settimeout(TIMEOUT * 3)
        sock.sendall(request_head("PUT", target, headers) + head)
        sent = len(head)
        for chunk in file_chunks:
            sha.update(chunk)
            size += len(chunk)
            sock.sendall(chunk)
            sent += len(chunk)
        sock.sendall(tail)
        sent += len(tail)
        reply = _read_reply(sock, "PUT")
    return Streamed(reply, sent, sha.hexdigest(), size)


def pseudo_audio(total: int, block: int = 1 << 20, seed: bytes = b"kzr") -> Iterator[bytes]:
    """``total`` bytes of incompressible-looking data, made one ``block`` at a time.

    Each block is a fresh sha256-keyed stretch of one random block, so no two blocks
    are equal and nothing larger than a block is ever held.
    """
    base = hashlib.shake_256(seed).digest(block)
    made = 0
    n = 0
    while made < total:
        size = min(block, total - made)
        # A per-block 32-byte tag in front keeps blocks distinct at no real cost.
        tag = hashlib.sha256(seed + n.to_bytes(8, "big")).digest()
        yield (tag + base[: max(size - len(tag), 0)])[:size]
        made += size
        n += 1


def cut_short(host: str, port: int, target: str, body: bytes, announced: int, *,
              content_type: str) -> Reply | None:
    """Announce ``announced`` bytes, send ``body`` (fewer), then stop sending.

    The write side is shut down, as a Kazoo node that died mid-upload leaves it; the
    reply is returned if the server gives one, ``None`` if it just hangs up.
    """
    return put_cut_short(host, port, target, body, announced, content_type=content_type)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of :func:`erlang_put_get`, as httpc saw it."""

    put_status: int
    get_status: int
    get_body: bytes


def erlang_put_get(url: str, body: bytes, content_type: str = "text/plain",
                   verb: str = "put") -> CheckResult:
    """Kazoo's credential check from Erlang's own ``httpc``: PUT ``body``, then GET ``url``.

    ``verb`` is the plan's ``verb`` (``put``, the default, or ``post``).

    ``httpc:request(put, {Url, [], ContentType, Body}, [], [])`` then
    ``httpc:request(get, {Url, []}, [], [{body_format, binary}])`` in one ``erl`` run
    with inets started, as ``kz_http`` does. The GET body comes back base64-encoded on
    stdout, so every byte is compared in Python.
    """
    encoded = base64.b64encode(body).decode("ascii")
    script = (
        "inets:start(),"
        f'Url = "{_erl_string(url)}",'
        f'Body = base64:decode(<<"{encoded}">>),'
        f'{{ok, {{{{_, P, _}}, _, _}}}} = httpc:request({verb},'
        f' {{Url, [], "{content_type}", Body}}, [], []),'
        "{ok, {{_, G, _}, _, Got}} = httpc:request(get, {Url, []}, [], [{body_format, binary}]),"
        'io:format("put ~p~nget ~p ~s~n", [P, G, base64:encode(Got)]),'
        "halt()."
    )
    proc = subprocess.run(["erl", "-noshell", "-eval", script], capture_output=True,
                          timeout=TIMEOUT * 2, check=False, text=True)
    put_status = get_status = None
    got = b""
    for line in proc.stdout.splitlines():
        words = line.split()
        if words[:1] == ["put"]:
            put_status = int(words[1])
        elif words[:1] == ["get"]:
            get_status = int(words[1])
            got = base64.b64decode(words[2]) if len(words) > 2 else b""
    if put_status is None or get_status is None:
        raise RuntimeError(f"httpc round trip failed: {proc.stdout}{proc.stderr}")
    return CheckResult(put_status, get_status, got)


def _erl_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def attachment_url(prefix: str, fields: Sequence[str | None], *, separator: str = "/") -> str:
    """``URL/`` + the fields that have a value, each uri-encoded, joined by ``separator``.

    Mirrors ``kz_att_util:format_url``: a field without a value (``owner_id`` of a
    document that has none) is left out, not left empty; ``fields=[]`` gives ``URL/``.
    """
    present = [quote(f, safe="") for f in fields if f]
    return prefix.rstrip("/") + "/" + separator.join(present)
