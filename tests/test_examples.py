"""Every example under examples/ is imported or run here, so none of them rots.

(examples/flask_app.py is run by test_flask.py.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import runpy
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from servers import free_port, get, request, spawn, wsgi_server
from werkzeug.test import Client

from kzr_wsgi.server import gunicorn_options

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: The moto server fixtures (``moto_endpoint``, ``s3_bucket``) for the S3 example.
pytest_plugins = ["s3server"]


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module of its own."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first, as an import would: Django finds its ROOT_URLCONF by this name.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def put(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    answer = request(port, "PUT", path, body)
    return answer.status, answer.body


def recordings_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".kzr.json")
            and ".kzr" not in p.relative_to(root).parts[:1]]


# -- Django ------------------------------------------------------------------------------


def make_django(root: str) -> Any:
    """Factory for wsgi_server: the Django example's ``application``, storing under root."""
    os.environ["KZR_ROOT"] = root
    return load_example("django_wsgi").application


def test_django_example_over_a_real_server(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    body = os.urandom(300_000)
    with wsgi_server("gunicorn", "test_examples:make_django", tmp_path, root=str(root)) as srv:
        assert put(srv.port, "/kazoo/call_recording_dj-1%40pbx.mp3?account_id=a1", body) == (
            201, b"stored\n")
        status, page = get(srv.port, "/")
        assert status == 200
        assert json.loads(page) == {"service": "django example", "path": "/"}
        assert get(srv.port, "/no-such-page")[0] == 404  # Django's own 404
    (stored,) = recordings_under(root)
    assert stored.read_bytes() == body and stored.name == "call_recording_dj-1%40pbx.mp3"


# -- gunicorn.conf.py --------------------------------------------------------------------


def test_gunicorn_conf_mirrors_serve_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KZR_BIND", "KZR_WORKERS", "KZR_THREADS", "KZR_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    conf = runpy.run_path(str(EXAMPLES / "gunicorn.conf.py"))
    expected = gunicorn_options("127.0.0.1", 8080)
    for key, value in expected.items():
        assert conf[key] == value, key


def test_gunicorn_conf_loaded_by_a_real_gunicorn(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    port = free_port()
    cmd = [sys.executable, "-m", "gunicorn", "-c", str(EXAMPLES / "gunicorn.conf.py"),
           "-b", f"127.0.0.1:{port}", "--workers", "1",
           f"apps:recordings_app(root={str(root)!r})"]
    with spawn(cmd, "127.0.0.1", port, tmp_path / "gunicorn.log") as srv:
        body = os.urandom(200_000)
        assert put(port, "/call_recording_g1.mp3", body) == (201, b"stored\n")
        assert put(port, "/call_recording_g1.mp3", body) == (200, b"already stored\n")
        log = srv.log()
    assert "Using worker: gthread" in log
    assert log.count("Booting worker") == 1  # gunicorn's lines once, not twice
    # The receiver's own log line (loglevel info, errorlog "-") comes through.
    assert "outcome=stored" in log
    (stored,) = recordings_under(root)
    assert stored.read_bytes() == body


# -- transcription hook ------------------------------------------------------------------


def test_transcription_hook_queues_and_the_worker_consumes(tmp_path: Path) -> None:
    hook = load_example("transcription_hook")
    queue_path = tmp_path / "jobs.db"
    client = Client(hook.make_app(tmp_path / "rec", queue_path))
    body = b"ID3" + os.urandom(40_000)
    url = "/call_recording_t1.mp3?recording_id=r1&duration_ms=9000"
    assert client.put(url, data=body).status_code == 201
    assert client.put(url, data=body).status_code == 200  # a retry queues nothing
    assert client.put("/call_recording_t2.mp3", data=b"ID3short").status_code == 201
    assert hook.RecordingQueue(queue_path).counts() == {"queued": 2}

    # The worker, as its own process, drains the queue and stops.
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "transcription_hook.py"), "work", "--queue",
         str(queue_path), "--once"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(EXAMPLES.parent)},
    )
    assert run.returncode == 0, run.stderr
    assert "transcribed 2 recording(s)" in run.stdout
    with sqlite3.connect(queue_path) as db:
        rows = db.execute("SELECT state, attempts, transcript, document FROM jobs "
                          "ORDER BY queued_at").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("done", 1), ("done", 1)]
    assert f"{len(body)} bytes of audio" in rows[0][2]
    assert json.loads(rows[0][3])["recording"]["metadata"]["duration_ms"] == 9000


def test_transcription_worker_retries_then_gives_up(tmp_path: Path) -> None:
    hook = load_example("transcription_hook")
    queue = hook.RecordingQueue(tmp_path / "jobs.db", max_attempts=2)
    client = Client(hook.make_app(tmp_path / "rec", tmp_path / "jobs.db"))
    assert client.put("/call_recording_bad.mp3", data=b"x").status_code == 201

    def broken(path: Path) -> str:
        raise RuntimeError("transcriber crashed (test)")

    assert hook.work(queue, broken, once=True) == 0
    assert queue.counts() == {"failed": 1}


# -- S3 ----------------------------------------------------------------------------------


def test_s3_example_imports_without_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    # Importing it must not need the s3 extra: boto3 is loaded only by create_app().
    probe = ("import sys, runpy; runpy.run_path(sys.argv[1]); print(sorted(m for m in "
             "sys.modules if m.startswith(('boto3', 'kzr_wsgi.stores.s3'))))")
    run = subprocess.run([sys.executable, "-c", probe, str(EXAMPLES / "s3_app.py")],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(EXAMPLES.parent)})
    assert (run.returncode, run.stdout.strip()) == (0, "[]"), run.stderr
    monkeypatch.delenv("KZR_S3_URL", raising=False)
    with pytest.raises(RuntimeError, match="KZR_S3_URL"):
        load_example("s3_app").create_app()


def test_s3_example_against_a_real_s3_api(
    s3_bucket: tuple[Any, str], moto_endpoint: str, tmp_path: Path,
) -> None:
    """``python examples/s3_app.py`` as its docstring says, against the moto server."""
    client, bucket = s3_bucket
    port = free_port()
    cmd = [sys.executable, str(EXAMPLES / "s3_app.py"), "--port", str(port)]
    # The s3_bucket fixture put dummy AWS credentials in os.environ; spawn passes them on.
    env = {"KZR_S3_URL": f"s3://{bucket}/example", "KZR_S3_ENDPOINT": moto_endpoint}
    body = os.urandom(300_000)
    url = "/call_recording_s3-1%40pbx.mp3?account_id=a1&recording_id=r1&start=63871234567"
    with spawn(cmd, "127.0.0.1", port, tmp_path / "s3_app.log", env) as srv:
        assert put(port, url, body) == (201, b"stored\n")
        assert put(port, url, body) == (200, b"already stored\n")  # a retry keeps one copy
        assert get(port, url) == (200, body)  # read_back: Kazoo 4.x plays it from here
        assert get(port, "/elsewhere")[0] == 404
        log = srv.log()
    keys = sorted(item["Key"] for item in client.list_objects_v2(Bucket=bucket)["Contents"])
    [data_key] = [k for k in keys if k.endswith(".mp3")]
    # The layout: kind, account, Kazoo's start date; the name encoded, made unique.
    assert data_key.startswith("example/call/a1/2023/12/31/call_recording_s3-1%40pbx~")
    assert f"outcome=stored location=s3://{bucket}/{data_key}" in log
    assert "outcome=duplicate" in log
    assert keys == sorted([data_key, data_key + ".kzr.json", *(
        k for k in keys if k.startswith("example/.kzr/index/"))]) and len(keys) == 3
    assert client.get_object(Bucket=bucket, Key=data_key)["Body"].read() == body
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
