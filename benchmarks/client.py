"""The load generator: a bounded Python client on http.client, plus raw-socket shapes.

Large bodies go out with ``socket.sendfile`` from a file in the page cache, so the client
spends almost no CPU on the two cores it shares with the server. The 1 MB load runs
``concurrency`` threads, each opening a new connection per upload (as a recording upload
does) and changing the first 16 bytes of its 1 MiB buffer every time, so no two bodies
are the same. Every loop stops at a deadline and a count.
"""

from __future__ import annotations

import http.client
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

HOST = "127.0.0.1"
#: http.client's read size for file bodies (its default is 8 KiB).
BLOCK = 1 << 20


def make_file(path: str, size: int) -> str:
    """A file of ``size`` random bytes (1 MiB of randomness repeated, then cut)."""
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
        f.write(block[: size % len(block)])
    return path


def put_file(port: int, path: str, file_path: str, *, timeout: float = 120.0) -> tuple[int, float]:
    """PUT the file at ``file_path`` with a Content-Length; (status, seconds to the reply)."""
    size = os.path.getsize(file_path)
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout, blocksize=BLOCK)
    try:
        with open(file_path, "rb") as body:
            start = time.perf_counter()
            conn.putrequest("PUT", path, skip_accept_encoding=True)
            conn.putheader("Content-Type", "audio/mpeg")
            conn.putheader("Content-Length", str(size))
            conn.endheaders()
            assert conn.sock is not None
            conn.sock.sendfile(body)
            resp = conn.getresponse()
            resp.read()
            return resp.status, time.perf_counter() - start
    finally:
        conn.close()


def put_bytes(
    port: int, path: str, body: bytes | bytearray | memoryview, *, timeout: float = 30.0
) -> int:
    """PUT ``body`` on a new connection; the status."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(
            "PUT",
            path,
            body=body,
            headers={"Content-Type": "audio/mpeg", "Content-Length": str(len(body))},
        )
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


@dataclass
class LoadResult:
    """What a fixed-time load run did."""

    ok: int = 0
    failed: int = 0
    seconds: float = 0.0
    statuses: dict[int | str, int] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        """Uploads answered 2xx per second."""
        return self.ok / self.seconds if self.seconds else 0.0


def load(
    port: int,
    path_for: Callable[[int, int], str],
    *,
    size: int = 1 << 20,
    concurrency: int = 8,
    seconds: float = 10.0,
    max_requests: int = 200_000,
    body: bytes | None = None,
    mark_at: int = 0,
) -> LoadResult:
    """``concurrency`` threads PUT distinct ``size``-byte bodies until ``seconds`` pass.

    The bodies are random, or copies of ``body`` (e.g. an MP3) with a 16-byte mark at
    ``mark_at`` (inside its ID3 tag's padding) that makes each one different.
    """
    result = LoadResult()
    lock = threading.Lock()
    seed = os.urandom(size) if body is None else body
    deadline = time.perf_counter() + seconds
    budget = [max_requests]

    def worker(n: int) -> None:
        buf = bytearray(seed)
        i = 0
        while time.perf_counter() < deadline:
            with lock:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            struct.pack_into("!QQ", buf, mark_at, n, i)  # every body different
            try:
                status: int | str = put_bytes(port, path_for(n, i), buf)
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
            with lock:
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if isinstance(status, int) and 200 <= status < 300:
                    result.ok += 1
                else:
                    result.failed += 1
            i += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.seconds = time.perf_counter() - start
    return result


def raw_request(
    port: int,
    head: bytes,
    chunks: list[bytes],
    *,
    pause: float = 0.0,
    close_early: bool = False,
    timeout: float = 60.0,
) -> bytes:
    """Send ``head`` then each chunk (``pause`` between), then read the reply.

    With ``close_early`` the socket is shut for writing and closed after the chunks, as a
    client that dies mid-upload would; the reply (if any) is still read first, briefly.
    """
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(head)
        for chunk in chunks:
            if pause:
                time.sleep(pause)
            try:
                s.sendall(chunk)
            except OSError:
                break
        if close_early:
            s.settimeout(3)
            s.shutdown(socket.SHUT_WR)
        reply = b""
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                reply += data
                if b"\r\n\r\n" in reply and not close_early:
                    break
        except OSError as exc:
            reply += f"<{type(exc).__name__}>".encode()
        return reply
