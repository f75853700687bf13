"""``kzr-wsgi serve --s3``, end to end: real receivers, a real S3 API, real sockets.

What issue 5 says the S3 store must show, through the command operators run: a moto
server in server mode on loopback (never an in-process mock), ``python -m kzr_wsgi
serve --s3 s3://rec/kazoo --s3-endpoint http://127.0.0.1:PORT`` in its own process
group and in a scratch working directory (so a stray ``./recordings`` would show), and
clients that send the bytes Kazoo sends (tests/kazoo.py, tests/plan_clients.py).

Numbers measured here (memory, the two-host race) are printed; run with ``-s`` to see
them. The README's "Scaling out" quotes them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import http.server
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from kazoo import Reply, freeswitch_put, httpc_headers, httpc_put, request_head
from plan_clients import get, plan_put, pseudo_audio, stream_upload
from servers import Server, free_port, rss_peak, spawn, tree_rss

from kzr_wsgi.naming import COMPANION_SUFFIXES, SIDECAR_SUFFIX
from kzr_wsgi.stores.s3 import S3Store

#: The moto server fixtures (``moto_endpoint``, ``aws_env``) live there.
pytest_plugins = ["s3server"]

H = "127.0.0.1"
MiB = 1 << 20
BUCKET = "rec"
PREFIX = "kazoo/"
S3_URL = "s3://rec/kazoo"
INDEX = PREFIX + ".kzr/index/"
LEASE = PREFIX + ".kzr/housekeeper.lease"
#: Above the store's 8 MiB single-PUT threshold: sent as a multipart upload.
LARGE = 9 * MiB + 12345
REPO = Path(__file__).resolve().parent.parent


def _hex() -> str:
    return os.urandom(8).hex()


def query_4x(call_id: str, recording_id: str, account_id: str = "acc5") -> str:
    """kzc_recording's 4.3 metadata query, percent-encoded as ``http_uri:encode`` does."""
    fields = [
        ("from", "1001@acme.example"), ("to", "2002@acme.example"),
        ("caller_id_name", "Ann Bé"), ("caller_id_number", "+15551234"),
        ("call_id", call_id), ("cdr_id", ""), ("interaction_id", "63871234567-ab"),
        ("owner_id", ""), ("account_id", account_id), ("start", "63871234567"),
        ("duration_ms", "61500"), ("recording_id", recording_id),
        ("conference_recording", "false"), ("x_future", "v/w"),
    ]
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in fields)


# -- the S3 side ---------------------------------------------------------------------------


@pytest.fixture
def rec(moto_endpoint: str, aws_env: dict[str, str]) -> Iterator[Any]:
    """The bucket ``rec`` on the moto server, empty; a boto3 client for it. Removed after.

    ``aws_env`` puts dummy credentials in this process's environment, which the
    ``serve`` processes inherit.
    """
    import boto3
    from s3server import empty_bucket  # here: importing it at the top defeats pytest's rewrite

    client = boto3.session.Session().client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    try:
        yield client
    finally:
        empty_bucket(client, BUCKET)


def all_keys(client: Any, *, lease: bool = False) -> list[str]:
    """Every key in the bucket; the housekeeper's lease only when ``lease``.

    ``serve --s3`` runs a housekeeper (it sweeps the bucket daily) whose lease object
    lives while it serves: the store's state, not a copy, so left out by default.
    """
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return sorted(k for k in keys if lease or k != LEASE)


def uploads(client: Any) -> list[dict[str, Any]]:
    """Unfinished multipart uploads in the bucket (invisible to readers, but billed)."""
    return list(client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []))


def read_json(client: Any, key: str) -> dict[str, Any]:
    with client.get_object(Bucket=BUCKET, Key=key)["Body"] as body:
        doc = json.loads(body.read())
    assert isinstance(doc, dict)
    return doc


def object_sha256(client: Any, key: str) -> str:
    """sha256 of an object, read back 1 MiB at a time."""
    sha = hashlib.sha256()
    with client.get_object(Bucket=BUCKET, Key=key)["Body"] as body:
        for block in iter(lambda: body.read(MiB), b""):
            sha.update(block)
    return sha.hexdigest()


@dataclass
class Inventory:
    """Everything in the bucket, sorted out: data objects, their sidecars, index entries."""

    #: data object key -> its sidecar's record
    objects: dict[str, dict[str, Any]]
    #: index entry key -> its record
    entries: dict[str, dict[str, Any]]
    #: keys that are neither a data object with a sidecar, a sidecar, an index entry, nor
    #: a file kept beside a data object (its analysis, its waveform)
    strays: list[str]
    #: data object key -> the endings of the files kept beside it
    companions: dict[str, list[str]] = field(default_factory=dict)

    def of_call(self, call_id: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.objects.items() if r["call_id"] == call_id}

    def entries_of_call(self, call_id: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.entries.items() if r["call_id"] == call_id}


def inventory(client: Any) -> Inventory:
    """Read the bucket; fail on any object that is not a committed copy's part."""
    keys = all_keys(client)
    keyset = set(keys)
    objects: dict[str, dict[str, Any]] = {}
    entries: dict[str, dict[str, Any]] = {}
    strays: list[str] = []
    companions: dict[str, list[str]] = {}
    for key in keys:
        beside = next((x for x in COMPANION_SUFFIXES if key.endswith(x)), None)
        if key.startswith(INDEX):
            entries[key] = read_json(client, key)
        elif beside is not None and key[: -len(beside)] in keyset:
            companions.setdefault(key[: -len(beside)], []).append(beside)
        elif key.endswith(SIDECAR_SUFFIX):
            if key[: -len(SIDECAR_SUFFIX)] not in keyset:
                strays.append(key)
        elif key + SIDECAR_SUFFIX in keyset:
            objects[key] = read_json(client, key + SIDECAR_SUFFIX)
        else:
            strays.append(key)
    return Inventory(objects, entries, strays, companions)


def assert_consistent(inv: Inventory) -> None:
    """Each data object has one sidecar and one index entry naming it, and nothing else."""
    assert inv.strays == []
    assert sorted(e["key"] for e in inv.entries.values()) == sorted(inv.objects)
    for key, record in inv.objects.items():
        assert record["key"] == key and record["location"] == f"s3://{BUCKET}/{key}"


# -- the receivers -------------------------------------------------------------------------


@contextlib.contextmanager
def serve_s3(tmp_path: Path, endpoint: str, *args: str, workers: int = 1,
             name: str = "serve", env: dict[str, str] | None = None) -> Iterator[Server]:
    """``python -m kzr_wsgi serve --s3 s3://rec/kazoo --s3-endpoint ENDPOINT ARGS…``, swept.

    Run with ``tmp_path/<name>-cwd`` as its working directory and no ``--root`` (the
    disk store's default, ``./recordings``, would land there); its log beside it.
    ``env`` is added to its environment (after every ``KZR_*`` of this one is removed).
    """
    port = free_port()
    cwd = tmp_path / f"{name}-cwd"
    cwd.mkdir()
    cmd = [sys.executable, "-m", "kzr_wsgi", "serve", "--host", H, "--port", str(port),
           "--workers", str(workers), "--s3", S3_URL, "--s3-endpoint", endpoint, *args]
    # No KZR_* from the developer's shell: KZR_ROOT would turn on the fan-out.
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("KZR_")}
    with spawn(cmd, H, port, tmp_path / f"{name}-{port}.log", {**clean, **(env or {})},
               cwd) as server:
        wait_for_first_sweep(server)
        yield server


def wait_for_first_sweep(server: Server, timeout: float = 30) -> None:
    """Wait until the bucket's housekeeper has done its start-up sweep.

    Moto dates every multipart upload to 2010, so that sweep would abort a test's upload
    in progress as a day-old leftover. The lease's holder sweeps once, then not for a
    day: this server (its log says so), or another one started before it (waited for).
    """
    deadline = time.monotonic() + timeout
    while True:
        log = server.log()
        if "housekeeper: sweep: " in log or "housekeeper: standing by" in log:
            return
        assert time.monotonic() < deadline, f"no start-up sweep:\n{log}"
        time.sleep(0.05)


def timed(call: Callable[[], Reply]) -> tuple[Reply, float]:
    started = time.monotonic()
    reply = call()
    return reply, time.monotonic() - started


def wait_for_log(server: Server, text: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = server.log()
        if text in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the server's log after {timeout}s:\n{server.log()}")


def etag(reply: Reply) -> str:
    return reply.headers["etag"].strip('"')


# -- a webhook receiver on loopback (the pattern of test_notify.py) -----------------------


@dataclass
class Webhook:
    """Records every POST; each answered ``status`` after ``delay`` seconds."""

    status: int = 204
    delay: float = 0.0
    docs: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://{H}:{self.port}/hook"

    def wait_for(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.docs) >= count, timeout), (
                f"webhook got {len(self.docs)} of {count} notifications in {timeout}s")
            return list(self.docs)


@contextlib.contextmanager
def webhook(status: int = 204, delay: float = 0.0) -> Iterator[Webhook]:
    hook = Webhook(status, delay)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with hook.cond:
                hook.docs.append(json.loads(body))
                hook.keys.append(self.headers.get("Idempotency-Key"))
                hook.cond.notify_all()
            time.sleep(hook.delay)
            self.send_response(hook.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((H, 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False  # a sleeping handler must not hold up the test's end
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- uploads land whole, byte-identical, with Kazoo's metadata beside them ----------------

# (id, client, target template, call id template, body size, content type, key directory)
FORMS = [
    ("3x-plain", "freeswitch", "/call_recording_{cid}.mp3", "{cid}", 150_000, "audio/mpeg",
     "kazoo/call/unknown/"),
    ("3x-encoded", "freeswitch", "/call_recording_{cid}%40pbx.example.mp3",
     "{cid}@pbx.example", 150_000, "audio/mpeg", "kazoo/call/unknown/"),
    ("4x-metadata", "httpc", "/call_recording_{cid}.mp3?{query}", "{cid}", 150_000,
     "audio/mpeg", "kazoo/call/acc5/2023/12/31/"),
    ("4x-metadata-multipart", "httpc", "/call_recording_{cid}.wav?{query}", "{cid}", LARGE,
     "audio/wav", "kazoo/call/acc5/2023/12/31/"),
    ("4x-query-form", "httpc", "/upload?recording=call_recording_{cid}.mp3&{query}", "{cid}",
     150_000, "audio/mpeg", "kazoo/call/acc5/2023/12/31/"),
    ("4x-slash-in-call-id", "httpc", "/call_recording_{cid}%2F..%2Fx.mp3?{query}",
     "{cid}/../x", 150_000, "audio/mpeg", "kazoo/call/acc5/2023/12/31/"),
    ("record_caller", "freeswitch", "/{cid}.wav", "{cid}", 150_000, "audio/x-wav",
     "kazoo/caller/unknown/"),
]


def test_upload_forms_land_whole_with_metadata_beside(
    rec: Any, moto_endpoint: str, tmp_path: Path,
) -> None:
    sent: dict[str, tuple[str, bytes, str, str, str, str]] = {}
    with serve_s3(tmp_path, moto_endpoint) as srv:
        for form, client, template, cid_template, size, ctype, directory in FORMS:
            cid = _hex()
            call_id = cid_template.format(cid=cid)
            rid = f"202312-{_hex()}"
            target = template.format(cid=cid, query=query_4x(call_id, rid))
            body = os.urandom(size)
            if client == "freeswitch":
                reply = freeswitch_put(H, srv.port, target, body, content_type=ctype)
                assert reply.continued, form  # Expect: 100-continue answered, no 1 s stall
            else:
                reply = httpc_put(H, srv.port, target, body, content_type=ctype,
                                  stray_content_type=True)
            assert reply.status == 201, (form, reply)
            digest = hashlib.sha256(body).hexdigest()
            assert etag(reply) == digest, form
            sent[call_id] = (form, body, digest, ctype, directory, rid)
    assert list((tmp_path / "serve-cwd").iterdir()) == []  # no ./recordings, nothing local

    inv = inventory(rec)
    assert_consistent(inv)
    assert len(inv.objects) == len(FORMS)
    assert uploads(rec) == []
    for call_id, (form, body, digest, ctype, directory, rid) in sent.items():
        [(key, record)] = inv.of_call(call_id).items()
        assert key.startswith(directory), (form, key)
        # The layout's six levels and a leaf: a "/" in the call id never adds one.
        assert key.count("/") == 6 and "/../" not in key, (form, key)
        assert object_sha256(rec, key) == digest, form  # byte-identical
        head = rec.head_object(Bucket=BUCKET, Key=key)
        assert head["ContentLength"] == len(body) and head["ContentType"] == ctype, form
        # S3's ETag of a multipart object ends in "-<parts>": 8 MiB parts, so 2 for LARGE.
        assert head["ETag"].endswith('-2"') == (len(body) == LARGE), (form, head["ETag"])
        # What is known before the body goes up rides in the object's own metadata.
        assert head["Metadata"]["kzr-call-id"] == quote(call_id, safe=""), form
        assert head["Metadata"]["kzr-kind"] == ("caller" if form == "record_caller" else "call")
        # The full record sits beside the object.
        assert (record["call_id"], record["size"], record["sha256"], record["content_type"]) == (
            call_id, len(body), digest, ctype), form
        if form.startswith("4x"):
            fields = record["metadata"]["fields"]
            assert record["recording_id"] == rid and fields["recording_id"] == rid, form
            assert fields["account_id"] == "acc5" and fields["from"] == "1001@acme.example"
            assert fields["caller_id_name"] == "Ann Bé" and fields["owner_id"] is None
            assert fields["x_future"] == "v/w"  # a field Kazoo may add later is kept
            assert record["metadata"]["duration_ms"] == 61500
            assert record["metadata"]["start_iso"].startswith("2023-12-31T")
        else:
            assert record["recording_id"] is None and record["metadata"] == {"fields": {}}
        if form == "4x-query-form":
            assert record["segments"] == ["upload"]
            assert "recording=call_recording_" in record["query"]


# -- memory --------------------------------------------------------------------------------


def test_300_mib_upload_keeps_the_serve_process_tree_bounded(
    rec: Any, moto_endpoint: str, tmp_path: Path,
) -> None:
    size = 300 * MiB
    cid = _hex()
    target = f"/call_recording_{cid}.wav?" + query_4x(cid, "r-big")
    with serve_s3(tmp_path, moto_endpoint) as srv:
        # One small upload first, so the worker has built what every upload uses (its
        # threads, boto3's connection pool) before the baseline is taken.
        assert httpc_put(H, srv.port, f"/call_recording_warm{cid}.mp3", b"w" * 1000).status == 201
        started = time.monotonic()
        with rss_peak(srv.proc.pid, interval=0.02) as rss:
            # Made 1 MiB at a time and sent as made: the client never holds it whole.
            result = stream_upload(H, srv.port, target, b"", pseudo_audio(size), b"",
                                   content_type="audio/wav", content_length=size)
        took = time.monotonic() - started
        time.sleep(0.5)
        before, peak, after = rss.before, rss.peak, tree_rss(srv.proc.pid)
    print(f"\n300 MiB through serve --s3 in {took:.1f}s: serve tree RSS before "
          f"{before / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB (+{(peak - before) / MiB:.1f}), "
          f"after {after / MiB:.1f} MiB")
    assert result.reply.status == 201, result.reply
    assert etag(result.reply) == result.file_sha256 and result.file_size == size
    assert peak - before < 100 * 1000 * 1000
    [(key, record)] = inventory(rec).of_call(cid).items()
    assert record["size"] == size and record["sha256"] == result.file_sha256
    head = rec.head_object(Bucket=BUCKET, Key=key)
    # Sent as it came, in 38 parts of 8 MiB: S3's multipart ETag ends in "-<parts>".
    assert head["ContentLength"] == size and head["ETag"].endswith('-38"'), head["ETag"]
    assert object_sha256(rec, key) == result.file_sha256
    assert uploads(rec) == []


# -- a body cut short leaves nothing --------------------------------------------------------


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)


def start_cut_short(port: int, target: str, announced: int, send: int) -> socket.socket:
    """Open a PUT announcing ``announced`` bytes and send ``send`` of them (1 MiB at a time)."""
    sock = socket.create_connection((H, port), timeout=30)
    sock.sendall(request_head("PUT", target, httpc_headers(H, port, announced)))
    for chunk in pseudo_audio(send, seed=target.encode()):
        sock.sendall(chunk)
    return sock


def finish_cut_short(sock: socket.socket) -> int | None:
    """Stop sending, as a Kazoo node that died leaves it; the status, if any answer came."""
    with sock:
        sock.shutdown(socket.SHUT_WR)
        try:
            response = http.client.HTTPResponse(sock, method="PUT")
            response.begin()
            response.read()
            return int(response.status)
        except (OSError, http.client.HTTPException):
            return None


@pytest.mark.parametrize("announced, send", [(5000, 1000), (40 * MiB, 20 * MiB)],
                         ids=["single-put", "multipart"])
def test_cut_short_body_leaves_no_object_and_no_unfinished_upload(
    rec: Any, moto_endpoint: str, tmp_path: Path, announced: int, send: int,
) -> None:
    cid = _hex()
    target = f"/call_recording_{cid}.mp3?" + query_4x(cid, "r-cut")
    with serve_s3(tmp_path, moto_endpoint) as srv:
        sock = start_cut_short(srv.port, target, announced, send)
        if send > LARGE:
            # The multipart upload really is under way before the client goes: what is
            # checked below is that it was aborted, not that it never began.
            wait_until(lambda: len(uploads(rec)) == 1, 20, "a multipart upload in progress")
        status = finish_cut_short(sock)
        wait_for_log(srv, f"bytes={send} ")
        log = wait_for_log(srv, "outcome=refused 400")
        # Kazoo retries what was not answered 2xx; and a later upload of it is stored afresh.
        assert status in (400, None), status
        assert "outcome=stored" not in log
        assert all_keys(rec) == [] and uploads(rec) == []
        body = b"complete" * 1000
        assert httpc_put(H, srv.port, target, body).status == 201
    [(key, _)] = inventory(rec).of_call(cid).items()
    assert object_sha256(rec, key) == hashlib.sha256(body).hexdigest()
    assert list((tmp_path / "serve-cwd").iterdir()) == []


def test_host_killed_mid_upload_leaves_an_orphan_the_sweep_removes(
    rec: Any, moto_endpoint: str, tmp_path: Path,
) -> None:
    """SIGKILL cannot be cleaned up after: no object, one unfinished upload, then swept."""
    cid = _hex()
    target = f"/call_recording_{cid}.mp3?" + query_4x(cid, "r-kill")
    with serve_s3(tmp_path, moto_endpoint) as srv:
        sock = start_cut_short(srv.port, target, 40 * MiB, 20 * MiB)
        with sock:
            wait_until(lambda: len(uploads(rec)) == 1, 20, "a multipart upload in progress")
            srv.stop(signal.SIGKILL)
    assert all_keys(rec) == []  # no object: a reader never sees a part of it
    [orphan] = uploads(rec)
    assert orphan["Key"].startswith("kazoo/call/acc5/2023/12/31/call_recording_")
    store = S3Store.from_url(S3_URL, endpoint_url=moto_endpoint)
    # What the README's "Scaling out" tells operators to run (or a lifecycle rule does for them);
    # moto dates every upload to 2010, so "older than one day" covers this one.
    assert store.sweep_incomplete(older_than=timedelta(days=1)) == 1
    assert uploads(rec) == []
    # The rule the README gives is one the S3 API takes.
    rule = store.lifecycle_rule(days=1)
    rec.put_bucket_lifecycle_configuration(Bucket=BUCKET,
                                           LifecycleConfiguration={"Rules": [rule]})
    [back] = rec.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    assert back["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert back["Filter"] == {"Prefix": PREFIX}


# -- two receivers, one bucket: retries at the same host, the other host, concurrently ----


def race(sends: Sequence[Callable[[], Reply]]) -> list[tuple[Reply, float]]:
    """Run every send at once (threads released together); each reply and its seconds."""
    results: list[tuple[Reply, float] | BaseException | None] = [None] * len(sends)
    barrier = threading.Barrier(len(sends))

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = timed(sends[i])
        except BaseException as exc:  # reported below, not swallowed
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(sends))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert all(isinstance(r, tuple) for r in results), results
    return [r for r in results if isinstance(r, tuple)]


def test_two_hosts_sharing_one_bucket_keep_one_copy_and_notify_once(
    rec: Any, moto_endpoint: str, tmp_path: Path,
) -> None:
    created: list[tuple[str, str]] = []  # (call id, sha256) of every 201
    timings: dict[str, list[float]] = {}

    def check(call_id: str, replies: list[tuple[Reply, float]], what: str) -> None:
        statuses = [r.status for r, _ in replies]
        # Exactly one upload stored it; every other one is told it is already there.
        assert sorted(statuses) == [200] * (len(statuses) - 1) + [201], (what, statuses)
        assert len({etag(r) for r, _ in replies}) == 1, what
        created.append((call_id, etag(replies[0][0])))
        timings[what] = [t for _, t in replies]

    with webhook() as hook, \
            serve_s3(tmp_path, moto_endpoint, "--workers", "2", "--read-back",
                     "--notify-url", hook.url, name="a") as a, \
            serve_s3(tmp_path, moto_endpoint, "--workers", "2", "--read-back",
                     "--notify-url", hook.url, name="b") as b:
        hosts = [a, b]

        def send(host: Server, call_id: str, body: bytes, rid: str) -> Callable[[], Reply]:
            target = f"/call_recording_{call_id}.mp3?" + query_4x(call_id, rid)
            return lambda: httpc_put(H, host.port, target, body)

        # Sequential: stored at A, then retried at B, at A, at B (Kazoo's retries are
        # seconds to minutes apart, and a load balancer spreads them).
        for size, what in [(2000, "sequential-small"), (LARGE, "sequential-multipart")]:
            cid, body = _hex(), os.urandom(size)
            check(cid, [timed(send(hosts[i % 2], cid, body, "r1")) for i in range(4)], what)
        # Concurrent: eight copies of one recording released at once, four at each host.
        for size, what in [(2000, "concurrent-small"), (LARGE, "concurrent-multipart")]:
            cid, body = _hex(), os.urandom(size)
            check(cid, race([send(hosts[i % 2], cid, body, "r1") for i in range(8)]), what)
            # Either host reads it back: reads go through the bucket's index, not the host.
            target = f"/call_recording_{cid}.mp3?" + query_4x(cid, "r1")
            assert get(H, a.port, target).body == get(H, b.port, target).body == body
        # A different body under the same name (and recording_id) at the other host is
        # not a retry: it is kept beside the first, and both are "created".
        cid = _hex()
        first, second = os.urandom(3000), os.urandom(3000)
        one, two = send(a, cid, first, "r1")(), send(b, cid, second, "r1")()
        assert (one.status, two.status) == (201, 201)
        created += [(cid, etag(one)), (cid, etag(two))]

        docs = hook.wait_for(len(created))
        # Give a stray notification (for a de-duplicated retry) time to show up.
        time.sleep(1.0)
        docs = list(hook.docs)
        keys = list(hook.keys)
        # Losers that got as far as committing their own copy, then removed it.
        surplus = sum(s.log().count("the same recording was committed first") for s in hosts)
    for what, seconds in timings.items():
        print(f"\n{what}: {len(seconds)} uploads, seconds min {min(seconds):.3f} "
              f"max {max(seconds):.3f}", end="")
    print(f"\nsurplus copies committed then deleted by losers: {surplus}")

    inv = inventory(rec)
    assert_consistent(inv)
    assert uploads(rec) == []
    for call_id, digest in created:
        copies = inv.of_call(call_id)
        bodies = {r["sha256"] for r in copies.values()}
        assert digest in bodies
        # One object (and one sidecar, one index entry) per distinct body.
        assert len(copies) == len(bodies) == len(inv.entries_of_call(call_id))
        for key, record in copies.items():
            assert object_sha256(rec, key) == record["sha256"]
    assert len(inv.objects) == len(created) == 6

    # One notification per stored recording, none for a retry, across both hosts.
    assert len(docs) == len(created), docs
    assert sorted((d["recording"]["call_id"], d["result"]["sha256"]) for d in docs) == sorted(
        created)
    assert len({d["id"] for d in docs}) == len(docs) and keys == [d["id"] for d in docs]
    for doc in docs:
        assert doc["event"] == "recording.stored"
        location = doc["result"]["location"]
        assert location.startswith(f"s3://{BUCKET}/{PREFIX}call/acc5/2023/12/31/")
        assert inv.objects[location.removeprefix(f"s3://{BUCKET}/")]["sha256"] == doc[
            "result"]["sha256"]
    for name in ("a", "b"):
        assert list((tmp_path / f"{name}-cwd").iterdir()) == []


# -- a dead webhook changes nothing for Kazoo --------------------------------------------


def test_dead_webhooks_neither_change_nor_delay_the_reply(
    rec: Any, moto_endpoint: str, tmp_path: Path,
) -> None:
    """One webhook refuses connections, the other answers after 20 s (past the 5 s timeout)."""
    closed = f"http://{H}:{free_port()}/hook"
    body = os.urandom(200_000)
    with webhook(delay=20.0) as sleeper, \
            serve_s3(tmp_path, moto_endpoint, "--notify-url", closed,
                     "--notify-url", sleeper.url) as srv:
        replies = []
        for cid in ("d0", "d1", "d0"):  # the last one a retry
            target = f"/call_recording_{cid}.mp3?" + query_4x(cid, "r1")
            replies.append(timed(functools.partial(httpc_put, H, srv.port, target, body)))
        sleeper.wait_for(1)  # it is being called (and kept waiting) meanwhile
        # Both notifiers are still retrying; SIGKILL skips the clean exit's flush.
        srv.stop(signal.SIGKILL)
    print("\nwith two dead webhooks: " + ", ".join(
        f"{r.status} in {t:.3f}s" for r, t in replies))
    assert [r.status for r, _ in replies] == [201, 201, 200]
    # On the request path, the sleeper alone would add its 5 s timeout to each upload.
    assert max(t for _, t in replies) < 2.5, replies
    assert len(inventory(rec).objects) == 2


# -- disk and bucket together: an explicit --root -----------------------------------------


def disk_recordings(root: Path) -> dict[str, bytes]:
    """Recording files under ``root`` (not sidecars, not the store's own ``.kzr``)."""
    return {p.name: p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not p.name.endswith(SIDECAR_SUFFIX)
            and ".kzr" not in p.relative_to(root).parts}


def test_s3_with_an_explicit_root_writes_both(
    rec: Any, moto_endpoint: str, tmp_path: Path,
) -> None:
    root = tmp_path / "disk"
    bodies = {_hex(): os.urandom(150_000), _hex(): os.urandom(LARGE)}
    with serve_s3(tmp_path, moto_endpoint, "--root", str(root)) as srv:
        assert "(both must succeed)" in wait_for_log(srv, "kzr-wsgi: storing")
        for cid, body in bodies.items():
            target = f"/call_recording_{cid}.mp3?" + query_4x(cid, "r1")
            first = httpc_put(H, srv.port, target, body)
            assert first.status == 201, first
            assert httpc_put(H, srv.port, target, body).status == 200  # a retry: nothing new
    on_disk = disk_recordings(root)
    inv = inventory(rec)
    assert_consistent(inv)
    assert len(on_disk) == len(inv.objects) == len(bodies)
    for cid, body in bodies.items():
        [disk_copy] = [data for name, data in on_disk.items() if cid in name]
        assert disk_copy == body
        [(key, record)] = inv.of_call(cid).items()
        assert object_sha256(rec, key) == record["sha256"] == hashlib.sha256(body).hexdigest()
    assert list((tmp_path / "serve-cwd").iterdir()) == []  # the disk copy went to --root


def test_two_fan_out_hosts_let_the_bucket_decide_what_is_new(
    rec: Any, moto_endpoint: str, tmp_path: Path,
) -> None:
    """Two hosts, each writing its own disk and the shared bucket: a retry at the other host
    is written to that host's disk but answered 200 and announced once."""
    body = os.urandom(120_000)
    cid = _hex()
    target = f"/call_recording_{cid}.mp3?" + query_4x(cid, "r1")
    disks = [tmp_path / "disk-a", tmp_path / "disk-b"]
    with webhook() as hook, \
            serve_s3(tmp_path, moto_endpoint, "--root", str(disks[0]), "--notify-url", hook.url,
                     name="a") as a, \
            serve_s3(tmp_path, moto_endpoint, "--root", str(disks[1]), "--notify-url", hook.url,
                     name="b") as b:
        statuses = [httpc_put(H, srv.port, target, body).status for srv in (a, b, a, b)]
        [doc] = hook.wait_for(1)
        time.sleep(1.0)  # a second notification, if any, would have arrived by now
        assert len(hook.docs) == 1
    assert statuses == [201, 200, 200, 200]
    assert doc["result"]["location"].startswith("s3://rec/kazoo/")
    inv = inventory(rec)
    assert_consistent(inv)
    assert len(inv.objects) == 1
    for disk in disks:  # each host keeps its local copy
        assert list(disk_recordings(disk).values()) == [body]


# -- reading back from the bucket ---------------------------------------------------------


def test_read_back_and_attachments_from_the_bucket(
    rec: Any, moto_endpoint: str, tmp_path: Path,
) -> None:
    cid = f"{_hex()}@10.0.0.1"
    first, second = os.urandom(300_000), os.urandom(LARGE)
    base = f"/call_recording_{quote(cid, safe='@')}.mp3?"
    url_1, url_2 = base + query_4x(cid, "rid-1"), base + query_4x(cid, "rid-2")
    attachment = f"/store/acc5/{_hex()}/202312-{_hex()}/{_hex()}.mp3"
    plan_body = os.urandom(50_000)
    with serve_s3(tmp_path, moto_endpoint, "--read-back", "--attachments-prefix",
                  "/store") as srv:
        # Two recordings of one call (start/stop/start): one name, two recording_ids.
        assert httpc_put(H, srv.port, url_1, first).status == 201
        assert httpc_put(H, srv.port, url_2, second).status == 201
        assert plan_put(H, srv.port, attachment, plan_body).status == 201

        got = get(H, srv.port, url_1)
        assert (got.status, got.body) == (200, first)
        assert got.headers["content-type"] == "audio/mpeg"
        assert got.headers["etag"] == f'"{hashlib.sha256(first).hexdigest()}"'
        got = get(H, srv.port, url_2)
        assert (got.status, got.body) == (200, second)
        # Kazoo 4.3 adds query parameters to the GET: tolerated.
        assert get(H, srv.port, url_1 + "&pvt_type=call_recording").body == first
        head = get(H, srv.port, url_2, method="HEAD")
        assert (head.status, head.headers["content-length"], head.body) == (
            200, str(len(second)), b"")

        # A range deep inside the multipart object: 206 and exactly those bytes.
        start, end = 9 * MiB, 9 * MiB + 99
        part = get(H, srv.port, url_2, headers=[("Range", f"bytes={start}-{end}")])
        assert part.status == 206
        assert part.headers["content-range"] == f"bytes {start}-{end}/{len(second)}"
        assert part.body == second[start:end + 1]
        tail = get(H, srv.port, url_1, headers=[("Range", "bytes=-10")])
        assert (tail.status, tail.body) == (206, first[-10:])
        assert get(H, srv.port, url_1, headers=[("Range", f"bytes={len(first)}-")]).status == 416

        got = get(H, srv.port, attachment)
        assert (got.status, got.body) == (200, plan_body)
        part = get(H, srv.port, attachment, headers=[("Range", "bytes=100-199")])
        assert (part.status, part.body) == (206, plan_body[100:200])
        assert get(H, srv.port, attachment + "x").status == 404
    assert list((tmp_path / "serve-cwd").iterdir()) == []


# -- S3 out of reach -------------------------------------------------------------------------


@pytest.mark.parametrize("fan_out", [False, True], ids=["s3-only", "with-root"])
def test_s3_out_of_reach_is_503_and_nothing_is_kept(
    aws_env: dict[str, str], tmp_path: Path, fan_out: bool,
) -> None:
    """Kazoo counts a 503 as a failure and retries later; nothing lands anywhere.

    With an explicit ``--root`` too, the disk copy made meanwhile is rolled back.
    """
    import boto3
    from s3server import moto_server  # here: importing it at the top defeats pytest's rewrite

    root = tmp_path / "disk"
    args = ["--root", str(root)] if fan_out else []
    body = os.urandom(LARGE if fan_out else 5000)
    target = "/call_recording_down.mp3?" + query_4x("down", "r1")
    with contextlib.ExitStack() as s3:
        # An S3 that is there at start-up (serve checks it before listening) ...
        endpoint = s3.enter_context(moto_server())
        boto3.session.Session().client(
            "s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        with webhook() as hook, serve_s3(tmp_path, endpoint, "--notify-url", hook.url,
                                         *args) as srv:
            s3.close()  # ... and gone by the time Kazoo uploads
            reply, took = timed(lambda: httpc_put(H, srv.port, target, body))
            log = wait_for_log(srv, "outcome=refused 503")
            time.sleep(0.5)
    print(f"\nS3 out of reach ({'fan-out' if fan_out else 's3 only'}): "
          f"{reply.status} after {took:.2f}s: {reply.body.decode().strip()}")
    assert reply.status == 503, reply
    assert took < 60
    assert "outcome=stored" not in log
    assert hook.docs == []  # nothing stored, nothing announced
    assert list((tmp_path / "serve-cwd").iterdir()) == []
    if fan_out:
        assert "store #1 (S3Store) failed" in reply.body.decode()
        assert "rolled back in store #2 (DirectoryStore)" in reply.body.decode()
        assert disk_recordings(root) == {}
