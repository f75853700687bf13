"""S3Store against a real S3 API: moto's server mode in a subprocess, over loopback."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psutil
import pytest

from kzr_wsgi.body import Body
from kzr_wsgi.errors import BodyIncomplete, BodyTooLarge, NotFound, StoreUnavailable
from kzr_wsgi.metadata import parse_metadata
from kzr_wsgi.recording import Kind, Name, Recording
from kzr_wsgi.stores.s3 import MIN_PART_SIZE, S3Store

#: The moto server fixtures (``moto_endpoint``, ``aws_env``, ``s3_bucket``) live there.
pytest_plugins = ["s3server"]

MiB = 1 << 20
#: The ``s3_bucket`` fixture: a boto3 client and the name of a fresh bucket.
Bucket = tuple[Any, str]
START = "63871234567"  # Kazoo's Gregorian seconds: 2023-12-31T09:36:07Z


def make_recording(
    data: bytes | None = None,
    *,
    call_id: str = "abc-123@10.0.0.1",
    recording_id: str | None = "rec-1",
    account_id: str | None = "acct-1",
    start: str | None = START,
    stream: Any = None,
    content_length: int | None = -1,
    max_size: int = 2 << 30,
    kind: Kind = Kind.CALL,
    segments: tuple[str, ...] = (),
    filename: str | None = None,
) -> Recording:
    """A Recording as the middleware would build it, over an in-memory or custom body."""
    fields = [("call_id", call_id), ("account_id", account_id or ""), ("start", start or ""),
              ("recording_id", recording_id or ""), ("from", "alice@example.com")]
    if stream is None:
        assert data is not None
        stream = io.BytesIO(data)
    if content_length == -1:
        content_length = len(data) if data is not None else None
    if filename is None:
        filename = f"call_recording_{call_id}.mp3"
    return Recording(
        name=Name(kind, segments, filename),
        call_id=call_id if kind is not Kind.ATTACHMENT else None,
        ext="mp3",
        content_type="audio/mpeg",
        content_length=content_length,
        metadata=parse_metadata(fields),
        query="call_id=x&recording_id=y",
        remote_addr="127.0.0.1",
        stream=Body(stream, content_length, max_size),
        received_at=datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc),
    )


class _Generated(io.RawIOBase):
    """``total`` bytes made on demand (1 MiB at a time), hashed as they are handed out."""

    def __init__(self, total: int, cut_at: int | None = None) -> None:
        super().__init__()
        self.left = total if cut_at is None else cut_at
        self.sha = hashlib.sha256()
        self.counter = 0
        self.base = os.urandom(MiB)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = min(size if size and size > 0 else MiB, self.left, MiB)
        self.counter += 1
        # Vary every block so a part swapped or repeated changes the sha256.
        block = self.counter.to_bytes(8, "big") + self.base[8:n]
        block = block[:n]
        self.left -= len(block)
        self.sha.update(block)
        return block


def store_for(s3_bucket: Bucket, endpoint: str, **kwargs: Any) -> S3Store:
    _client, bucket = s3_bucket
    kwargs.setdefault("part_size", MIN_PART_SIZE)
    kwargs.setdefault("multipart_threshold", MIN_PART_SIZE)
    return S3Store(bucket, "kazoo/", endpoint_url=endpoint, **kwargs)


def keys(s3_bucket: Bucket) -> list[str]:
    client, bucket = s3_bucket
    out: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        out.extend(item["Key"] for item in page.get("Contents", []))
    return sorted(out)


def data_keys(s3_bucket: Bucket) -> list[str]:
    return [k for k in keys(s3_bucket) if "/.kzr/" not in k and not k.endswith(".kzr.json")]


def uploads(s3_bucket: Bucket) -> list[dict[str, Any]]:
    client, bucket = s3_bucket
    return list(client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def get_bytes(s3_bucket: Bucket, key: str) -> bytes:
    client, bucket = s3_bucket
    return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())


# -- writing ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1000, 5 * MiB, 12 * MiB + 7],
                         ids=["empty", "small-put", "at-threshold", "multipart"])
def test_upload_lands_complete_with_metadata(
    s3_bucket: Bucket, moto_endpoint: str, size: int,
) -> None:
    data = os.urandom(size)
    store = store_for(s3_bucket, moto_endpoint)
    stored = store(make_recording(data))

    assert stored.created is True
    assert stored.size == size
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    [key] = data_keys(s3_bucket)
    assert stored.location == f"s3://{s3_bucket[1]}/{key}"
    # Layout: kind/account/yyyy/mm/dd from Kazoo's start, not the time received.
    assert key.startswith("kazoo/call/acct-1/2023/12/31/call_recording_abc-123%4010.0.0.1~")
    assert key.endswith(".mp3")
    assert get_bytes(s3_bucket, key) == data

    client, bucket = s3_bucket
    head = client.head_object(Bucket=bucket, Key=key)
    assert head["ContentType"] == "audio/mpeg"
    assert head["Metadata"]["kzr-call-id"] == "abc-123%4010.0.0.1"
    assert head["Metadata"]["kzr-recording-id"] == "rec-1"
    assert head["Metadata"]["kzr-kind"] == "call"
    # Above the threshold it went as a multipart upload (S3's ETag says how many parts).
    assert ("-" in head["ETag"]) == (size > MIN_PART_SIZE)

    sidecar = json.loads(get_bytes(s3_bucket, key + ".kzr.json"))
    assert sidecar["call_id"] == "abc-123@10.0.0.1"
    assert sidecar["recording_id"] == "rec-1"
    assert sidecar["sha256"] == stored.sha256
    assert sidecar["size"] == size
    assert sidecar["kind"] == "call"
    assert sidecar["filename"] == "call_recording_abc-123@10.0.0.1.mp3"
    assert sidecar["content_type"] == "audio/mpeg"
    assert sidecar["received_at"] == "2024-03-01T12:00:00+00:00"
    assert sidecar["location"] == stored.location
    assert sidecar["metadata"]["fields"]["from"] == "alice@example.com"
    assert sidecar["metadata"]["start_iso"] == "2023-12-31T09:36:07+00:00"
    assert uploads(s3_bucket) == []


def test_date_falls_back_to_received_at(s3_bucket: Bucket, moto_endpoint: str) -> None:
    store = store_for(s3_bucket, moto_endpoint)
    store(make_recording(b"x", start=None, account_id=None))
    [key] = data_keys(s3_bucket)
    assert key.startswith("kazoo/call/unknown/2024/03/01/")


@pytest.mark.parametrize("size", [1000, 11 * MiB], ids=["small-put", "multipart"])
def test_retry_keeps_one_object_and_says_not_created(
    s3_bucket: Bucket, moto_endpoint: str, size: int,
) -> None:
    data = os.urandom(size)
    store = store_for(s3_bucket, moto_endpoint)
    first = store(make_recording(data))
    before = keys(s3_bucket)
    for _ in range(3):
        again = store(make_recording(data))
        assert again.created is False
        assert again.location == first.location
        assert again.sha256 == first.sha256
    assert keys(s3_bucket) == before
    assert uploads(s3_bucket) == []


def test_retry_from_another_host_is_found(s3_bucket: Bucket, moto_endpoint: str) -> None:
    """Two stores (two hosts) sharing a bucket and prefix, no state in common but S3."""
    data = os.urandom(2000)
    host_a = store_for(s3_bucket, moto_endpoint)
    host_b = store_for(s3_bucket, moto_endpoint)
    assert host_a(make_recording(data)).created is True
    assert host_b(make_recording(data)).created is False
    assert len(data_keys(s3_bucket)) == 1


@pytest.mark.parametrize("size", [1000, 11 * MiB], ids=["small-put", "multipart"])
def test_different_body_same_name_is_kept_beside(
    s3_bucket: Bucket, moto_endpoint: str, size: int,
) -> None:
    store = store_for(s3_bucket, moto_endpoint)
    one, two = os.urandom(size), os.urandom(size)
    a = store(make_recording(one))
    b = store(make_recording(two))
    assert a.created and b.created
    assert a.location != b.location
    assert sorted(get_bytes(s3_bucket, k) for k in data_keys(s3_bucket)) == sorted([one, two])


def test_same_name_other_recording_id_is_another_recording(
    s3_bucket: Bucket, moto_endpoint: str,
) -> None:
    store = store_for(s3_bucket, moto_endpoint)
    data = b"same bytes, two recordings"
    a = store(make_recording(data, recording_id="r1"))
    b = store(make_recording(data, recording_id="r2"))
    assert a.created and b.created and a.location != b.location
    assert len(data_keys(s3_bucket)) == 2


@pytest.mark.parametrize("cut_at", [3000, 9 * MiB + 5], ids=["small-put", "multipart"])
def test_body_cut_short_leaves_nothing(s3_bucket: Bucket, moto_endpoint: str, cut_at: int) -> None:
    store = store_for(s3_bucket, moto_endpoint)
    body = _Generated(20 * MiB, cut_at=cut_at)
    with pytest.raises(BodyIncomplete):
        store(make_recording(stream=body, content_length=20 * MiB))
    assert keys(s3_bucket) == []
    assert uploads(s3_bucket) == []


def test_body_too_large_leaves_nothing(s3_bucket: Bucket, moto_endpoint: str) -> None:
    store = store_for(s3_bucket, moto_endpoint)
    body = _Generated(20 * MiB)
    with pytest.raises(BodyTooLarge):
        # Chunked (no Content-Length): the limit is found only while streaming.
        store(make_recording(stream=body, content_length=None, max_size=12 * MiB))
    assert keys(s3_bucket) == []
    assert uploads(s3_bucket) == []


def test_s3_error_mid_upload_aborts_and_maps(s3_bucket: Bucket, moto_endpoint: str) -> None:
    """S3 refuses a part mid-upload: StoreUnavailable, and no upload is left behind."""
    client, bucket = s3_bucket
    store = store_for(s3_bucket, moto_endpoint, max_concurrency=1)

    class Sabotage(_Generated):
        def read(self, size: int | None = -1) -> bytes:
            if self.counter == 7:  # after the first part went, make S3 refuse the next
                real_upload = store.client.upload_part

                def refuse(**kw: Any) -> Any:
                    return real_upload(**{**kw, "UploadId": "no-such-upload"})

                store.client.upload_part = refuse  # type: ignore[method-assign]
            return super().read(size)

    with pytest.raises(StoreUnavailable):
        store(make_recording(stream=Sabotage(20 * MiB), content_length=20 * MiB))
    assert keys(s3_bucket) == []
    assert uploads(s3_bucket) == []


def test_unreachable_endpoint_is_store_unavailable(aws_env: dict[str, str]) -> None:
    # A port nothing listens on: connection refused at once.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = S3Store("rec", endpoint_url=f"http://127.0.0.1:{port}")
    with pytest.raises(StoreUnavailable):
        store(make_recording(b"data"))
    with pytest.raises(StoreUnavailable):
        store.open(Name(Kind.CALL, (), "call_recording_x.mp3"))


@pytest.fixture
def failing_endpoint() -> Iterator[str]:
    """An HTTP server on loopback that answers every request 503 (an S3 in trouble)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _fail(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            body = b"<Error><Code>ServiceUnavailable</Code><Message>down</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _fail

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_5xx_is_store_unavailable(aws_env: dict[str, str], failing_endpoint: str) -> None:
    store = S3Store("rec", endpoint_url=failing_endpoint)
    with pytest.raises(StoreUnavailable):
        store(make_recording(b"data"))
    with pytest.raises(StoreUnavailable):
        store(make_recording(os.urandom(9 * MiB)))


# -- names are data -----------------------------------------------------------------------


HOSTILE = [
    "../../etc/passwd",
    "..",
    "a/b",
    "a%2Fb",
    "%252e%252e",
    "back\\slash",
    '"quoted"<id>',
    "ünïcødé-☎",
    "x" * 1000,
]


@pytest.mark.parametrize("call_id", HOSTILE, ids=lambda s: s[:20])
def test_hostile_call_ids_stay_one_component(
    s3_bucket: Bucket, moto_endpoint: str, call_id: str,
) -> None:
    store = store_for(s3_bucket, moto_endpoint)
    data = os.urandom(100)
    rec = make_recording(data, call_id=call_id, segments=("..", "a/b"),
                         account_id="../acct")
    stored = store(rec)
    for key in keys(s3_bucket):
        assert key.startswith("kazoo/")
        segments = key.split("/")
        assert ".." not in segments and "." not in segments and "" not in segments
        assert len(key.encode()) <= 1024
    [key] = data_keys(s3_bucket)
    # The call id is one segment: the key has exactly the layout's depth.
    assert len(key.split("/")) == 7  # kazoo/call/<account>/yyyy/mm/dd/<leaf>
    f = store.open(rec.name, "rec-1")
    try:
        assert f.fileobj.read() == data
    finally:
        f.close()
    sidecar = json.loads(get_bytes(s3_bucket, key + ".kzr.json"))
    assert sidecar["call_id"] == call_id
    assert stored.location.endswith(key)


def test_two_call_ids_never_share_an_object(s3_bucket: Bucket, moto_endpoint: str) -> None:
    store = store_for(s3_bucket, moto_endpoint)
    a = store(make_recording(b"same", call_id="a/b"))
    b = store(make_recording(b"same", call_id="a%2Fb"))
    assert a.created and b.created and a.location != b.location


# -- reading ------------------------------------------------------------------------------


def test_open_reads_back_and_serves_ranges(s3_bucket: Bucket, moto_endpoint: str) -> None:
    store = store_for(s3_bucket, moto_endpoint)
    data = os.urandom(6 * MiB + 3)
    stored = store(make_recording(data))
    f = store.open(make_recording(b"").name)
    try:
        assert f.size == len(data)
        assert f.etag == stored.sha256
        assert f.content_type == "audio/mpeg"
        assert f.location == stored.location
        assert f.last_modified.tzinfo is not None
        assert f.fileobj.seekable()
        # A Range request: seek to its start, read its length.
        f.fileobj.seek(5 * MiB + 10)
        assert f.fileobj.read(100) == data[5 * MiB + 10: 5 * MiB + 110]
        f.fileobj.seek(-3, io.SEEK_END)
        assert f.fileobj.read() == data[-3:]
        f.fileobj.seek(0)
        assert f.fileobj.read() == data
    finally:
        f.close()


def test_open_picks_recording_id_else_latest(s3_bucket: Bucket, moto_endpoint: str) -> None:
    store = store_for(s3_bucket, moto_endpoint)

    def rec(data: bytes, rid: str, day: int) -> Recording:
        r = make_recording(data, recording_id=rid)
        r.received_at = datetime(2024, 3, day, tzinfo=timezone.utc)
        return r

    store(rec(b"first", "r1", 1))
    store(rec(b"third", "r1", 3))
    store(rec(b"second", "r2", 2))
    name = make_recording(b"").name

    def read(recording_id: str | None) -> bytes:
        f = store.open(name, recording_id)
        try:
            return bytes(f.fileobj.read())
        finally:
            f.close()

    assert read(None) == b"third"
    assert read("r2") == b"second"
    assert read("r1") == b"third"
    with pytest.raises(NotFound):
        store.open(name, "r9")


def test_open_missing_is_not_found(s3_bucket: Bucket, moto_endpoint: str) -> None:
    store = store_for(s3_bucket, moto_endpoint)
    with pytest.raises(NotFound):
        store.open(Name(Kind.CALL, (), "call_recording_nothing.mp3"))


def test_object_deleted_by_hand_is_not_found_then_stored_afresh(
    s3_bucket: Bucket, moto_endpoint: str,
) -> None:
    client, bucket = s3_bucket
    store = store_for(s3_bucket, moto_endpoint)
    rec = make_recording(b"payload")
    first = store(rec)
    key = first.location.split("/", 3)[3]
    client.delete_object(Bucket=bucket, Key=key)
    with pytest.raises(NotFound):
        store.open(rec.name)
    # The index still names the deleted object: the retry must store it again.
    again = store(make_recording(b"payload"))
    assert again.created is True
    assert again.location != first.location
    f = store.open(rec.name)
    try:
        assert f.fileobj.read() == b"payload"
    finally:
        f.close()
    assert store(make_recording(b"payload")).created is False


def test_attachment_segments_are_part_of_the_name(s3_bucket: Bucket, moto_endpoint: str) -> None:
    store = store_for(s3_bucket, moto_endpoint)

    def att(segments: tuple[str, ...], data: bytes) -> Recording:
        return make_recording(data, kind=Kind.ATTACHMENT, segments=segments,
                              filename="0123456789abcdef0123456789abcdef.mp3", recording_id=None)

    store(att(("acct", "owner"), b"one"))
    store(att(("acct", "other"), b"two"))
    f = store.open(att(("acct", "owner"), b"").name)
    try:
        assert f.fileobj.read() == b"one"
    finally:
        f.close()


# -- concurrency: several hosts, one bucket ------------------------------------------------


def _race(stores: list[S3Store], recordings: list[Recording]) -> list[Any]:
    barrier = threading.Barrier(len(recordings))
    results: list[Any] = [None] * len(recordings)

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[i] = stores[i % len(stores)](recordings[i])
        except Exception as exc:  # reported below, not swallowed
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(recordings))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return results


@pytest.mark.parametrize("size", [2000, 11 * MiB], ids=["small-put", "multipart"])
def test_same_recording_racing_at_many_hosts_leaves_one_object(
    s3_bucket: Bucket, moto_endpoint: str, size: int,
) -> None:
    data = os.urandom(size)
    stores = [store_for(s3_bucket, moto_endpoint) for _ in range(3)]
    results = _race(stores, [make_recording(data) for _ in range(6)])
    assert all(not isinstance(r, Exception) for r in results), results
    assert sum(r.created for r in results) == 1
    assert len({r.location for r in results}) == 1
    [key] = data_keys(s3_bucket)
    assert results[0].location.endswith(key)
    assert get_bytes(s3_bucket, key) == data
    # One sidecar beside it, one index entry: the losers removed theirs.
    assert len(keys(s3_bucket)) == 3
    assert uploads(s3_bucket) == []


def test_different_bodies_racing_under_one_name_are_all_kept(
    s3_bucket: Bucket, moto_endpoint: str,
) -> None:
    bodies = [os.urandom(3000) for _ in range(4)]
    stores = [store_for(s3_bucket, moto_endpoint) for _ in range(2)]
    results = _race(stores, [make_recording(b) for b in bodies])
    assert all(not isinstance(r, Exception) and r.created for r in results), results
    assert sorted(get_bytes(s3_bucket, k) for k in data_keys(s3_bucket)) == sorted(bodies)


def test_resent_commit_that_had_landed_keeps_the_object(
    s3_bucket: Bucket, moto_endpoint: str,
) -> None:
    """boto3 retries a conditional PUT whose first try landed: the 412 is our own entry."""
    store = store_for(s3_bucket, moto_endpoint)
    real_put = store.client.put_object

    def put_twice(**kw: Any) -> Any:
        if kw.get("IfNoneMatch") == "*":
            real_put(**kw)  # the first try lands, its answer is lost...
        return real_put(**kw)  # ...and the resent one finds the entry there: 412

    store.client.put_object = put_twice  # type: ignore[method-assign]
    stored = store(make_recording(b"payload"))
    assert stored.created is True
    [key] = data_keys(s3_bucket)
    assert stored.location.endswith(key)
    assert get_bytes(s3_bucket, key) == b"payload"


@pytest.mark.parametrize("size", [1000, 11 * MiB], ids=["small-put", "multipart"])
def test_failed_sidecar_write_leaves_nothing(
    s3_bucket: Bucket, moto_endpoint: str, size: int,
) -> None:
    store = store_for(s3_bucket, moto_endpoint)
    real_put = store.client.put_object

    def sidecar_refused(**kw: Any) -> Any:
        if kw["Key"].endswith(".kzr.json"):
            kw["Bucket"] = "kzr-no-such-bucket"  # S3 answers NoSuchBucket
        return real_put(**kw)

    store.client.put_object = sidecar_refused  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        store(make_recording(os.urandom(size)))
    assert keys(s3_bucket) == []
    assert uploads(s3_bucket) == []


def test_discard_takes_back_a_committed_copy(s3_bucket: Bucket, moto_endpoint: str) -> None:
    """What a fan-out's rollback needs: gone, and a retry stores it afresh."""
    store = store_for(s3_bucket, moto_endpoint)
    store(make_recording(b"other body"))  # same name, another body: must stay
    before = keys(s3_bucket)
    stored = store(make_recording(b"payload"))
    assert len(keys(s3_bucket)) == len(before) + 3  # object, sidecar, index entry
    store.discard(stored)
    assert keys(s3_bucket) == before
    again = store(make_recording(b"payload"))
    assert again.created is True
    f = store.open(make_recording(b"").name)
    try:
        assert f.fileobj.read() == b"payload"
    finally:
        f.close()


# -- orphans ------------------------------------------------------------------------------


def test_sweep_aborts_unfinished_uploads_under_prefix_only(
    s3_bucket: Bucket, moto_endpoint: str,
) -> None:
    client, bucket = s3_bucket
    store = store_for(s3_bucket, moto_endpoint)
    # What a killed process leaves: an upload started, never completed nor aborted.
    ours = client.create_multipart_upload(Bucket=bucket, Key="kazoo/call/x/orphan.mp3")
    client.upload_part(Bucket=bucket, Key="kazoo/call/x/orphan.mp3",
                       UploadId=ours["UploadId"], PartNumber=1, Body=b"x" * 100)
    client.create_multipart_upload(Bucket=bucket, Key="other-app/big.bin")
    # moto reports every upload as started in 2010: none is younger than a century.
    assert store.sweep_incomplete(older_than=timedelta(days=365 * 100)) == 0
    assert store.sweep_incomplete(older_than=timedelta(0)) == 1
    assert [u["Key"] for u in uploads(s3_bucket)] == ["other-app/big.bin"]


def test_lifecycle_rule_is_accepted_by_the_s3_api(s3_bucket: Bucket, moto_endpoint: str) -> None:
    client, bucket = s3_bucket
    rule = store_for(s3_bucket, moto_endpoint).lifecycle_rule(days=2)
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [rule]})
    [back] = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert back["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 2}
    assert back["Filter"] == {"Prefix": "kazoo/"}


# -- configuration ------------------------------------------------------------------------


def test_from_url(aws_env: dict[str, str]) -> None:
    store = S3Store.from_url("s3://rec/kazoo/eu", endpoint_url="http://127.0.0.1:1")
    assert (store.bucket, store.prefix) == ("rec", "kazoo/eu/")
    assert S3Store.from_url("s3://rec", endpoint_url="http://127.0.0.1:1").prefix == ""
    for bad in ("http://rec/x", "s3:///x", "s3://rec/x?y=1"):
        with pytest.raises(ValueError):
            S3Store.from_url(bad)
    with pytest.raises(ValueError):
        S3Store("rec", "a/../b", endpoint_url="http://127.0.0.1:1")
    with pytest.raises(ValueError):
        S3Store("rec", part_size=MiB, endpoint_url="http://127.0.0.1:1")


# -- memory -------------------------------------------------------------------------------


def test_300_mib_upload_keeps_memory_bounded(s3_bucket: Bucket, moto_endpoint: str) -> None:
    """The moto server is another process: only this process's RSS is measured."""
    size = 300 * MiB
    store = S3Store(s3_bucket[1], "kazoo/", endpoint_url=moto_endpoint)  # default 8 MiB parts
    body = _Generated(size)
    proc = psutil.Process()
    baseline = proc.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            done.wait(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        stored = store(make_recording(stream=body, content_length=size))
    finally:
        done.set()
        sampler.join(timeout=10)
    growth = peak - baseline
    print(f"\n300 MiB upload: RSS baseline {baseline / MiB:.1f} MiB, "
          f"peak {peak / MiB:.1f} MiB, growth {growth / MiB:.1f} MiB")
    assert stored.size == size
    assert stored.sha256 == body.sha.hexdigest()
    assert growth < 100 * 1000 * 1000
    # Byte-identical: hash what S3 holds, streaming it back.
    f = store.open(make_recording(b"").name)
    try:
        sha = hashlib.sha256()
        for block in iter(lambda: f.fileobj.read(MiB), b""):
            sha.update(block)
    finally:
        f.close()
    assert sha.hexdigest() == stored.sha256
