"""The receiver end to end: the middleware in-process, then real servers on loopback.

In-process tests run ``KazooRecordings`` inside werkzeug's ``LintMiddleware`` (and once
inside ``wsgiref.validate``). Integration tests upload in Kazoo's own shapes
(:mod:`kazoo`) to gunicorn, waitress and werkzeug's server running ``apps:recordings_app``
and to ``kzr-wsgi serve`` itself, and check what landed under the root: bytes, sha256,
sidecar, status codes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from wsgiref.validate import validator

import pytest
from kazoo import (
    curl_put,
    erlang_httpc_put,
    freeswitch_put,
    httpc_put,
    put_cut_short,
    request_head,
    send_raw,
)
from servers import SERVER_KINDS, serve, wsgi_server
from werkzeug.middleware.lint import LintMiddleware
from werkzeug.test import Client, EnvironBuilder, run_wsgi_app

import kzr_wsgi.middleware
from kzr_wsgi import DirectoryStore, KazooRecordings, Recording
from kzr_wsgi.naming import SIDECAR_SUFFIX, utcnow

#: The size limit every test server runs with: small, so 413 is cheap to reach.
MAX_SIZE = 1 << 20

pytestmark = [pytest.mark.filterwarnings("error::werkzeug.middleware.lint.WSGIWarning"),
              pytest.mark.filterwarnings("error::werkzeug.middleware.lint.HTTPWarning")]


def uid() -> str:
    return uuid.uuid4().hex[:12]


def stored(root: Path, call_id: str) -> list[tuple[Path, dict[str, Any]]]:
    """Every (data file, sidecar) under ``root`` whose sidecar names ``call_id``."""
    found = []
    for side in root.rglob("*" + SIDECAR_SUFFIX):
        if ".kzr" in side.relative_to(root).parts:
            continue
        meta: dict[str, Any] = json.loads(side.read_text())
        if meta["call_id"] == call_id:
            found.append((side.with_name(side.name[: -len(SIDECAR_SUFFIX)]), meta))
    return found


def one_stored(root: Path, call_id: str, body: bytes) -> dict[str, Any]:
    """The single copy of ``call_id``; checks its bytes, size and sha256 on disk."""
    copies = stored(root, call_id)
    assert len(copies) == 1, copies
    path, meta = copies[0]
    assert path.read_bytes() == body
    assert os.path.realpath(path).startswith(os.path.realpath(root) + os.sep)
    assert meta["size"] == len(body)
    assert meta["sha256"] == hashlib.sha256(body).hexdigest()
    return meta


def visible(root: Path) -> set[Path]:
    """Every file under ``root`` but the store's own ``.kzr`` state."""
    if not root.exists():
        return set()
    return {p for p in root.rglob("*") if p.is_file() and ".kzr" not in p.relative_to(root).parts}


def temporaries_gone(root: Path, wait: float = 5.0) -> bool:
    """True once the store's temporary directory is empty (a writer may be finishing)."""
    tmp = root / ".kzr" / "tmp"
    deadline = time.monotonic() + wait
    while any(tmp.iterdir()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def json_host(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = b'{"host": true}'
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


# =============================================================================================
# In-process: the middleware under LintMiddleware
# =============================================================================================


class CountingInput(io.BytesIO):
    """A wsgi.input that counts reads, so "nothing read" can be checked exactly."""

    reads = 0

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        return super().read(size)


class Probe:
    """Sits between lint and the middleware: remembers the exact objects handed in."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.environ: dict[str, Any] | None = None
        self.start_response: Any = None
        self.snapshot: dict[str, Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.environ, self.start_response = environ, start_response
        self.snapshot = dict(environ)
        result: Iterable[bytes] = self.app(environ, start_response)
        return result


class RecordingHost:
    """A host app that notes what it was given before it touches anything."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.stream: CountingInput | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        assert self.stream is not None
        self.calls.append({
            "environ": environ,
            "start_response": start_response,
            "items": dict(environ),
            "position": self.stream.tell(),
            "reads": self.stream.reads,
        })
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
        return [b"host"]


@pytest.mark.parametrize(
    "method, path, query",
    [
        ("PUT", "/api/users/7", ""),
        ("GET", "/static/song.mp3", ""),
        ("PUT", "/static/song.mp3", ""),
        ("PUT", "/call_recordings/x", ""),
        ("PUT", "/call_recording_x", ""),
        ("PUT", "/abc.mp3", ""),                        # bare caller name, not accepted
        ("PUT", "/other/call_recording_x.mp3", ""),     # outside the prefix
        ("POST", "/kzr", ""),
        ("PUT", "/kzr/upload", "from=a&to=b"),
        ("PUT", "/kzrx/call_recording_x.mp3", ""),
        ("PUT", "/kzr/api/notes", "title=call_recording_x.mp3&tag=work"),
    ],
)
def test_pass_through_same_objects_nothing_read(
    tmp_path: Path, method: str, path: str, query: str
) -> None:
    host = RecordingHost()
    probe = Probe(KazooRecordings(host, DirectoryStore(tmp_path / "r"), prefix="/kzr"))
    app = LintMiddleware(probe)
    env = EnvironBuilder(method=method, path=path, query_string=query,
                         data=b"host's own body").get_environ()
    env["RAW_URI"] = path + ("?" + query if query else "")
    host.stream = env["wsgi.input"] = CountingInput(b"host's own body")
    status, _body = call(app, env)
    assert status == "200 OK"
    [seen] = host.calls
    assert seen["environ"] is probe.environ
    assert seen["start_response"] is probe.start_response
    assert seen["items"] == probe.snapshot          # no key added, none changed
    assert (seen["position"], seen["reads"]) == (0, 0)
    assert not any(p.is_file() for p in (tmp_path / "r").rglob("*") if ".kzr" not in p.parts)


class BufferedClient(Client):
    """werkzeug's test client, reading and closing every response (lint checks close())."""

    def open(self, *args: Any, buffered: bool = True, **kwargs: Any) -> Any:
        return super().open(*args, buffered=buffered, **kwargs)


def call(app: Any, env: dict[str, Any]) -> tuple[str, bytes]:
    """Run ``app`` on a hand-made environ; return status and body, iterator closed."""
    app_iter, status, _headers = run_wsgi_app(app, env)
    try:
        body = b"".join(app_iter)
    finally:
        app_iter.close()  # type: ignore[attr-defined]
    return status, body


def client(tmp_path: Path, handler: Any = None, **options: Any) -> tuple[BufferedClient, Path]:
    root = tmp_path / "root"
    app = KazooRecordings(json_host, handler or DirectoryStore(root), **options)
    return BufferedClient(LintMiddleware(app)), root


def test_in_process_upload_retry_and_etag(tmp_path: Path) -> None:
    c, root = client(tmp_path)
    body = os.urandom(70_000)
    first = c.put("/call_recording_abc.mp3?recording_id=r1&owner_id=", data=body,
                  content_type="audio/mpeg")
    assert first.status_code == 201
    assert first.headers["ETag"] == f'"{hashlib.sha256(body).hexdigest()}"'
    again = c.put("/call_recording_abc.mp3?recording_id=r1&owner_id=", data=body)
    assert again.status_code == 200
    meta = one_stored(root, "abc", body)
    assert meta["metadata"]["fields"] == {"recording_id": "r1", "owner_id": None}


def test_in_process_under_wsgiref_validator(tmp_path: Path) -> None:
    root = tmp_path / "root"
    c = BufferedClient(validator(KazooRecordings(json_host, DirectoryStore(root))))
    assert c.put("/call_recording_v.wav", data=b"RIFF....").status_code == 201
    assert c.put("/call_recording_v.ogg", data=b"x").status_code == 400
    assert c.get("/elsewhere").status_code == 200
    one_stored(root, "v", b"RIFF....")


def test_retry_after_midnight_through_the_middleware(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c, root = client(tmp_path)
    assert c.put("/call_recording_late.mp3", data=b"audio").status_code == 201
    tomorrow = utcnow() + timedelta(days=1)
    monkeypatch.setattr(kzr_wsgi.middleware, "utcnow", lambda: tomorrow)
    assert c.put("/call_recording_late.mp3", data=b"audio").status_code == 200
    one_stored(root, "late", b"audio")


@pytest.mark.parametrize(
    "path, reason",
    [("/call_recording_x.exe", "extension"), ("/call_recording_x.MP3.php", "extension"),
     ("/call_recording_.mp3", "empty call id"), ("/up?recording=call_recording_.wav",
                                                 "empty call id")],
)
def test_in_process_400(tmp_path: Path, path: str, reason: str) -> None:
    c, root = client(tmp_path)
    r = c.put(path, data=b"x")
    assert r.status_code == 400
    assert reason in r.get_data(as_text=True)
    assert r.mimetype == "text/plain"
    assert visible(root) == set()


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE", "PATCH"])
def test_in_process_405_with_allow(tmp_path: Path, method: str) -> None:
    c, _root = client(tmp_path)
    with warnings.catch_warnings():
        # A HEAD reply keeps the Content-Length its GET would have; lint cannot know that.
        warnings.filterwarnings("ignore", "Content-Length and the number of bytes")
        r = c.open("/call_recording_x.mp3", method=method)
    assert r.status_code == 405
    assert sorted(h.strip() for h in r.headers["Allow"].split(",")) == ["POST", "PUT"]


def test_in_process_411_and_chunked(tmp_path: Path) -> None:
    c, root = client(tmp_path)
    env = EnvironBuilder(method="PUT", path="/call_recording_nolen.mp3").get_environ()
    env.pop("CONTENT_LENGTH", None)
    env["wsgi.input"] = io.BytesIO(b"audio")
    assert call(c.application, env)[0].startswith("411")
    env["HTTP_TRANSFER_ENCODING"] = "chunked"
    env["wsgi.input"] = io.BytesIO(b"dechunked audio")
    env["wsgi.input_terminated"] = True
    assert call(c.application, env)[0].startswith("201")
    one_stored(root, "nolen", b"dechunked audio")


def test_in_process_413_and_short_body_keep_nothing(tmp_path: Path) -> None:
    c, root = client(tmp_path, max_size=1000)
    r = c.put("/call_recording_big.mp3", data=b"x" * 1001)
    assert r.status_code == 413
    short = EnvironBuilder(method="PUT", path="/call_recording_short.mp3").get_environ()
    short["CONTENT_LENGTH"] = "500"
    short["wsgi.input"] = io.BytesIO(b"x" * 10)
    status, text = call(c.application, short)
    assert status.startswith("400") and b"10 of 500" in text
    assert stored(root, "big") == [] and stored(root, "short") == []
    assert temporaries_gone(root, wait=0)


def test_handler_failure_is_500_without_internals(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def failing(recording: Recording) -> None:
        recording.stream.read()
        raise RuntimeError("disk at /secret/place exploded")

    c, _root = client(tmp_path, handler=failing)
    r = c.put("/call_recording_x.mp3", data=b"audio")
    assert r.status_code == 500
    assert "secret" not in r.get_data(as_text=True)
    assert "disk at /secret/place exploded" in caplog.text


def test_handler_that_skips_the_body_gets_no_2xx(tmp_path: Path) -> None:
    # A 2xx must mean the whole body was kept: returning without reading it is a bug.
    c, _root = client(tmp_path, handler=lambda recording: None)
    assert c.put("/call_recording_x.mp3", data=b"audio").status_code == 500


def test_handler_sees_typed_recording(tmp_path: Path) -> None:
    seen: list[Recording] = []

    def handler(recording: Recording) -> None:
        recording.stream.read()
        seen.append(recording)

    c, _root = client(tmp_path, handler=handler, prefix="/kzr")
    r = c.put("/kzr/acc/usr/call_recording_a%2Fb.wav?start=63871234567&duration_ms=42&owner_id=",
              data=b"wav", content_type="audio/wav", environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert r.status_code == 201
    [rec] = seen
    assert (rec.call_id, rec.ext, rec.segments, rec.kind.value) == ("a/b", "wav",
                                                                    ("acc", "usr"), "call")
    assert rec.content_type == "audio/wav" and rec.content_length == 3
    assert rec.metadata.duration_ms == 42 and rec.metadata.owner_id is None
    assert rec.metadata.start is not None and rec.metadata.start.year == 2023
    assert rec.query == "start=63871234567&duration_ms=42&owner_id="
    assert rec.remote_addr == "192.0.2.9"


# =============================================================================================
# Real servers
# =============================================================================================


@dataclass
class Receiver:
    """A running receiver: which server, where it listens, where it stores."""

    kind: str
    host: str
    port: int
    root: Path
    #: ``kzr-wsgi serve`` owns its URL space and takes record_caller's bare names.
    accept_caller: bool

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@pytest.fixture(scope="module", params=[*SERVER_KINDS, "serve"])
def receiver(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    kind: str = request.param
    tmp = tmp_path_factory.mktemp(kind)
    root = tmp / "recordings" / "not-yet"
    if kind == "serve":
        server_cm = serve(tmp, "--max-size", "1M", root=root)
    else:
        server_cm = wsgi_server(kind, "apps:recordings_app", tmp, root=str(root),
                                max_size=MAX_SIZE)
    with server_cm as server:
        yield Receiver(kind, server.host, server.port, root, kind == "serve")
        # Nothing ever landed beside the root: only the root and the server's log.
        assert {p.name for p in tmp.iterdir()} <= {"recordings"} | {
            p.name for p in tmp.glob("*.log")}
        assert [p.name for p in (tmp / "recordings").iterdir()] == ["not-yet"]


QUERY_43 = ("from=1001%40acme.example&to=2002%40acme.example&caller_id_name=Ann%20B%C3%A9"
            "&caller_id_number=%2B15551234&call_id={cid}&cdr_id=&interaction_id=63871234567-ab"
            "&owner_id=&account_id=acc1&start=63871234567&duration_ms=61500&recording_id=r-{cid}"
            "&conference_recording=false&x_future=v%2Fw")
QUERY_40 = ("from=1001%40acme.example&to=2002%40acme.example&caller_id_name=Ann"
            "&caller_id_number=1001&call_id={cid}&cdr_id=c1&interaction_id=i1&account_id=acc1")

# (id, client, path-and-query template, expected segments)
FORMS = [
    ("3x-plain", "freeswitch", "/call_recording_{cid}.mp3", ()),
    ("3x-encoded", "freeswitch", "/call_recording_{cid}%40pbx.example.mp3", ()),
    ("4x-43-metadata", "httpc", "/call_recording_{cid}.mp3?" + QUERY_43, ()),
    ("4x-40-metadata", "httpc", "/call_recording_{cid}.mp3?" + QUERY_40, ()),
    ("4x-query-recording", "httpc",
     "/upload?token=s3cr3t&recording=call_recording_{cid}.mp3&" + QUERY_43, ("upload",)),
    ("4x-query-fills-a=", "httpc",
     "/upload?token=s3cr3t&file=call_recording_{cid}.mp3&" + QUERY_43, ("upload",)),
    ("4x-query-fills-a", "httpc",
     "/upload?file=call_recording_{cid}.mp3&" + QUERY_40, ("upload",)),
    ("per-user-segments", "httpc",
     "/4b8fe0c2a1/%7BUSER_ID%7D/call_recording_{cid}.mp3?" + QUERY_43, ("4b8fe0c2a1",
                                                                        "{USER_ID}")),
]


@pytest.mark.parametrize("client_kind, template, segments", [f[1:] for f in FORMS],
                         ids=[f[0] for f in FORMS])
def test_url_forms_land_byte_identical(
    receiver: Receiver, client_kind: str, template: str, segments: tuple[str, ...]
) -> None:
    cid = uid()
    target = template.format(cid=cid)
    body = os.urandom(150_000)
    if client_kind == "freeswitch":
        reply = freeswitch_put(receiver.host, receiver.port, target, body)
        assert reply.continued  # the server answered libcurl's Expect: no 1 s stall
    else:
        reply = httpc_put(receiver.host, receiver.port, target, body,
                          stray_content_type=True, userinfo="kazoo:secret")
    assert reply.status == 201, reply
    call_id = cid + "@pbx.example" if "%40pbx" in template else cid
    meta = one_stored(receiver.root, call_id, body)
    assert reply.headers["etag"] == f'"{meta["sha256"]}"'
    assert meta["kind"] == "call"
    assert meta["content_type"] == "audio/mpeg"
    assert tuple(meta["segments"]) == segments
    fields = meta["metadata"]["fields"]
    if "start=" in target:
        assert fields["from"] == "1001@acme.example"
        assert fields["caller_id_name"] == "Ann Bé"
        assert fields["owner_id"] is None and fields["cdr_id"] is None
        assert fields["x_future"] == "v/w"
        assert meta["recording_id"] == f"r-{cid}"
        assert meta["metadata"]["start_iso"] == "2023-12-31T09:36:07+00:00"
        assert meta["metadata"]["duration_ms"] == 61500
        # Filed by Kazoo's account and start, so a retry days later lands here too.
        assert meta["path"].startswith("call/acc1/2023/12/31/")
    elif "account_id=" in target:
        assert fields["account_id"] == "acc1" and meta["recording_id"] is None
    if "token=" in target:
        assert fields["token"] == "s3cr3t"


def test_post_and_wav_from_httpc(receiver: Receiver) -> None:
    cid = uid()
    body = b"RIFF" + os.urandom(4000)
    reply = httpc_put(receiver.host, receiver.port, f"/call_recording_{cid}.wav", body,
                      method="POST", content_type="audio/wav")
    assert reply.status == 201
    meta = one_stored(receiver.root, cid, body)
    assert (meta["ext"], meta["content_type"]) == ("wav", "audio/wav")


def test_erlang_httpc_upload(receiver: Receiver, tmp_path: Path) -> None:
    cid = uid()
    audio = tmp_path / "rec.mp3"
    body = os.urandom(400_000)
    audio.write_bytes(body)
    url = f"{receiver.url}/call_recording_{cid}.mp3?" + QUERY_43.format(cid=cid)
    assert erlang_httpc_put(url, audio) == 201
    meta = one_stored(receiver.root, cid, body)
    assert meta["recording_id"] == f"r-{cid}"
    # A retry by httpc is answered 2xx and keeps the one copy.
    assert erlang_httpc_put(url, audio) == 200
    one_stored(receiver.root, cid, body)


def test_record_caller_bare_name(receiver: Receiver) -> None:
    cid = uid()
    body = os.urandom(3000)
    reply = freeswitch_put(receiver.host, receiver.port, f"/acc1/{cid}.mp3", body)
    if receiver.accept_caller:
        assert reply.status == 201
        meta = one_stored(receiver.root, cid, body)
        assert (meta["kind"], meta["segments"], meta["filename"]) == ("caller", ["acc1"],
                                                                     f"{cid}.mp3")
    else:
        # A mount not told to take bare names leaves them to the host app.
        assert reply.status == 200 and json.loads(reply.body)["host"] is True
        assert stored(receiver.root, cid) == []


def test_curl_with_expect_100_continue(receiver: Receiver, tmp_path: Path) -> None:
    cid = uid()
    audio = tmp_path / "a.mp3"
    body = os.urandom(200_000)
    audio.write_bytes(body)
    result = curl_put(f"{receiver.url}/call_recording_{cid}.mp3", file=audio)
    assert "> Expect: 100-continue" in result.trace
    assert "< HTTP/1.1 100 Continue" in result.trace
    assert result.status == 201
    one_stored(receiver.root, cid, body)


def test_chunked_body(receiver: Receiver) -> None:
    cid = uid()
    body = os.urandom(300_000)
    result = curl_put(f"{receiver.url}/call_recording_{cid}.mp3", data=body)
    assert "> Transfer-Encoding: chunked" in result.trace
    assert result.status == 201, result
    one_stored(receiver.root, cid, body)


def test_body_cut_short_keeps_nothing(receiver: Receiver) -> None:
    cid = uid()
    before = visible(receiver.root)
    reply = put_cut_short(receiver.host, receiver.port, f"/call_recording_{cid}.mp3",
                          os.urandom(50_000), announced=120_000)
    # waitress never calls the app for a body it did not get whole: it just hangs up.
    assert reply is None or reply.status == 400, reply
    assert reply is not None or receiver.kind == "waitress"
    assert temporaries_gone(receiver.root)
    assert visible(receiver.root) == before
    assert not any(cid in p.name for p in receiver.root.rglob("*"))


def test_over_size_is_413_and_keeps_nothing(receiver: Receiver) -> None:
    cid = uid()
    before = visible(receiver.root)
    head = request_head("PUT", f"/call_recording_{cid}.mp3", [
        ("Host", "x"), ("Content-Length", str(MAX_SIZE + 1)), ("Connection", "close")])
    # Refused on the announced length alone, before any body byte, except under waitress,
    # which buffers a whole body (to its own limit, 1 GiB) before the app sees the request.
    body = b"x" * (MAX_SIZE + 1) if receiver.kind == "waitress" else b""
    assert send_raw(receiver.host, receiver.port, head, body).status == 413
    # Chunked: refused once the count passes the limit.
    result = curl_put(f"{receiver.url}/call_recording_{cid}.mp3", data=b"x" * (MAX_SIZE + 4096))
    assert result.status == 413, result
    assert temporaries_gone(receiver.root)
    assert visible(receiver.root) == before
    # At the limit exactly: fine.
    at_limit = os.urandom(MAX_SIZE)
    assert httpc_put(receiver.host, receiver.port, f"/call_recording_{cid}.mp3",
                     at_limit).status == 201
    one_stored(receiver.root, cid, at_limit)
    assert temporaries_gone(receiver.root)


def test_length_required(receiver: Receiver) -> None:
    cid = uid()
    before = visible(receiver.root)
    head = request_head("PUT", f"/call_recording_{cid}.mp3",
                        [("Host", "x"), ("Connection", "close")])
    assert send_raw(receiver.host, receiver.port, head).status == 411
    assert visible(receiver.root) == before


@pytest.mark.parametrize("name", ["call_recording_{cid}.exe", "call_recording_{cid}.mp3.php",
                                  "call_recording_.mp3"])
def test_bad_name_is_400(receiver: Receiver, name: str) -> None:
    cid = uid()
    before = visible(receiver.root)
    reply = httpc_put(receiver.host, receiver.port, "/" + name.format(cid=cid), b"audio")
    assert reply.status == 400
    assert reply.headers["content-type"].startswith("text/plain")
    assert visible(receiver.root) == before


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_other_method_is_405_with_allow(receiver: Receiver, method: str) -> None:
    head = request_head(method, "/call_recording_x.mp3", [("Host", "x"),
                                                           ("Connection", "close")])
    reply = send_raw(receiver.host, receiver.port, head, method=method)
    assert reply.status == 405
    assert sorted(m.strip() for m in reply.headers["allow"].split(",")) == ["POST", "PUT"]


@pytest.mark.parametrize(
    "method, target",
    [("PUT", "/api/users/7"), ("GET", "/static/song.mp3"), ("PUT", "/call_recordings/x"),
     ("POST", "/call_recording_x"), ("GET", "/?recording=x.mp3"),
     ("PUT", "/api/notes?title=call_recording_x.mp3&tag=work")],
)
def test_host_routes_pass_through(receiver: Receiver, method: str, target: str) -> None:
    body = b'{"name": "seven"}' if method != "GET" else b""
    headers = [("Host", "x"), ("Content-Length", str(len(body))), ("Connection", "close")]
    reply = send_raw(receiver.host, receiver.port, request_head(method, target, headers), body,
                     method)
    if receiver.kind == "serve":
        # serve owns its whole URL space: what is not a recording is 404, except a bare
        # <id>.mp3 it reads as record_caller's (only PUT/POST there).
        expected = 405 if target == "/static/song.mp3" else 404
        assert reply.status == expected
        return
    assert reply.status == 200
    seen = json.loads(reply.body)
    assert seen["host"] is True
    assert (seen["method"], seen["path"]) == (method, target.split("?")[0])
    assert seen["body_len"] == len(body)   # the body was still there for the host app
    assert seen["kzr_keys"] == []


def test_five_identical_uploads_one_copy(receiver: Receiver) -> None:
    cid = uid()
    body = os.urandom(80_000)
    target = f"/call_recording_{cid}.mp3?" + QUERY_43.format(cid=cid)
    statuses = [httpc_put(receiver.host, receiver.port, target, body).status for _ in range(5)]
    assert statuses == [201, 200, 200, 200, 200]  # all among FreeSWITCH's successes
    one_stored(receiver.root, cid, body)


def test_two_bodies_one_name_two_files(receiver: Receiver) -> None:
    cid = uid()
    first, second = os.urandom(9000), os.urandom(7000)
    for body in (first, second, first, second):
        assert freeswitch_put(receiver.host, receiver.port, f"/call_recording_{cid}.mp3",
                              body).status in (200, 201)
    copies = stored(receiver.root, cid)
    assert sorted(p.read_bytes() for p, _ in copies) == sorted([first, second])


def test_two_recording_ids_two_files(receiver: Receiver) -> None:
    cid = uid()
    bodies = {"r1": os.urandom(5000), "r2": os.urandom(6000)}
    for rid, body in bodies.items():
        target = f"/call_recording_{cid}.mp3?call_id={cid}&recording_id={rid}&start=63871234567"
        assert httpc_put(receiver.host, receiver.port, target, body).status == 201
    copies = stored(receiver.root, cid)
    assert {meta["recording_id"]: p.read_bytes() for p, meta in copies} == bodies


LONG_ASCII = 1000
# (on the wire after "call_recording_", the call id it stands for); {u} keeps them unique.
HOSTILE = [
    ("{u}/sub/dir", "{u}/sub/dir"),
    ("{u}/../../../../../../etc/passwd", "{u}/../../../../../../etc/passwd"),
    ("..%2F..%2F..%2F{u}", "../../../{u}"),
    ("{u}%2Fx%2F..%2F..", "{u}/x/../.."),
    ("{u}%252e%252e", "{u}%2e%2e"),
    ("{u}%252F", "{u}%2F"),
    ("{u}\\..\\..\\x", "{u}\\..\\..\\x"),
    ("{u}%5C%5C", "{u}\\\\"),
    ("{u}\"q'", "{u}\"q'"),
    ("{u}%22%27%60", "{u}\"'`"),
    ("{u}%C3%A9%E2%82%AC%F0%9F%93%9E", "{u}é€📞"),
    ("{u}" + "%C3%A9" * 900, "{u}" + "é" * 900),
    ("{u}%3F%23%20%25", "{u}?# %"),
    ("{u}(a)<b>:[c]{{d}}~!+", "{u}(a)<b>:[c]{{d}}~!+"),
    ("{u}" + "y" * (LONG_ASCII - 12), "{u}" + "y" * (LONG_ASCII - 12)),
]


@pytest.mark.parametrize("wire, call_id", HOSTILE, ids=[w[:20] for w, _ in HOSTILE])
def test_hostile_call_ids_stay_inside_root(receiver: Receiver, wire: str, call_id: str) -> None:
    u = uid()
    wire, call_id = wire.format(u=u), call_id.format(u=u)
    body = os.urandom(2000)
    reply = httpc_put(receiver.host, receiver.port, f"/call_recording_{wire}.mp3", body)
    assert reply.status == 201, reply
    meta = one_stored(receiver.root, call_id, body)
    assert meta["call_id"] == call_id
    assert meta["path"].startswith("call/unknown/")


def test_raw_utf8_call_id_never_5xx(receiver: Receiver) -> None:
    # 3.x does not encode the name: raw UTF-8 in the request line. gunicorn and waitress
    # refuse it with their own 400; werkzeug's development server takes it but hands it
    # on as mojibake (serving.py re-encodes its latin-1 request line as UTF-8), which no
    # app can undo. Either way: no 5xx, nothing outside the root.
    u = uid()
    target = f"/call_recording_{u}é.mp3".encode()
    reply = httpc_put(receiver.host, receiver.port, target, b"audio")
    assert reply.status == (201 if receiver.kind == "werkzeug" else 400)
    for path in receiver.root.rglob("*"):
        assert os.path.realpath(path).startswith(os.path.realpath(receiver.root))
