"""The direct body read under gunicorn (kzr_wsgi.server.fastread): its edges, keep-alive after it.

The in-process tests drive gunicorn's own parser and environ (``RequestParser``,
``gunicorn.http.wsgi.create``) over a real loopback TCP connection, exactly as a gthread
worker does, then read the body through :class:`kzr_wsgi.body.Body` and check that
gunicorn can carry on: its reader's books balance and the requests pipelined behind
the body parse as they should. The end-to-end tests pipeline uploads, reads and
pass-through requests on one long keep-alive connection to a real ``kzr-wsgi serve``
and to the plain gunicorn embedding.
"""

from __future__ import annotations

import http.client
import io
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import serve, wait_for_workers, wsgi_server

from kzr_wsgi.body import Body
from kzr_wsgi.errors import BodyIncomplete
from kzr_wsgi.server import fastread

#: Generous: a read that blocks this long is a hang, and fails the test instead.
TIMEOUT = 10.0
MIB = 1 << 20


@dataclass
class Conn:
    """One loopback connection: the client's end, and gunicorn's parser over the server's."""

    client: socket.socket
    server: socket.socket
    parser: RequestParser
    cfg: Config

    def next_environ(self) -> dict[str, Any]:
        """Parse the next request as a gthread worker does; its WSGI environ."""
        req = next(self.parser)
        _, environ = wsgi.create(
            req, self.server, self.server.getpeername(), self.server.getsockname(), self.cfg
        )
        return environ

    def send_later(self, data: bytes) -> threading.Thread:
        """Send ``data`` from a thread (a large body would fill the socket buffers)."""
        sender = threading.Thread(target=self.client.sendall, args=(data,), daemon=True)
        sender.start()
        return sender


@contextmanager
def connection() -> Iterator[Conn]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=TIMEOUT)
        server, addr = listener.accept()
    server.settimeout(TIMEOUT)
    cfg = Config()
    try:
        yield Conn(client, server, RequestParser(cfg, server, addr), cfg)
    finally:
        client.close()
        server.close()


def put(path: str, body: bytes, *headers: str) -> bytes:
    head = [f"PUT {path} HTTP/1.1", "Host: t", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def read_with(body: Body, ops: list[tuple[str, int]]) -> bytes:
    """Read ``body`` to its end, cycling through ``ops``: ("read", n) or ("into", n)."""
    out = bytearray()
    i = 0
    while not body.complete:
        kind, n = ops[i % len(ops)]
        i += 1
        if i > 2000:  # enough small reads: the rest of a large body in large ones
            n = max(n, MIB)
        if kind == "read":
            out += body.read(n)
        else:
            buffer = bytearray(n)
            got = body.readinto(buffer)
            assert 0 < got <= n
            out += buffer[:got]
    assert body.read(10) == b"" and body.readinto(bytearray(10)) == 0
    return bytes(out)


def gunicorn_body(environ: dict[str, Any]) -> Any:
    return environ["wsgi.input"]


SIZES = st.one_of(
    st.integers(1, 64), st.integers(65, 300_000), st.sampled_from([MIB, 3 * MIB + 7])
)
OPS = st.lists(
    st.tuples(
        st.sampled_from(["read", "into"]),
        st.one_of(st.integers(1, 16), st.integers(17, MIB), st.just(4 * MIB)),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=SIZES,
    buffered=st.integers(0, 20_000),
    ops=OPS,
    behind=st.lists(st.integers(0, 3000), max_size=3),
    seed=st.integers(0, 2**32),
)
def test_body_then_pipelined_requests(
    size: int, buffered: int, ops: list[tuple[str, int]], behind: list[int], seed: int
) -> None:
    """Bytes already buffered, then the socket; never past the end; what follows still parses."""
    data = payload(size, seed)
    following = [payload(n, seed + i + 1) for i, n in enumerate(behind)]
    rest = b"".join(
        put(f"/next{i}", b) if b else get(f"/next{i}") for i, b in enumerate(following)
    )
    with connection() as conn:
        # The head and the first `buffered` body bytes are on the socket before gunicorn
        # reads the head: its first recv takes them into its buffer.
        request = put("/call_recording_x.mp3", data)
        split = _head_len(data) + buffered
        conn.client.sendall(request[:split])
        environ = conn.next_environ()
        sender = conn.send_later(request[split:] + rest)
        body = Body.from_environ(environ)
        assert body._direct is not None
        assert read_with(body, ops) == data
        sender.join(TIMEOUT)
        gbody = gunicorn_body(environ)
        assert gbody.reader.length == 0 and not gbody.failed
        assert conn.parser.finish_body()
        for i, expected in enumerate(following):
            environ = conn.next_environ()
            assert environ["PATH_INFO"] == f"/next{i}"
            assert environ["wsgi.input"].read() == expected
        assert conn.parser.unreader.buf.getvalue() == b""


def _head_len(data: bytes) -> int:
    return len(put("/call_recording_x.mp3", data)) - len(data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=SIZES, sent_share=st.floats(0, 0.999), ops=OPS, seed=st.integers(0, 2**32))
def test_client_that_stops_early(
    size: int, sent_share: float, ops: list[tuple[str, int]], seed: int
) -> None:
    """BodyIncomplete (from the end of the stream, not a timeout), and no keep-alive after."""
    data = payload(size, seed)
    sent = int(size * sent_share)
    with connection() as conn:
        # From a thread: megabytes do not fit in the socket buffers before the server reads.
        def send_and_stop() -> None:
            conn.client.sendall(put("/call_recording_x.mp3", data)[: _head_len(data) + sent])
            conn.client.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send_and_stop, daemon=True)
        sender.start()
        environ = conn.next_environ()
        body = Body.from_environ(environ)
        assert body._direct is not None
        started = time.monotonic()
        with pytest.raises(BodyIncomplete) as caught:
            read_with(body, ops)
        assert time.monotonic() - started < TIMEOUT / 2
        assert body.bytes_read <= sent
        # The socket said the client is gone: an EOF, not a timeout.
        assert isinstance(caught.value.__cause__, EOFError) or "ended after" in str(caught.value)
        assert gunicorn_body(environ).failed
        assert not conn.parser.finish_body()
        sender.join(TIMEOUT)


def test_client_that_resets_the_connection() -> None:
    data = payload(2 * MIB, 7)
    with connection() as conn:
        conn.client.sendall(put("/call_recording_x.mp3", data)[: _head_len(data) + 100_000])
        environ = conn.next_environ()
        body = Body.from_environ(environ)
        assert body.read(50_000) == data[:50_000]
        # Linger on, 0 s: close() sends a reset.
        conn.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, bytes([1, 0, 0, 0, 0, 0, 0, 0]))
        conn.client.close()
        with pytest.raises(BodyIncomplete):
            body.drain()
        assert gunicorn_body(environ).failed


@pytest.mark.parametrize("size", [1, 5000, 3 * MIB], ids=["1B", "5KB", "3MB"])
def test_expect_100_continue(size: int) -> None:
    """gunicorn answers 100 Continue before the app runs; the body then comes straight in."""
    data = payload(size, size)
    with connection() as conn:
        head = put("/call_recording_x.mp3", b"", "Expect: 100-continue")
        head = head.replace(b"Content-Length: 0", f"Content-Length: {size}".encode())
        conn.client.sendall(head)
        environ = conn.next_environ()
        assert conn.client.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sender = conn.send_later(data + get("/after"))
        body = Body.from_environ(environ)
        assert body._direct is not None
        assert read_with(body, [("into", MIB)]) == data
        sender.join(TIMEOUT)
        assert conn.parser.finish_body()
        assert conn.next_environ()["PATH_INFO"] == "/after"


# -- falling back to wsgi.input ---------------------------------------------------------


def test_chunked_body_uses_gunicorns_reader() -> None:
    with connection() as conn:
        conn.client.sendall(
            b"PUT /x.mp3 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" + get("/after")
        )
        environ = conn.next_environ()
        assert fastread.direct_reader(environ, 11) is None
        body = Body.from_environ(environ)
        assert body._direct is None and body.read() == b"hello world"
        assert conn.parser.finish_body()
        assert conn.next_environ()["PATH_INFO"] == "/after"


def test_other_servers_input_is_read_as_is() -> None:
    environ = {"wsgi.input": io.BytesIO(b"abc"), "CONTENT_LENGTH": "3"}
    assert fastread.direct_reader(environ, 3) is None
    assert Body.from_environ(environ).read() == b"abc"


def test_switched_off_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fastread.ENV_SWITCH, "0")
    with connection() as conn:
        conn.client.sendall(put("/x.mp3", b"abc"))
        environ = conn.next_environ()
        assert fastread.direct_reader(environ, 3) is None
        assert Body.from_environ(environ).read() == b"abc"


def test_untested_gunicorn_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastread, "TESTED_GUNICORN", ((1, 0),))
    monkeypatch.setattr(fastread, "_looked_up", False)
    monkeypatch.setattr(fastread, "_classes", None)
    with connection() as conn:
        conn.client.sendall(put("/x.mp3", b"abc"))
        environ = conn.next_environ()
        assert fastread.direct_reader(environ, 3) is None
    monkeypatch.undo()
    # Back to the installed, tested version: looked up afresh.
    monkeypatch.setattr(fastread, "_looked_up", False)
    with connection() as conn:
        conn.client.sendall(put("/x.mp3", b"abc"))
        assert fastread.direct_reader(conn.next_environ(), 3) is not None


def test_installed_gunicorn_is_a_tested_one() -> None:
    import gunicorn

    major, minor = (int(p) for p in gunicorn.__version__.split(".")[:2])
    assert (major, minor) in fastread.TESTED_GUNICORN


def test_body_already_started_is_left_to_gunicorn() -> None:
    data = payload(300_000, 3)
    with connection() as conn:
        conn.client.sendall(put("/x.mp3", data) + get("/after"))
        environ = conn.next_environ()
        start = environ["wsgi.input"].read(10)
        assert fastread.direct_reader(environ, len(data)) is None
        body = Body.from_environ(environ)
        assert body._direct is None
        body.content_length = len(data) - 10
        assert start + body.read() == data
        assert conn.parser.finish_body()
        assert conn.next_environ()["PATH_INFO"] == "/after"


def test_objects_of_other_types_are_left_alone() -> None:
    with connection() as conn:
        conn.client.sendall(put("/x.mp3", b"abc"))
        environ = conn.next_environ()
        assert fastread.direct_reader({**environ, "gunicorn.socket": object()}, 3) is None
        other = socket.socket()
        try:
            assert fastread.direct_reader({**environ, "gunicorn.socket": other}, 3) is None
        finally:
            other.close()
        assert fastread.direct_reader(environ, 4) is None  # the length disagrees
        assert fastread.direct_reader(environ, 3) is not None


# -- end to end: one long keep-alive connection, pipelined ------------------------------


class _OneFile:
    """Lets every http.client response read from one buffered file on the socket.

    Each response closes its file when done: this one's ``close`` keeps it open (a
    response's read-ahead would otherwise be lost with it).
    """

    def __init__(self, sock: socket.socket) -> None:
        self.file = sock.makefile("rb")

    def makefile(self, *args: object, **kwargs: object) -> Any:
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)

    def close(self) -> None:
        pass


def _exchange(
    url_host: str, port: int, requests: list[tuple[str, bytes]]
) -> list[tuple[int, bytes]]:
    """Send every request at once on one connection; read the replies in order."""
    with socket.create_connection((url_host, port), timeout=30) as sock:
        sender = threading.Thread(
            target=sock.sendall, args=(b"".join(raw for _, raw in requests),), daemon=True
        )
        sender.start()
        reader = _OneFile(sock)
        replies = []
        for method, _ in requests:
            response = http.client.HTTPResponse(reader, method=method)  # type: ignore[arg-type]
            response.begin()
            replies.append((response.status, response.read()))
            assert not response.will_close, "the server closed a keep-alive connection"
        sender.join(30)
        return replies


def _keepalive_script(host_status: int) -> tuple[list[tuple[str, bytes]], list[Any]]:
    """Requests of every kind, and what each reply must be (a status, or (status, body))."""
    big = payload(9 * MIB + 3, 1)  # over the pipeline threshold
    one = payload(MIB, 2)
    small = b"RIFF tiny"
    requests: list[tuple[str, bytes]] = []
    expect: list[Any] = []

    def add(method: str, raw: bytes, reply: Any) -> None:
        requests.append((method, raw))
        expect.append(reply)

    for round_ in range(3):
        add("PUT", put(f"/call_recording_one-{round_}.mp3", one), 201)
        add("GET", get("/not/a/recording"), host_status)
        add("PUT", put(f"/call_recording_small-{round_}.mp3", small), 201)
        add("GET", get(f"/call_recording_one-{round_}.mp3"), (200, one))
        add("PUT", put(f"/call_recording_one-{round_}.mp3", one), 200)  # a retry
        add("PUT", put("/some/host/route", b"not ours"), host_status)
        add("HEAD", f"HEAD /call_recording_small-{round_}.mp3 HTTP/1.1\r\nHost: t\r\n\r\n"
            .encode(), (200, b""))
    add("PUT", put("/call_recording_big.mp3", big), 201)
    add("GET", get("/call_recording_big.mp3"), (200, big))
    add("GET", get("/call_recording_small-2.mp3"), (200, small))
    return requests, expect


def _check(replies: list[tuple[int, bytes]], expect: list[Any]) -> None:
    assert len(replies) == len(expect)
    for i, ((status, body), want) in enumerate(zip(replies, expect, strict=True)):
        if isinstance(want, tuple):
            assert (status, body) == want, f"reply {i}: {status} {body[:60]!r}"
        else:
            assert status == want, f"reply {i}: {status} {body[:200]!r}"


@pytest.mark.slow
def test_keepalive_pipelined_serve(tmp_path: Path) -> None:
    """``kzr-wsgi serve`` (the direct read in use): one connection, every kind of request."""
    requests, expect = _keepalive_script(404)
    with serve(tmp_path, "--read-back", "--workers", "1") as server:
        _check(_exchange(server.host, server.port, requests), expect)
        assert "Traceback" not in server.log()


@pytest.mark.slow
def test_keepalive_pipelined_gunicorn_embedding(tmp_path: Path) -> None:
    """The middleware embedded in a host app under gunicorn (``kzr_wsgi.server.run``)."""
    requests, expect = _keepalive_script(200)
    root = tmp_path / "rec"
    with wsgi_server("gunicorn", "apps:recordings_app", tmp_path, root=str(root),
                     read_back=True) as server:
        replies = _exchange(server.host, server.port, requests)
        _check(replies, expect)
        host = [json.loads(b) for (s, b), (m, raw) in zip(replies, requests, strict=True)
                if b.startswith(b'{"host"')]
        assert {(h["method"], h["body_len"]) for h in host} == {("GET", 0), ("PUT", 8)}
        assert "Traceback" not in server.log()


@pytest.mark.slow
def test_large_upload_memory_stays_flat(tmp_path: Path) -> None:
    """A 256 MiB body through the direct read and the copy pipeline: RSS stays flat."""
    from servers import rss_peak

    body = tmp_path / "body"
    block = payload(MIB, 11)
    with open(body, "wb") as f:
        for _ in range(256):
            f.write(block)
    with serve(tmp_path, "--workers", "1") as server:
        # serve's background analysis worker is a process of its tree: started, and at its
        # working size, before anything is measured (a one-time cost).
        wait_for_workers(server)
        # A first upload big enough for the copy pipeline pays the one-time costs (its
        # buffer pool and threads, the catalog's connection, imports): what is measured
        # after it is what a body's size costs, which must be nothing.
        warm = http.client.HTTPConnection(server.host, server.port, timeout=120)
        warm.request("PUT", "/call_recording_warm.wav", body=payload(16 * MIB, 12))
        assert warm.getresponse().status == 201
        warm.close()
        conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
        with open(body, "rb") as f, rss_peak(server.proc.pid) as peak:
            conn.putrequest("PUT", "/call_recording_big.wav")
            conn.putheader("Content-Length", str(256 * MIB))
            conn.endheaders()
            assert conn.sock is not None
            conn.sock.sendfile(f)
            response = conn.getresponse()
            response.read()
        conn.close()
        assert response.status == 201
        assert peak.growth <= 8 * MIB, f"grew {peak.growth / MIB:.1f} MiB"
