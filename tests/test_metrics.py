"""Prometheus metrics: counted in the middleware, scraped at /metrics, right across workers.

In-process tests drive the middleware with werkzeug's test client (one process, no
multiprocess mode); the slow ones run ``kzr-wsgi serve --workers 2 --metrics`` and
scrape it with prometheus_client's own parser.
"""

from __future__ import annotations

import gc
import http.server
import json
import os
import re
import signal
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kazoo import httpc_put, put_cut_short, send_raw
from prometheus_client.parser import text_string_to_metric_families
from servers import serve
from werkzeug.middleware.lint import LintMiddleware
from werkzeug.test import Client

from kzr_wsgi import DirectoryStore, Guard, KazooRecordings, Recording, WebhookNotifier, errors
from kzr_wsgi.audio import FLAGS, AudioInfo
from kzr_wsgi.metrics import (
    SECONDS_BUCKETS,
    UPLOAD_OUTCOMES,
    Metrics,
    MetricsApp,
    MultiprocessDir,
    UploadOutcome,
    store_error_label,
)
from kzr_wsgi.selftest.wire import silent_mp3

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, keyed by name and labels."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


LOCAL = {"REMOTE_ADDR": "127.0.0.1"}


def scrape(client: Client) -> Samples:
    """Scrape the in-process mount from loopback."""
    reply = client.get("/metrics", environ_base=LOCAL)
    assert reply.status_code == 200, reply.get_data(as_text=True)
    return parse(reply.get_data(as_text=True))


def host_app(environ: dict[str, object], start_response: object) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
    return [b"host app\n"]


def mp3_url(call_id: str, recording_id: str = "r1") -> str:
    return f"/call_recording_{call_id}.mp3?call_id={call_id}&recording_id={recording_id}"


# -- in process -------------------------------------------------------------------------


def test_counts_every_upload_outcome_and_read(tmp_path: Path) -> None:
    metrics = Metrics()
    store = DirectoryStore(tmp_path)
    body = silent_mp3(10)
    client = Client(KazooRecordings(host_app, store, metrics=metrics, read_back=True,
                                    max_size=len(body) + 10))
    assert client.put(mp3_url("a"), data=body).status_code == 201
    assert client.put(mp3_url("a"), data=body).status_code == 200  # a retry
    assert client.put(mp3_url("b"), data=body + b"x").status_code == 201
    assert client.put(mp3_url("c"), data=body * 2).status_code == 413
    assert client.put(mp3_url("kzr-check-1"), data=body).status_code == 201
    assert client.get(mp3_url("a")).status_code == 200
    assert client.get(mp3_url("missing")).status_code == 404
    assert client.get("/elsewhere").status_code == 200  # the host app's: not counted

    samples = scrape(client)
    assert value(samples, "kzr_uploads_total", kind="call", outcome="stored") == 2
    assert value(samples, "kzr_uploads_total", kind="call", outcome="duplicate") == 1
    assert value(samples, "kzr_uploads_total", kind="call", outcome="refused") == 1
    assert value(samples, "kzr_uploads_total", kind="call", outcome="failed") == 0
    # The self-test upload is counted apart, never as "stored".
    assert value(samples, "kzr_selftest_uploads_total", outcome="stored") == 1
    assert value(samples, "kzr_upload_bytes_total", kind="call") == 2 * len(body) + 1
    assert value(samples, "kzr_upload_seconds_count", kind="call") == 2
    assert value(samples, "kzr_reads_total", outcome="ok") == 1
    assert value(samples, "kzr_reads_total", outcome="not_found") == 1
    # Label values are created at zero, so an alert has a series from the start.
    for flag in FLAGS:
        assert value(samples, "kzr_audio_flags_total", flag=flag) == 0
    for kind in ("caller", "attachment"):
        assert value(samples, "kzr_uploads_total", kind=kind, outcome="stored") == 0
    assert value(samples, "kzr_catalog_errors_total") == 0
    buckets = {float(dict(labels)["le"]) for (name, labels) in samples
               if name == "kzr_upload_seconds_bucket"}
    assert min(buckets) == 0.05 and max(b for b in buckets if b != float("inf")) == 3600
    assert len(SECONDS_BUCKETS) == len(buckets) - 1


def test_uploads_refused_before_their_kind_is_known_count_as_unknown(tmp_path: Path) -> None:
    metrics = Metrics()
    client = Client(KazooRecordings(host_app, DirectoryStore(tmp_path), prefix="/kzr",
                                    max_name_bytes=64, metrics=metrics))
    for outcome in UPLOAD_OUTCOMES:  # present from the start, as every other series
        assert value(scrape(client), "kzr_uploads_total", kind="unknown", outcome=outcome) == 0
    assert client.put("/kzr/call_recording_a.exe", data=b"x").status_code == 400
    assert client.post(f"/kzr/call_recording_{'b' * 80}.mp3", data=b"x").status_code == 400
    # A read of such a name is no upload; outside the prefix the host app answers.
    assert client.get("/kzr/call_recording_a.exe").status_code == 400
    assert client.put("/other/call_recording_a.exe", data=b"x").status_code == 200
    samples = scrape(client)
    assert value(samples, "kzr_uploads_total", kind="unknown", outcome="refused") == 2
    assert sum(value(samples, "kzr_uploads_total", kind=kind, outcome=outcome)
               for kind in ("call", "caller", "attachment", "unknown")
               for outcome in UPLOAD_OUTCOMES) == 2
    assert value(samples, "kzr_reads_total", outcome="refused") == 0
    # Never stored, so no bytes or times are kept for it.
    assert ("kzr_upload_bytes_total", frozenset({("kind", "unknown")})) not in samples


def test_upload_outcomes_are_their_label_text() -> None:
    assert UPLOAD_OUTCOMES == ("stored", "duplicate", "refused", "failed", "erased")
    assert [f"{o}" for o in UploadOutcome] == list(UPLOAD_OUTCOMES)
    with pytest.raises(ValueError, match="unknown upload outcome"):
        Metrics().upload("call", "lost")


def test_the_metrics_app_answers_scrapes_in_front_of_any_app() -> None:
    metrics = Metrics()
    app = MetricsApp(host_app, metrics)
    client = Client(LintMiddleware(app))

    def ask(method: str, path: str, **kwargs: object) -> tuple[int, dict[str, str], bytes]:
        with client.open(path, method=method, **kwargs) as reply:  # type: ignore[arg-type]
            return reply.status_code, dict(reply.headers), reply.get_data()

    status, headers, page = ask("GET", "/metrics", environ_base=LOCAL)
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert b"kzr_uploads_total" in page
    assert ask("GET", "/metrics")[0] == 403
    assert ask("POST", "/metrics", data=b"x")[1]["Allow"] == "GET, HEAD"
    # Every other request is the app's, the very same environ and start_response.
    assert ask("GET", "/metrics/more", environ_base=LOCAL)[2] == b"host app\n"
    assert ask("PUT", "/call_recording_a.mp3", data=b"x")[2] == b"host app\n"
    with pytest.raises(ValueError, match="already answers scrapes"):
        MetricsApp(app, metrics)


def test_the_middleware_can_count_and_leave_scrapes_to_an_app_in_front(tmp_path: Path) -> None:
    metrics = Metrics()
    middleware = KazooRecordings(host_app, DirectoryStore(tmp_path), metrics=metrics,
                                 answer_scrapes=False)
    # Alone it does not answer the path: the request is the host app's.
    assert Client(middleware).get("/metrics", environ_base=LOCAL).get_data() == b"host app\n"
    client = Client(MetricsApp(middleware, metrics))
    assert client.put(mp3_url("a"), data=b"x").status_code == 201
    assert value(scrape(client), "kzr_uploads_total", kind="call", outcome="stored") == 1


def test_a_mount_that_answers_scrapes_is_freed_with_its_last_reference(tmp_path: Path) -> None:
    # No reference cycle: a store's housekeeping ends with the store, not at some later
    # garbage collection (while other code runs and reads its logs).
    metrics = Metrics()
    gc.disable()
    try:
        store = DirectoryStore(tmp_path)
        mount = KazooRecordings(host_app, store, metrics=metrics)
        assert Client(mount).get("/metrics", environ_base=LOCAL).status_code == 200
        gone = weakref.ref(store)
        del mount, store
        assert gone() is None
    finally:
        gc.enable()


class _Failing:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def __call__(self, recording: Recording) -> None:
        recording.stream.read()
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "status", "label"),
    [
        (errors.StorageFull("full"), 507, "disk_full"),
        (errors.StoreUnavailable("down"), 503, "store_unavailable"),
        (RuntimeError("bug"), 500, "other"),
    ],
    ids=["disk-full", "store-unavailable", "other"],
)
def test_store_failures_are_failed_uploads_with_their_error(
    exc: Exception, status: int, label: str
) -> None:
    metrics = Metrics()
    client = Client(KazooRecordings(host_app, _Failing(exc), metrics=metrics))
    assert client.put(mp3_url("x"), data=b"data").status_code == status
    samples = scrape(client)
    assert value(samples, "kzr_uploads_total", kind="call", outcome="failed") == 1
    assert value(samples, "kzr_store_errors_total", error=label) == 1
    assert sum(value(samples, "kzr_store_errors_total", error=e)
               for e in ("disk_full", "store_unavailable", "other")) == 1
    assert store_error_label(exc) == label


def test_audio_flags_once_per_stored_recording(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    flags = {"a": ("empty",), "b": ("truncated", "shorter_than_reported"), "c": ()}

    def flagging(recording: Recording) -> object:
        # Stands for the inspection, which sets recording.audio before the reply.
        result = store(recording)
        recording.audio = AudioInfo("mp3", flags=flags[recording.call_id or ""])
        return result

    metrics = Metrics()
    client = Client(KazooRecordings(host_app, flagging, metrics=metrics))  # type: ignore[arg-type]
    for call_id in flags:
        assert client.put(mp3_url(call_id), data=call_id.encode()).status_code == 201
    assert client.put(mp3_url("b"), data=b"b").status_code == 200  # a retry: not again
    samples = scrape(client)
    assert value(samples, "kzr_audio_flags_total", flag="empty") == 1
    assert value(samples, "kzr_audio_flags_total", flag="truncated") == 1
    assert value(samples, "kzr_audio_flags_total", flag="shorter_than_reported") == 1
    assert value(samples, "kzr_audio_flags_total", flag="silent") == 0


def _break_catalog(root: Path) -> None:
    """Drop the catalog's table under a running store: a real SQLite error on the next write."""
    with sqlite3.connect(root / ".kzr" / "catalog.sqlite3") as db:
        tables = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        for table in tables:
            db.execute(f'DROP TABLE "{table}"')


def test_catalog_write_failures_are_counted(tmp_path: Path) -> None:
    metrics = Metrics()
    # No upkeep thread: its passes would retry the lost row's marker every few seconds
    # (as they should), counting more failures here and logging them into later tests.
    store = DirectoryStore(tmp_path, upkeep_every=None)
    client = Client(KazooRecordings(host_app, store, metrics=metrics))
    assert client.put(mp3_url("ok"), data=b"1").status_code == 201
    assert value(scrape(client), "kzr_catalog_errors_total") == 0
    _break_catalog(tmp_path)
    # The upload still succeeds: the sidecar is the truth, reindex repairs the catalog.
    assert client.put(mp3_url("lost-row"), data=b"2").status_code == 201
    samples = scrape(client)
    assert value(samples, "kzr_catalog_errors_total") == 1
    assert value(samples, "kzr_uploads_total", kind="call", outcome="stored") == 2


def test_scrape_access_is_by_address_not_upload_credentials(tmp_path: Path) -> None:
    guard = Guard(basic=["kazoo:s3cret"], trusted_proxies=["10.9.0.0/16"])
    metrics = Metrics(allow=["127.0.0.1", "192.0.2.0/24"], trusted_proxies=["10.9.0.0/16"])
    client = Client(KazooRecordings(host_app, DirectoryStore(tmp_path), guard=guard,
                                    metrics=metrics))
    # No credentials needed (they would be refused with 401 on an upload URL).
    assert client.get("/metrics", environ_base=LOCAL).status_code == 200
    assert client.get("/metrics").status_code == 403  # no address at all: not allowed
    assert client.put(mp3_url("x"), data=b"x").status_code == 401
    outside = client.get("/metrics", environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert outside.status_code == 403
    via_proxy = {"REMOTE_ADDR": "10.9.0.1"}
    assert client.get("/metrics", environ_base=via_proxy,
                      headers={"X-Forwarded-For": "192.0.2.55"}).status_code == 200
    assert client.get("/metrics", environ_base=via_proxy,
                      headers={"X-Forwarded-For": "203.0.113.1"}).status_code == 403
    # X-Forwarded-For from an untrusted client proves nothing.
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "198.51.100.7"},
                      headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 403
    samples = scrape(client)
    assert value(samples, "kzr_uploads_total", kind="call", outcome="refused") == 1


def test_metrics_path_is_never_an_upload(tmp_path: Path) -> None:
    metrics = Metrics()
    app = KazooRecordings(host_app, DirectoryStore(tmp_path), prefix="/",
                          attachments_prefix="/", metrics=metrics)
    client = Client(app)
    reply = client.put("/metrics", data=b"not a recording")
    assert reply.status_code == 405 and reply.headers["Allow"] == "GET, HEAD"
    assert client.head("/metrics", environ_base=LOCAL).status_code == 200
    assert not list(tmp_path.rglob("*.kzr.json"))
    # Without metrics= the same path is whatever the mount makes of it (here an attachment).
    plain = Client(KazooRecordings(host_app, DirectoryStore(tmp_path), attachments_prefix="/"))
    assert plain.put("/metrics", data=b"x").status_code == 201


def test_openmetrics_when_asked(tmp_path: Path) -> None:
    client = Client(KazooRecordings(host_app, DirectoryStore(tmp_path),
                                    metrics=Metrics()))
    reply = client.get("/metrics", headers={"Accept": "application/openmetrics-text"},
                       environ_base=LOCAL)
    assert reply.headers["Content-Type"].startswith("application/openmetrics-text")
    assert reply.get_data(as_text=True).rstrip().endswith("# EOF")


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[int]]]:
    """A local webhook answering the statuses queued in the returned list (then 200)."""
    answers: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(answers.pop(0) if answers else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", answers
    finally:
        server.shutdown()
        server.server_close()


def test_notification_outcomes(tmp_path: Path, webhook: tuple[str, list[int]]) -> None:
    url, answers = webhook
    answers += [503, 200, 400]  # first: retried then delivered; second: given up
    notifier = WebhookNotifier(url, backoff=0.01, retries=2)
    metrics = Metrics()
    client = Client(KazooRecordings(host_app, DirectoryStore(tmp_path), metrics=metrics,
                                    on_stored=[notifier]))
    assert client.put(mp3_url("n1"), data=b"1").status_code == 201
    assert client.put(mp3_url("n2"), data=b"2").status_code == 201
    assert client.put(mp3_url("kzr-check-n"), data=b"3").status_code == 201  # never sent
    assert notifier.close(10)
    samples = scrape(client)
    assert value(samples, "kzr_notifications_total", outcome="delivered") == 1
    assert value(samples, "kzr_notifications_total", outcome="retried") == 1
    assert value(samples, "kzr_notifications_total", outcome="given_up") == 1


def test_multiprocess_dir_is_private_and_removed_by_its_owner_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    first = MultiprocessDir.create()
    second = MultiprocessDir.create()
    try:
        assert first.path != second.path and first.path.is_dir()
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(second.path)
        pid = os.fork()
        if pid == 0:  # a forked worker unwinding through the same code
            first.remove()
            os._exit(0)
        os.waitpid(pid, 0)
        assert first.path.is_dir()
    finally:
        first.remove()
        second.remove()
    assert not first.path.exists() and not second.path.exists()
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    with pytest.raises(ValueError, match="under the store"):
        MultiprocessDir.create(avoid=tmp_path)
    assert list(tmp_path.iterdir()) == []


# -- kzr-wsgi serve --workers 2 --metrics -------------------------------------------------


def _scrape(host: str, port: int, headers: list[tuple[str, str]] | None = None) -> tuple[
        int, str]:
    head = (f"GET /metrics HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers or []) + "\r\n").encode()
    reply = send_raw(host, port, head, method="GET")
    return reply.status, reply.body.decode()


def _sidecar_flags(root: Path) -> dict[str, int]:
    counts = dict.fromkeys(FLAGS, 0)
    for sidecar in root.rglob("*.kzr.json"):
        record = json.loads(sidecar.read_text())
        if record.get("self_test"):
            continue
        for flag in (record.get("audio") or {}).get("flags", []):
            counts[flag] += 1
    return counts


@pytest.mark.slow
def test_serve_two_workers_counts_exactly(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    args = ["--workers", "2", "--threads", "4", "--metrics", "--read-back",
            "--trust-proxy", "127.0.0.1"]
    with serve(tmp_path, *args, root=root) as server:
        host, port = server.host, server.port
        found = re.search(r"worker files in (\S+)\)", server.log())
        assert found, server.log()
        files_dir = Path(found.group(1))
        assert files_dir.is_dir() and root not in files_dir.parents

        bodies = {f"m{i}": silent_mp3(5 + i) for i in range(40)}
        # Audio that the inspection flags (empty, not audio), when it is on.
        bodies["m-empty"] = b""
        bodies["m-html"] = b"<html><body>502 Bad Gateway</body></html>\n"

        def put(call_id: str) -> int:
            return httpc_put(host, port, mp3_url(call_id), bodies[call_id]).status

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(put, bodies))
        assert statuses == [201] * len(bodies)
        pids = set(re.findall(r"\[(\d+)\] INFO kzr_wsgi: upload", server.log()))
        assert len(pids) == 2, "uploads should spread over both workers"

        # Kill one worker: its counts must survive, and its replacement counts on.
        os.kill(int(sorted(pids)[0]), signal.SIGKILL)
        for call_id in ("m0", "m1", "m2"):  # three retries
            assert put(call_id) == 200
        for n in range(2):  # two bodies cut short
            reply = put_cut_short(host, port, mp3_url(f"cut{n}"), b"x" * 100, 1000)
            assert reply is None or reply.status == 400
        assert httpc_put(host, port, mp3_url("kzr-check-abc"), silent_mp3(3)).status == 201
        assert httpc_put(host, port, "/call_recording_x.exe", b"x").status == 400
        assert send_raw(host, port, f"GET {mp3_url('m5')} HTTP/1.1\r\nHost: x\r\n"
                        "Connection: close\r\n\r\n".encode(), method="GET").status == 200

        status, text = _scrape(host, port)
        assert status == 200
        samples = parse(text)
        stored = len(bodies)
        assert value(samples, "kzr_uploads_total", kind="call", outcome="stored") == stored
        assert value(samples, "kzr_uploads_total", kind="call", outcome="duplicate") == 3
        assert value(samples, "kzr_uploads_total", kind="call", outcome="refused") == 2
        assert value(samples, "kzr_uploads_total", kind="call", outcome="failed") == 0
        assert value(samples, "kzr_uploads_total", kind="unknown", outcome="refused") == 1
        assert value(samples, "kzr_selftest_uploads_total", outcome="stored") == 1
        assert value(samples, "kzr_upload_bytes_total", kind="call") == sum(
            len(b) for b in bodies.values())
        assert value(samples, "kzr_upload_seconds_count", kind="call") == stored
        assert value(samples, "kzr_reads_total", outcome="ok") == 1
        flags = _sidecar_flags(root)
        assert flags["empty"] == 1 and flags["not_audio"] == 1, flags  # m-empty, m-html
        for flag, count in flags.items():
            assert value(samples, "kzr_audio_flags_total", flag=flag) == count, flag

        _break_catalog(root)
        assert put("m3") == 200  # a retry writes no row
        bodies["m-norow"] = silent_mp3(4)
        assert put("m-norow") == 201
        samples = parse(_scrape(host, port)[1])
        assert value(samples, "kzr_catalog_errors_total") == 1
        assert value(samples, "kzr_uploads_total", kind="call", outcome="stored") == stored + 1
        stored += 1

        # From an address outside --metrics-allow (loopback): 403.
        status, _ = _scrape(host, port, [("X-Forwarded-For", "203.0.113.9")])
        assert status == 403
        status, _ = _scrape(host, port, [("X-Forwarded-For", "127.0.0.1")])
        assert status == 200

        # A second receiver on the same host keeps its own files and counts.
        with serve(tmp_path, "--workers", "1", "--metrics",
                   root=tmp_path / "other") as other:
            found_other = re.search(r"worker files in (\S+)\)", other.log())
            assert found_other and Path(found_other.group(1)) != files_dir
            assert httpc_put(other.host, other.port, mp3_url("o1"), b"o").status == 201
            other_samples = parse(_scrape(other.host, other.port)[1])
            assert value(other_samples, "kzr_uploads_total", kind="call",
                         outcome="stored") == 1
        assert value(parse(_scrape(host, port)[1]), "kzr_uploads_total", kind="call",
                     outcome="stored") == stored
        assert not Path(found_other.group(1)).exists()
    # Stopped: the directory is gone.
    deadline = time.monotonic() + 5
    while files_dir.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not files_dir.exists()


@pytest.mark.slow
def test_serve_metrics_allow_and_ipv6(tmp_path: Path) -> None:
    # Bound to ::1; only 127.0.0.1 may scrape, so the loopback ::1 client is refused.
    with serve(tmp_path, "--metrics", "--workers", "1", "--metrics-allow", "127.0.0.1",
               host="::1") as server:
        assert _scrape(server.host, server.port)[0] == 403
    with serve(tmp_path, "--metrics", "--workers", "1", "--metrics-allow", "::1/128",
               host="::1") as server:
        assert _scrape(server.host, server.port)[0] == 200


def test_metrics_allow_needs_metrics() -> None:
    from click.testing import CliRunner

    from kzr_wsgi.cli import main

    result = CliRunner().invoke(main, ["serve", "--metrics-allow", "10.0.0.0/8"])
    assert result.exit_code == 2 and "--metrics-allow needs --metrics" in result.output
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_flask_extension_serves_metrics(tmp_path: Path) -> None:
    from flask import Flask

    from kzr_wsgi.flask import KazooFlask

    app = Flask("t")
    app.config.update(KZR_ROOT=str(tmp_path), KZR_METRICS=True,
                      KZR_METRICS_ALLOW=["192.0.2.0/24"])

    @app.get("/hello")
    def hello() -> str:
        return "hi"

    KazooFlask(app)
    client = app.test_client()
    assert client.put(mp3_url("f1"), data=b"x").status_code == 201
    assert client.get("/hello").get_data(as_text=True) == "hi"
    assert client.get("/metrics").status_code == 403  # 127.0.0.1 is not in the list
    reply = client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.9"})
    samples = parse(reply.get_data(as_text=True))
    assert value(samples, "kzr_uploads_total", kind="call", outcome="stored") == 1
