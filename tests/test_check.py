"""``kzr-wsgi check URL``: right about real receivers, and about broken ones.

The pure parts (the MP3 it sends, the URL forms, step 1) are tested without sockets;
the request shapes against a socket that records every byte; the verdicts against real
``kzr-wsgi serve`` processes and deliberately broken receivers (tests/check_receivers.py).
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import mutagen.mp3
import pytest
from servers import serve, wsgi_server

from kzr_wsgi.selftest.check import (
    FAIL,
    PASS,
    SKIP,
    WARN,
    Status,
    Step,
    passed,
    run_check,
    url_step,
)
from kzr_wsgi.selftest.wire import MP3_FRAME_BYTES, KazooURL, silent_mp3

# -- pure ---------------------------------------------------------------------------------


def test_silent_mp3_is_an_mp3_freeswitch_would_write() -> None:
    data = silent_mp3(50)
    info = mutagen.mp3.MP3(io.BytesIO(data)).info
    assert (info.version, info.layer) == (2, 3)
    assert (info.sample_rate, info.channels, info.bitrate) == (16000, 2, 64000)
    assert info.length == pytest.approx(50 * 0.036)
    assert len(data) == 138 + 50 * MP3_FRAME_BYTES
    assert data.startswith(b"ID3")
    with pytest.raises(ValueError):
        silent_mp3(0)


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("http://kazoo:s3cret-._~9@10.1.2.3:8080/kzr", PASS, None),
        ("https://recorder.example/kzr", PASS, None),
        ("http://kazoo:p%40ss@10.1.2.3/", FAIL, "password"),
        ("http://kazoo:a:b@10.1.2.3/", FAIL, "password"),
        ("http://ka%20zoo:pass@10.1.2.3/", FAIL, "user name"),
        ("http://127.0.0.1:8080/", WARN, "Kazoo will not upload there"),
        ("http://localhost/", WARN, "Kazoo will not upload there"),
        ("http://[::1]:8080/", WARN, "Kazoo will not upload there"),
        ("http://0.0.0.0:8080/", WARN, "Kazoo will not upload there"),
    ],
    ids=["good-credentials", "https", "percent-escape", "colon", "user-space", "loopback",
         "localhost", "ipv6-loopback", "unspecified"],
)
def test_url_step(url: str, status: str, words: str | None) -> None:
    step = url_step(KazooURL(url))
    assert (step.step, step.name, step.status) == (1, "url", status)
    if words:
        assert step.hint and words in step.hint


def test_a_step_status_prints_and_serialises_as_its_text() -> None:
    step = Step(5, "cut-short", FAIL, "answered 201")
    assert step.line() == "FAIL  5  cut-short: answered 201"
    assert json.dumps(step.to_json()) == (
        '{"step": 5, "name": "cut-short", "status": "FAIL", "hint": "answered 201"}')
    assert [str(s) for s in Status] == ["PASS", "WARN", "FAIL", "SKIP"]
    assert Status("WARN") is WARN and SKIP == "SKIP"
    assert passed([Step(1, "url", WARN), Step(6, "read-back", SKIP)])
    assert not passed([Step(1, "url", PASS), step])


def test_url_forms_follow_kazoo() -> None:
    fields = [("call_id", "a b@c"), ("recording_id", "r1")]
    plain = KazooURL("http://kazoo:p@h:81/kzr/")
    assert plain.endpoint.netloc == "h:81"
    assert plain.kazoo4("call_recording_x@y.mp3", fields) == (
        "/kzr/call_recording_x%40y.mp3?call_id=a%20b%40c&recording_id=r1")
    assert plain.freeswitch("call_recording_x@y.mp3") == "/kzr/call_recording_x@y.mp3"
    # The configured URL has a query: the name goes into it (kz_att_http check_url_param).
    assert KazooURL("http://h/up?t=1").kazoo4("n.mp3", fields[1:]) == (
        "/up?t=1&recording=n.mp3&recording_id=r1")
    assert KazooURL("http://h/up?file=").kazoo4("n.mp3", fields[1:]) == (
        "/up?file=n.mp3&recording_id=r1")
    assert KazooURL("http://h/up?file").kazoo4("n.mp3", fields[1:]) == (
        "/up?file=n.mp3&recording_id=r1")
    assert KazooURL("http://h/up?t=1").freeswitch("n.mp3") is None
    # httpc sends the userinfo as written, and none at all when the password holds ':'.
    assert KazooURL("http://u:p%21@h/").httpc_userinfo == "u:p%21"
    assert KazooURL("http://u:p%21@h/").curl_userinfo == "u:p!"
    assert KazooURL("http://u:a:b@h/").httpc_userinfo is None
    with pytest.raises(ValueError):
        KazooURL("ftp://h/")


# -- the bytes on the wire ------------------------------------------------------------------


class Recorder:
    """A socket server that records each request's head and body, and answers ``201``.

    Like a naive receiver it answers ``201`` to everything (so a retry is "created"
    twice) and honours ``Expect: 100-continue``.
    """

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[tuple[bytes, bytes]] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                    if name.lower() == b"expect":
                        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                try:
                    while len(body) < length:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        body += chunk
                except OSError:
                    pass
                self.requests.append((head, body))
                conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.close()


def test_requests_are_shaped_like_kazoo(recorder: Recorder) -> None:
    steps = run_check(f"http://kazoo:s3cret@127.0.0.1:{recorder.port}/kzr", timeout=5)
    heads = [head.decode("latin-1") for head, _ in recorder.requests]
    httpc = heads[0].split("\r\n")
    assert httpc[0].startswith("PUT /kzr/call_recording_kzr-check-")
    assert "&recording_id=" in httpc[0] and "?from=1000%40kzr-check.invalid&" in httpc[0]
    assert httpc[1:] == [
        "authorization: Basic a2F6b286czNjcmV0",
        "content-type: audio/mpeg",
        f"content-length: {len(recorder.requests[0][1])}",
        "te: ",
        f"host: 127.0.0.1:{recorder.port}",
        "connection: keep-alive",
    ]
    body = recorder.requests[0][1]
    assert mutagen.mp3.MP3(io.BytesIO(body)).info.sample_rate == 16000
    assert recorder.requests[1] == recorder.requests[0]  # the retry: the very same bytes
    curl = next(h for h in heads if "Expect: 100-continue" in h).split("\r\n")
    # 3.x: the name unencoded, '@' and all, no query.
    assert curl[0].startswith("PUT /kzr/call_recording_kzr-check-")
    assert curl[0].endswith("@kzr-check.invalid.mp3 HTTP/1.1")
    assert "User-Agent: freeswitch-http-cache/1.0" in curl
    assert "Authorization: Basic a2F6b286czNjcmV0" in curl
    cut = recorder.requests[-2]  # before step 7's upload without credentials
    announced = int(next(line for line in cut[0].split(b"\r\n")
                         if line.startswith(b"content-length:")).split(b":")[1])
    assert len(cut[1]) == announced // 2
    assert b"authorization" not in recorder.requests[-1][0]
    by_name = {s.name: s for s in steps}
    # It answers 201 to everything: a retry "created" again, a cut-short body taken.
    assert by_name["kazoo-4x"].status == FAIL and "201 Created again" in (
        by_name["kazoo-4x"].hint or "")
    assert by_name["cut-short"].status == FAIL
    assert by_name["credentials"].status == FAIL


# -- real receivers ---------------------------------------------------------------------------


def _statuses(steps: list[Step]) -> dict[str, str]:
    return {s.name: s.status for s in steps}


@pytest.mark.slow
@pytest.mark.parametrize("auth", [False, True], ids=["open", "basic-auth"])
@pytest.mark.parametrize("read_back", [False, True], ids=["no-read-back", "read-back"])
def test_passes_against_kzr_wsgi(tmp_path: Path, auth: bool, read_back: bool) -> None:
    args = [*(["--basic-auth", "kazoo:s3cret-1"] if auth else []),
            *(["--read-back"] if read_back else [])]
    root = tmp_path / "recordings"
    with serve(tmp_path, *args, "--workers", "1", root=root) as server:
        userinfo = "kazoo:s3cret-1@" if auth else ""
        steps = run_check(f"http://{userinfo}127.0.0.1:{server.port}/", read_back=read_back,
                          timeout=10)
    assert _statuses(steps) == {
        "url": WARN,  # loopback: Kazoo would not upload here
        "kazoo-4x": PASS,
        "freeswitch-3x": PASS,
        "two-recordings": PASS,
        "cut-short": PASS,
        "read-back": PASS if read_back else SKIP,
        "credentials": PASS if auth else SKIP,
    }, [s.line() for s in steps]
    assert steps[2].hint is None  # gunicorn answered 100 Continue
    # Stored like any upload, and marked as the self-test they are.
    sidecars = [json.loads(p.read_text()) for p in root.rglob("*.kzr.json")]
    assert len(sidecars) == 4  # 4.x (once, despite the retry), 3.x, two recordings
    assert all(s["self_test"] and s["call_id"].startswith("kzr-check-") for s in sidecars)
    # Real audio, as the receiver's own inspection sees it: nothing flagged.
    for sidecar in sidecars:
        audio = sidecar["audio"]
        assert (audio["format"], audio["sample_rate"], audio["channels"]) == ("mp3", 16000, 2)
        assert audio["flags"] == [] and audio["duration_ms"] > 1000
    # Hidden from `ls` unless asked for.
    def ls(*args: str) -> list[str]:
        out = subprocess.run([sys.executable, "-m", "kzr_wsgi", "ls", "--json", "--root",
                              str(root), *args], capture_output=True, text=True, timeout=60,
                             check=True).stdout
        return [json.loads(line)["call_id"] for line in out.splitlines()]

    assert ls() == []
    assert sorted(ls("--self-test")) == sorted(s["call_id"] for s in sidecars)


@pytest.mark.slow
def test_fails_when_credentials_are_not_needed_or_wrong(tmp_path: Path) -> None:
    with serve(tmp_path, "--workers", "1", "--metrics") as server:
        steps = run_check(f"http://kazoo:s3cret@127.0.0.1:{server.port}/", timeout=10)
        status, text = _get(server.port, "/metrics")
    by_name = {s.name: s for s in steps}
    assert by_name["credentials"].status == FAIL
    assert "does not check them" in (by_name["credentials"].hint or "")
    assert "--basic-auth" in (by_name["credentials"].hint or "")
    assert [s.name for s in steps if s.status == FAIL] == ["credentials"]
    # Counted as self-tests, never as stored recordings.
    assert status == 200
    assert 'kzr_uploads_total{kind="call",outcome="stored"} 0.0' in text
    assert 'kzr_selftest_uploads_total{outcome="stored"} 4.0' in text

    with serve(tmp_path, "--workers", "1", "--basic-auth", "kazoo:right") as server:
        steps = run_check(f"http://kazoo:wrong@127.0.0.1:{server.port}/", timeout=10)
    by_name = {s.name: s for s in steps}
    assert by_name["kazoo-4x"].status == FAIL
    assert "401" in (by_name["kazoo-4x"].hint or "")
    assert "--basic-auth" in (by_name["kazoo-4x"].hint or "")
    # The first upload of step 4 was refused: the hint must not call it the second one.
    assert by_name["two-recordings"].status == FAIL
    assert (by_name["two-recordings"].hint or "").startswith(
        "the first of two recordings of one call was answered 401")


def _get(port: int, path: str) -> tuple[int, str]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        return reply.status, reply.read().decode()
    finally:
        conn.close()


@pytest.mark.slow
def test_fails_against_broken_receivers(tmp_path: Path) -> None:
    with wsgi_server("werkzeug", "check_receivers:broken", tmp_path, flavour="php") as php:
        url = f"http://127.0.0.1:{php.port}/"
        plain = {s.name: s for s in run_check(url, timeout=10)}
        full = {s.name: s for s in run_check(url, timeout=10, read_back=True)}
    assert plain["cut-short"].status == FAIL
    assert "cut short" in (plain["cut-short"].hint or "")
    assert "Content-Length" in (plain["cut-short"].hint or "")
    assert [n for n, s in plain.items() if s.status == FAIL] == ["cut-short"]
    assert full["two-recordings"].status == FAIL
    assert "overwrites" in (full["two-recordings"].hint or "")
    assert full["cut-short"].status == FAIL

    with wsgi_server("werkzeug", "check_receivers:broken", tmp_path, flavour="overwrite") as srv:
        steps = run_check(f"http://127.0.0.1:{srv.port}/", timeout=10, read_back=True)
    assert [s.name for s in steps if s.status == FAIL] == ["two-recordings"]

    with wsgi_server("werkzeug", "check_receivers:broken", tmp_path, flavour="blackhole") as srv:
        steps = run_check(f"http://127.0.0.1:{srv.port}/", timeout=10, read_back=True)
    by_name = {s.name: s for s in steps}
    assert by_name["read-back"].status == FAIL
    assert "without keeping the file" in (by_name["read-back"].hint or "")
    assert by_name["kazoo-4x"].status == FAIL  # 201 to a retry: it cannot tell


@pytest.mark.slow
def test_command_line_json_and_exit_status(tmp_path: Path) -> None:
    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kzr_wsgi", "check", *args],
                              capture_output=True, text=True, timeout=60, check=False)

    with serve(tmp_path, "--workers", "1", "--read-back") as server:
        url = f"http://127.0.0.1:{server.port}/"
        as_json = check(url, "--json", "--read-back", "--timeout", "10")
        text = check(url)
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    steps = json.loads(as_json.stdout)
    assert [s["step"] for s in steps] == list(range(1, 8))
    assert all(set(s) == {"step", "name", "status", "hint"} for s in steps)
    assert [s["status"] for s in steps] == [WARN, PASS, PASS, PASS, PASS, PASS, SKIP]
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert len(lines) == 7 and lines[0].startswith("WARN  1  url: 127.0.0.1")
    assert lines[5].startswith("SKIP  6  read-back")

    with wsgi_server("werkzeug", "check_receivers:broken", tmp_path, flavour="php") as php:
        failed = check(f"http://127.0.0.1:{php.port}/", "--timeout", "10")
    assert failed.returncode == 1
    assert any(line.startswith("FAIL  5  cut-short:") for line in failed.stdout.splitlines())
    refused = check(f"http://127.0.0.1:{_closed_port()}/", "--timeout", "5")
    assert refused.returncode == 1 and "FAIL  2  kazoo-4x: connection refused" in refused.stdout
    assert check("ftp://x/").returncode == 2


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
