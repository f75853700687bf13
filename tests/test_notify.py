"""The webhook notifier: the document, delivery with retries, and `serve --notify-url`.

A real webhook receiver (``http.server`` in a thread, on loopback) takes the POSTs.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from servers import free_port, serve

from kzr_wsgi.body import Body
from kzr_wsgi.metadata import parse_metadata
from kzr_wsgi.notify import NotificationOutcome, WebhookNotifier, notification
from kzr_wsgi.recording import Kind, Name, Recording, Stored

# -- a webhook receiver on loopback ------------------------------------------------------


@dataclass
class Hit:
    """One POST the receiver took."""

    at: float
    headers: dict[str, str]
    body: bytes
    pid_header: str | None = None

    @property
    def doc(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    """Records every POST; ``answer(n)`` (n = 0, 1, …) gives (status, seconds to sleep first)."""

    answer: Callable[[int], tuple[int, float]] = lambda n: (204, 0.0)
    hits: list[Hit] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    gate: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Hit]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.hits) >= count, timeout), (
                f"webhook got {len(self.hits)} of {count} notifications in {timeout}s")
            return list(self.hits)


@contextlib.contextmanager
def receiver(answer: Callable[[int], tuple[int, float]] | None = None,
             gated: bool = False) -> Iterator[Receiver]:
    rec = Receiver() if answer is None else Receiver(answer=answer)
    if not gated:
        rec.gate.set()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with rec.cond:
                n = len(rec.hits)
                rec.hits.append(Hit(time.monotonic(), dict(self.headers.items()), body))
                rec.cond.notify_all()
            rec.gate.wait(30)
            status, delay = rec.answer(n)
            time.sleep(delay)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False  # a sleeping handler must not hold up the test's end
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        rec.gate.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def make_recording(call_id: str = "c1@pbx", rid: str | None = "r1") -> Recording:
    pairs = [("account_id", "acc"), ("start", "63871234567"), ("duration_ms", "1500"),
             ("owner_id", "")]
    if rid:
        pairs.append(("recording_id", rid))
    return Recording(
        name=Name(Kind.CALL, ("seg",), f"call_recording_{call_id}.mp3"), call_id=call_id,
        ext="mp3", content_type="audio/mpeg", content_length=3,
        metadata=parse_metadata(pairs), query="account_id=acc", remote_addr="10.0.0.5",
        stream=Body(__import__("io").BytesIO(b"abc"), 3),
        received_at=datetime(2024, 1, 27, 10, 16, 7, tzinfo=timezone.utc),
    )


STORED = Stored("/srv/rec/call_recording_c1.mp3", 3, "ab" * 32, True, ("s3://b/k",))

# -- the document: pure ------------------------------------------------------------------


def notifier_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    """The notifier's own log records at ``level`` or above.

    caplog hears every logger of the process, and other tests' stores may still log from
    their threads (a catalog whose directory is gone): only the notifier's lines count.
    """
    return [r for r in caplog.records if r.name == "kzr_wsgi.notify" and r.levelno >= level]


def test_notification_document() -> None:
    doc = notification(make_recording(), STORED)
    assert json.loads(json.dumps(doc)) == doc  # JSON-ready as is
    assert doc["event"] == "recording.stored" and len(doc["id"]) == 32
    assert doc["recording"] == {
        "kind": "call", "call_id": "c1@pbx", "filename": "call_recording_c1@pbx.mp3",
        "segments": ["seg"], "ext": "mp3", "recording_id": "r1", "content_type": "audio/mpeg",
        "content_length": 3, "received_at": "2024-01-27T10:16:07+00:00",
        "remote_addr": "10.0.0.5", "metadata": make_recording().metadata.to_json(),
        "query": "account_id=acc", "document": None, "extras": {}, "audio": None,
        "self_test": False,
    }
    assert doc["recording"]["metadata"]["fields"]["owner_id"] is None
    assert doc["recording"]["metadata"]["duration_ms"] == 1500
    assert doc["result"] == {"location": STORED.location, "size": 3, "sha256": "ab" * 32,
                             "also": ["s3://b/k"]}
    # The same stored copy gives the same id (a repeat is recognisable); another, another.
    assert notification(make_recording(), STORED)["id"] == doc["id"]
    other = Stored("/srv/rec/other.mp3", 3, "ab" * 32)
    assert notification(make_recording(), other)["id"] != doc["id"]
    bare = notification(make_recording(rid=None), None)
    assert bare["result"] is None and bare["recording"]["recording_id"] is None


def test_rejects_urls_it_cannot_post_to() -> None:
    for url in ("ftp://x/y", "not a url", "http:///path"):
        with pytest.raises(ValueError):
            WebhookNotifier(url)
    with pytest.raises(ValueError):
        WebhookNotifier("http://x/", timeout=0)


# -- delivery ----------------------------------------------------------------------------


def test_delivers_json_with_headers_and_credentials_kept_out_of_logs() -> None:
    with receiver() as rec:
        notifier = WebhookNotifier(
            f"http://hook:s%40cret@127.0.0.1:{rec.port}/hook?x=1", headers={"X-Env": "test"})
        assert "s%40cret" not in repr(notifier) and "hook:" not in notifier.url
        notifier(make_recording(), STORED)
        (hit,) = rec.wait_for(1)
        assert notifier.close(5)
    assert hit.doc == notification(make_recording(), STORED)
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.headers["Idempotency-Key"] == hit.doc["id"]
    assert hit.headers["X-Env"] == "test"
    assert hit.headers["Authorization"] == "Basic aG9vazpzQGNyZXQ="  # hook:s@cret
    assert notifier.delivered == 1 and notifier.failed == 0


def test_retries_with_backoff_then_gives_up_with_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with receiver(lambda n: (503, 0.0)) as rec, caplog.at_level(logging.INFO, "kzr_wsgi.notify"):
        notifier = WebhookNotifier(rec.url, timeout=2, retries=3, backoff=0.1)
        notifier(make_recording(), STORED)
        hits = rec.wait_for(4)
        assert notifier.close(5)
    assert len(rec.hits) == 4  # the first attempt and 3 retries, no more
    gaps = [b.at - a.at for a, b in zip(hits, hits[1:], strict=False)]
    for i, gap in enumerate(gaps):  # 0.1, 0.2, 0.4 s: doubling
        assert gap >= 0.1 * 2**i * 0.9, gaps
    assert len({h.headers["Idempotency-Key"] for h in hits}) == 1
    errors = notifier_records(caplog, logging.ERROR)
    assert len(errors) == 1
    assert "gave up on notification" in errors[0].getMessage()
    assert "after 4 attempt(s)" in errors[0].getMessage()
    assert "HTTP 503" in errors[0].getMessage() and "c1@pbx" in errors[0].getMessage()
    assert notifier.failed == 1 and notifier.delivered == 0


def test_recovers_after_transient_errors(caplog: pytest.LogCaptureFixture) -> None:
    with receiver(lambda n: (503, 0.0) if n < 2 else (200, 0.0)) as rec, \
            caplog.at_level(logging.INFO, "kzr_wsgi.notify"):
        notifier = WebhookNotifier(rec.url, timeout=2, retries=5, backoff=0.02)
        notifier(make_recording(), STORED)
        rec.wait_for(3)
        assert notifier.close(5)
    assert len(rec.hits) == 3 and notifier.delivered == 1 and notifier.failed == 0
    assert notifier_records(caplog, logging.ERROR) == []


def test_listeners_are_told_each_outcome_as_its_text() -> None:
    told: list[NotificationOutcome] = []
    with receiver(lambda n: (503, 0.0) if n == 0 else (200, 0.0)) as rec:
        notifier = WebhookNotifier(rec.url, timeout=2, retries=2, backoff=0.01)
        notifier.add_listener(told.append)
        notifier(make_recording(), STORED)
        rec.wait_for(2)
        assert notifier.close(5)
    assert told == [NotificationOutcome.RETRIED, NotificationOutcome.DELIVERED]
    # The members are the strings listeners were told before: "retried", "delivered".
    assert told == ["retried", "delivered"] and [f"{o}" for o in told] == told
    assert [o.value for o in NotificationOutcome] == ["delivered", "retried", "given_up"]


def test_a_client_error_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    with receiver(lambda n: (404, 0.0)) as rec, caplog.at_level(logging.INFO, "kzr_wsgi.notify"):
        notifier = WebhookNotifier(rec.url, timeout=2, retries=5, backoff=0.01)
        notifier(make_recording(), STORED)
        rec.wait_for(1)
        assert notifier.close(5)
    assert len(rec.hits) == 1 and notifier.failed == 1
    assert any("after 1 attempt(s): HTTP 404" in r.getMessage() for r in caplog.records)


def test_a_late_answer_is_retried_and_repeats_the_same_id() -> None:
    # First answer comes after the notifier's timeout: it counts as failed, and the
    # webhook sees the notification twice, with the same id both times.
    with receiver(lambda n: (200, 1.0 if n == 0 else 0.0)) as rec:
        notifier = WebhookNotifier(rec.url, timeout=0.3, retries=2, backoff=0.01)
        notifier(make_recording(), STORED)
        hits = rec.wait_for(2)
        assert notifier.close(5)
    assert hits[0].body == hits[1].body
    assert notifier.delivered == 1


def test_a_dead_webhook_gives_up(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens: connection refused
    with caplog.at_level(logging.INFO, "kzr_wsgi.notify"):
        notifier = WebhookNotifier(f"http://127.0.0.1:{port}/", timeout=0.5, retries=2,
                                   backoff=0.01)
        notifier(make_recording(), STORED)
        assert notifier.close(5)
    assert notifier.failed == 1
    assert any("gave up" in r.getMessage() and "after 3 attempt(s)" in r.getMessage()
               for r in caplog.records)


def test_full_queue_drops_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with receiver(gated=True) as rec, caplog.at_level(logging.INFO, "kzr_wsgi.notify"):
        notifier = WebhookNotifier(rec.url, timeout=10, max_queue=1)
        notifier(make_recording("first"), STORED)
        rec.wait_for(1)  # the worker holds the first one, waiting on the webhook
        started = time.monotonic()
        notifier(make_recording("second"), STORED)  # queued
        notifier(make_recording("third"), STORED)  # no room: dropped
        assert time.monotonic() - started < 1.0  # never waits for room
        rec.gate.set()
        rec.wait_for(2)
        assert notifier.close(5)
    assert [h.doc["recording"]["call_id"] for h in rec.hits] == ["first", "second"]
    assert notifier.dropped == 1 and notifier.delivered == 2
    assert any("dropped" in r.getMessage() and "'third'" in r.getMessage()
               for r in caplog.records if r.levelno == logging.ERROR)


def test_close_flushes_what_is_queued_then_drops() -> None:
    with receiver(lambda n: (200, 0.05)) as rec:
        notifier = WebhookNotifier(rec.url, timeout=2)
        for i in range(5):
            notifier(make_recording(f"c{i}"), STORED)
        assert notifier.close(10)
        assert len(rec.hits) == 5
        notifier(make_recording("late"), STORED)
        time.sleep(0.2)
    assert len(rec.hits) == 5 and notifier.dropped == 1


def test_close_gives_up_at_its_deadline() -> None:
    with receiver(lambda n: (503, 0.0)) as rec:
        notifier = WebhookNotifier(rec.url, timeout=1, retries=5, backoff=10)
        notifier(make_recording(), STORED)
        rec.wait_for(1)
        started = time.monotonic()
        assert notifier.close(0.5) is False  # a 10 s backoff is cut at the deadline
        assert time.monotonic() - started < 3
    assert notifier.abandoned == 1


def test_a_forked_child_starts_its_own_sender() -> None:
    with receiver() as rec:
        notifier = WebhookNotifier(rec.url, timeout=2)
        notifier(make_recording("parent"), STORED)
        rec.wait_for(1)
        pid = os.fork()
        if pid == 0:  # the child: the parent's thread did not come along
            code = 1
            try:
                notifier(make_recording("child"), STORED)
                code = 0 if notifier.close(5) and notifier.delivered == 1 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        rec.wait_for(2)
        notifier(make_recording("parent-again"), STORED)  # the parent's sender still runs
        rec.wait_for(3)
        assert notifier.close(5)
    assert [h.doc["recording"]["call_id"] for h in rec.hits] == ["parent", "child",
                                                                 "parent-again"]


# -- through `kzr-wsgi serve --notify-url` -----------------------------------------------


def put(port: int, path: str, body: bytes) -> tuple[int, dict[str, str], float]:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("PUT", path, body=body, headers={"Content-Type": "audio/mpeg"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, dict(resp.getheaders()), time.monotonic() - started
    finally:
        conn.close()


def test_serve_sends_one_notification_per_stored_recording(tmp_path: Path) -> None:
    with receiver() as rec, \
            serve(tmp_path, "--workers", "1", "--notify-url", rec.url) as srv:
        one = put(srv.port, "/call_recording_c1%40pbx.mp3?account_id=acc&recording_id=r1",
                  b"A" * 5000)
        retry = put(srv.port, "/call_recording_c1%40pbx.mp3?account_id=acc&recording_id=r1",
                    b"A" * 5000)
        two = put(srv.port, "/call_recording_c2.wav?recording_id=r2&duration_ms=20",
                  b"B" * 7000)
        assert (one[0], retry[0], two[0]) == (201, 200, 201)
        hits = rec.wait_for(2)
        # One worker, one FIFO queue: a notification for the retry would have come
        # before c2's. Give a stray one a moment more to show up anyway.
        time.sleep(0.5)
        hits = list(rec.hits)
    assert len(hits) == 2
    first, second = (h.doc for h in hits)
    assert first["recording"]["call_id"] == "c1@pbx"
    assert first["recording"]["metadata"]["fields"]["account_id"] == "acc"
    assert second["recording"]["call_id"] == "c2" and second["recording"]["ext"] == "wav"
    assert f'"{first["result"]["sha256"]}"' == one[1]["ETag"]
    assert f'"{second["result"]["sha256"]}"' == two[1]["ETag"]
    assert Path(first["result"]["location"]).read_bytes() == b"A" * 5000
    assert first["result"]["size"] == 5000 and second["result"]["size"] == 7000


@pytest.mark.parametrize("dead", ["closed-port", "sleeps-past-timeout"])
def test_a_dead_webhook_neither_changes_nor_delays_the_reply(tmp_path: Path, dead: str) -> None:
    body = os.urandom(1 << 20)

    def run(*args: str, sub: str) -> list[tuple[int, float]]:
        (tmp_path / sub).mkdir()
        with serve(tmp_path / sub, "--workers", "1", *args) as srv:
            out = []
            for i in range(4):
                status, _, took = put(srv.port, f"/call_recording_d{i}.mp3", body)
                out.append((status, took))
            status, _, took = put(srv.port, "/call_recording_d0.mp3", body)  # a retry
            out.append((status, took))
            return out

    baseline = run(sub="plain")
    if dead == "closed-port":
        slow = run("--notify-url", f"http://127.0.0.1:{free_port()}/hook", sub="dead")
    else:
        # Answers after 20 s, far past the notifier's 5 s timeout.
        with receiver(lambda n: (200, 20.0)) as rec:
            slow = run("--notify-url", rec.url, sub="dead")
            assert rec.hits  # it was called, and kept waiting
    assert [s for s, _ in slow] == [s for s, _ in baseline] == [201, 201, 201, 201, 200]
    # On the request path the sleeper alone would add 5 s per upload; generous bounds.
    assert max(t for _, t in slow) < 2.5, slow
    assert sum(t for _, t in slow) < sum(t for _, t in baseline) + 2.0, (slow, baseline)
