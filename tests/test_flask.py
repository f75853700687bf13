"""The Flask extension, and the example that mounts it, driven over a real server."""

from __future__ import annotations

import http.client
import json
import sys
from pathlib import Path

import pytest
from flask import Flask
from servers import wsgi_server

from kzr_wsgi import DirectoryStore, KazooRecordings
from kzr_wsgi.flask import KazooFlask, recording_stored

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_init_app_pattern_and_config_keys(tmp_path: Path) -> None:
    ext = KazooFlask()
    app = Flask("t")
    app.config.update(KZR_ROOT=str(tmp_path), KZR_PREFIX="/rec", KZR_MAX_SIZE=1000)
    ext.init_app(app)
    state = app.extensions["kzr_wsgi"]
    assert isinstance(app.wsgi_app, KazooRecordings)
    assert isinstance(state.handler, DirectoryStore) and state.handler.root == tmp_path
    assert app.wsgi_app.router.prefix == ("rec",)
    assert app.wsgi_app.max_size == 1000
    with pytest.raises(RuntimeError):
        ext.init_app(app)


def test_needs_a_handler_or_root() -> None:
    with pytest.raises(RuntimeError, match="KZR_ROOT"):
        KazooFlask(Flask("t"))


def test_signal_sent_in_app_context_once_per_new_recording(tmp_path: Path) -> None:
    app = Flask("t")
    seen: list[tuple[str, bool, str]] = []

    def on_stored(sender: Flask, recording: object, result: object) -> None:
        from flask import current_app

        seen.append((recording.call_id, current_app._get_current_object() is sender,  # type: ignore[attr-defined]
                     result.sha256))  # type: ignore[attr-defined]

    recording_stored.connect(on_stored, app)
    KazooFlask(app, handler=DirectoryStore(tmp_path))
    client = app.test_client()
    for _ in range(3):
        assert client.put("/call_recording_c1.mp3", data=b"abc").status_code in (200, 201)
    assert client.put("/call_recording_c2.mp3", data=b"abcd").status_code == 201
    assert [s[0] for s in seen] == ["c1", "c2"]
    assert all(s[1] for s in seen)
    recording_stored.disconnect(on_stored, app)


def make_example(root: str) -> object:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import flask_app
    finally:
        sys.path.remove(str(EXAMPLES))
    return flask_app.create_app(root)


def test_example_app_over_gunicorn(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    body = bytes(range(256)) * 4000
    with wsgi_server("gunicorn", "test_flask:make_example", tmp_path, root=str(root)) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        conn.request("PUT", "/kazoo/call_recording_abc-123%40pbx.mp3?account_id=acc1",
                     body=body, headers={"Content-Type": "audio/mpeg"})
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (201, b"stored\n")
        conn.request("PUT", "/api/users/7", body=b"hello")
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read()) == {"id": 7, "body": "hello"}
        conn.request("GET", "/")
        resp = conn.getresponse()
        recent = json.loads(resp.read())["recent"]
    stored = [p for p in root.rglob("*.mp3")]
    assert len(stored) == 1 and stored[0].read_bytes() == body
    assert recent == [{"call_id": "abc-123@pbx", "location": str(stored[0])}]
