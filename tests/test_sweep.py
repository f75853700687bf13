"""S3 leftovers and ``kzr-wsgi sweep``; ``serve --s3`` failing fast at start-up.

Against moto in server mode (tests/s3server.py). A host killed between completing an
object and writing its index entry is made with the store's crash points
(:mod:`kzr_wsgi.faults`): ``serve`` runs with ``KZR_CRASH_AT=s3.completed`` (or
``s3.sidecar``) and its worker dies there, unanswered.
"""

from __future__ import annotations

import http.client
import logging
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
import test_s3_serve
from kazoo import httpc_put
from servers import free_port
from test_s3_serve import (
    BUCKET,
    PREFIX,
    S3_URL,
    all_keys,
    assert_consistent,
    inventory,
    query_4x,
    serve_s3,
    uploads,
)

from kzr_wsgi.errors import StoreUnavailable
from kzr_wsgi.faults import CRASH_AT_ENV
from kzr_wsgi.housekeeping.housekeeper import Housekeeper, jobs_for, lease_for
from kzr_wsgi.housekeeping.sweep import UNINDEXED_MIN_AGE, LeftoverKind, sweep_s3
from kzr_wsgi.naming import ANALYSIS_SUFFIX, PEAKS_SUFFIX, SIDECAR_SUFFIX
from kzr_wsgi.stores import DirectoryStore, FanOut
from kzr_wsgi.stores.s3 import S3Store

pytest_plugins = ["s3server"]
#: The bucket ``rec`` on the moto server, emptied after each test.
rec = test_s3_serve.rec

H = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
LATER = timedelta(minutes=11)  # past the 10-minute floor


def _hex() -> str:
    return os.urandom(8).hex()


def unanswered(port: int, target: str, body: bytes) -> bool:
    """Upload once; whether the server hung up without an answer (its worker died)."""
    try:
        reply = httpc_put(H, port, target, body)
    except (OSError, http.client.HTTPException):
        return True
    raise AssertionError(f"answered {reply.status}")


def kzr(*args: str, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m kzr_wsgi ARGS`` with dummy AWS credentials; its output."""
    from s3server import DUMMY_AWS_ENV  # here: importing it at the top defeats pytest's rewrite

    full = {k: v for k, v in os.environ.items() if not k.startswith("KZR_")}
    full.update(DUMMY_AWS_ENV)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "kzr_wsgi", *args], capture_output=True,
                          text=True, timeout=timeout, env=full, cwd=REPO, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["s3.completed", "s3.sidecar"])
def test_host_killed_before_its_index_entry_leaves_an_object_sweep_removes_alone(
    rec: Any, moto_endpoint: str, tmp_path: Path, point: str,
) -> None:
    # What must survive any sweep: an acknowledged recording, objects outside the
    # prefix, an object inside it that kzr_wsgi did not write, and an unfinished
    # upload outside the prefix.
    kept_cid = _hex()
    with serve_s3(tmp_path, moto_endpoint, name="first") as srv:
        kept = f"/call_recording_{kept_cid}.mp3?" + query_4x(kept_cid, "r-kept")
        assert httpc_put(H, srv.port, kept, b"acknowledged" * 1000).status == 201
    rec.put_object(Bucket=BUCKET, Key="other/call_recording_x.mp3", Body=b"not ours")
    rec.put_object(Bucket=BUCKET, Key=PREFIX + "README.txt", Body=b"an operator's note")
    outside = rec.create_multipart_upload(Bucket=BUCKET, Key="other/big.mp3")["UploadId"]
    # A host killed between completing its object and writing the index entry ...
    cid = _hex()
    target = f"/call_recording_{cid}.mp3?" + query_4x(cid, "r-dies")
    body = os.urandom(300_000)
    with serve_s3(tmp_path, moto_endpoint, name="dies", env={CRASH_AT_ENV: point}) as srv:
        assert unanswered(srv.port, target, body)
    # ... and one killed mid-upload (an unfinished upload under the prefix; made after
    # that serve, whose housekeeper sweeps at start, and moto dates uploads to 2010).
    rec.create_multipart_upload(Bucket=BUCKET, Key=PREFIX + "call/a/2024/01/01/x~t.mp3")
    [orphan] = [k for k in all_keys(rec) if cid in k and not k.endswith(SIDECAR_SUFFIX)]
    assert not inventory(rec).entries_of_call(cid)  # never indexed
    with_sidecar = point == "s3.sidecar"
    assert (orphan + SIDECAR_SUFFIX in all_keys(rec)) is with_sidecar
    before = set(all_keys(rec))

    store = S3Store.from_url(S3_URL, endpoint_url=moto_endpoint)
    # Now: the unfinished upload goes (moto dates uploads to 2010); the object is
    # younger than 10 minutes, so it stays whatever the age says.
    swept = list(sweep_s3(store, timedelta(0)))
    assert [(left.what, gone) for left, gone in swept] == [(LeftoverKind.UPLOAD, True)]
    assert set(all_keys(rec)) == before
    # Ten minutes on, it is still younger than the default age of a day ...
    later = datetime.now(timezone.utc) + LATER
    assert list(sweep_s3(store, timedelta(days=1), now=later)) == []
    # ... and with 0s it goes (with its sidecar), and nothing else does.
    swept = list(sweep_s3(store, timedelta(0), now=later))
    assert [(left.what, left.key, left.sidecar, gone) for left, gone in swept] == [
        (LeftoverKind.OBJECT, orphan, with_sidecar, True)]
    assert set(all_keys(rec)) == before - {orphan, orphan + SIDECAR_SUFFIX}
    assert [u["UploadId"] for u in uploads(rec)] == [outside]
    # What is left is consistent (strays: only the two objects that are not ours), and
    # Kazoo's retry of the unanswered upload stores it: one object, one entry.
    inv = inventory(rec)
    assert sorted(inv.strays) == ["kazoo/README.txt", "other/call_recording_x.mp3"]
    with serve_s3(tmp_path, moto_endpoint, name="retry") as srv:
        assert httpc_put(H, srv.port, target, body).status == 201
    inv = inventory(rec)
    assert len(inv.of_call(cid)) == 1 and len(inv.entries_of_call(cid)) == 1
    # A second sweep finds nothing more.
    assert list(sweep_s3(store, timedelta(0), now=datetime.now(timezone.utc) + LATER)) == []
    rec.abort_multipart_upload(Bucket=BUCKET, Key="other/big.mp3", UploadId=outside)
    for key in ("other/call_recording_x.mp3", PREFIX + "README.txt"):
        rec.delete_object(Bucket=BUCKET, Key=key)


def test_lone_sidecar_is_swept_and_an_indexed_object_never(
    rec: Any, moto_endpoint: str, aws_env: dict[str, str],
) -> None:
    store = S3Store.from_url(S3_URL, endpoint_url=moto_endpoint)
    from test_directory_store import make

    stored = store(make(b"kept" * 100, call_id="kept"))
    key = stored.location.removeprefix(f"s3://{BUCKET}/")
    # A surplus copy whose host died after deleting the object but not its sidecar.
    lone = store(make(b"gone" * 100, call_id="gone"))
    lone_key = lone.location.removeprefix(f"s3://{BUCKET}/")
    entry = [k for k in all_keys(rec) if k.startswith(PREFIX + ".kzr/index/")
             and inventory(rec).entries[k]["key"] == lone_key]
    rec.delete_object(Bucket=BUCKET, Key=entry[0])
    rec.delete_object(Bucket=BUCKET, Key=lone_key)
    later = datetime.now(timezone.utc) + LATER
    found = [(left.what, left.key) for left, _ in sweep_s3(store, timedelta(0), dry_run=True,
                                                          now=later)]
    assert found == [(LeftoverKind.SIDECAR, lone_key + SIDECAR_SUFFIX)]
    assert lone_key + SIDECAR_SUFFIX in all_keys(rec)  # a dry run removes nothing
    assert [gone for _, gone in sweep_s3(store, timedelta(0), now=later)] == [True]
    assert key in all_keys(rec) and key + SIDECAR_SUFFIX in all_keys(rec)
    assert_consistent(inventory(rec))
    assert timedelta(minutes=10) == UNINDEXED_MIN_AGE


@pytest.mark.slow
def test_sweep_command_reports_and_removes_unfinished_uploads(
    rec: Any, moto_endpoint: str,
) -> None:
    rec.create_multipart_upload(Bucket=BUCKET, Key=PREFIX + "call/a/x~t.mp3")
    rec.create_multipart_upload(Bucket=BUCKET, Key="other/y.mp3")
    args = ["sweep", "--s3", S3_URL, "--s3-endpoint", moto_endpoint, "--older-than", "1d"]
    dry = kzr(*args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0].startswith(
        f"would remove unfinished upload s3://{BUCKET}/{PREFIX}call/a/x~t.mp3 (started ")
    assert "1 leftover(s) in s3://rec/kazoo/, none removed (dry run)" in dry.stdout
    assert len(uploads(rec)) == 2
    done = kzr(*args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("removed unfinished upload s3://rec/kazoo/call/a/x~t.mp3")
    assert [u["Key"] for u in uploads(rec)] == ["other/y.mp3"]
    again = kzr(*args[:-1], "0s")
    assert again.stdout.strip() == "nothing to sweep in s3://rec/kazoo/ older than 0s"
    bad = kzr(*args[:-1], "1.5d")
    assert bad.returncode == 2 and "is not an age" in bad.stderr
    no_s3 = kzr("sweep", "--root", "/nonexistent")
    assert no_s3.returncode == 2 and "sweep works on a bucket" in no_s3.stderr
    for upload in uploads(rec):
        rec.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])


# -- the housekeeper sweeps by itself -------------------------------------------------------


def test_housekeeper_sweeps_each_s3_store_daily(
    rec: Any, moto_endpoint: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    store = S3Store.from_url(S3_URL, endpoint_url=moto_endpoint)
    disk = DirectoryStore(tmp_path / "recordings")
    assert jobs_for(disk, None) == []  # a disk store sweeps itself, in every process
    [job] = jobs_for(store, None)
    assert (job.name, job.every) == ("sweep", timedelta(days=1))
    [in_fanout] = jobs_for(FanOut(store, disk), None)
    assert in_fanout.name == "sweep"
    # moto dates uploads to 2010: older than the default age of a day.
    rec.create_multipart_upload(Bucket=BUCKET, Key=PREFIX + "call/a/x~t.mp3")
    rec.create_multipart_upload(Bucket=BUCKET, Key="other/y.mp3")
    keeper = Housekeeper([job], lease_for(store))
    other = Housekeeper([in_fanout], lease_for(store))
    [line] = keeper.run_once()
    with caplog.at_level(logging.INFO, logger="kzr_wsgi.housekeeper"):
        assert other.run_once() == []  # one housekeeper per bucket: the other stands by
    assert "housekeeper: standing by: another process holds the lease" in caplog.text
    assert line.startswith("housekeeper: sweep: 1 leftover(s) in s3://rec/kazoo/, 1 removed in ")
    assert [u["Key"] for u in uploads(rec)] == ["other/y.mp3"]
    assert all_keys(rec, lease=True) == [PREFIX + ".kzr/housekeeper.lease"]
    assert keeper.run_once() == []  # not due again for a day
    keeper.stop()
    assert all_keys(rec, lease=True) == []  # the lease is given up
    rec.abort_multipart_upload(Bucket=BUCKET, Key="other/y.mp3",
                               UploadId=uploads(rec)[0]["UploadId"])


@pytest.mark.slow
def test_serve_s3_sweeps_at_start(rec: Any, moto_endpoint: str, tmp_path: Path) -> None:
    rec.create_multipart_upload(Bucket=BUCKET, Key=PREFIX + "call/a/x~t.mp3")
    with serve_s3(tmp_path, moto_endpoint) as srv:
        deadline = time.monotonic() + 30
        while uploads(rec):
            assert time.monotonic() < deadline, srv.log()
            time.sleep(0.2)
    assert all_keys(rec, lease=True) == []  # stopped: the lease is given up


# -- serve --s3 fails fast --------------------------------------------------------------------


def serve_exits(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    """Run ``serve ARGS`` expecting it to exit before listening; status, output, seconds."""
    port = free_port()
    started = time.monotonic()
    done = kzr("serve", "--host", H, "--port", str(port), *args, env=env, timeout=90)
    return done.returncode, done.stderr, time.monotonic() - started


def test_serve_refuses_a_missing_bucket_naming_it(moto_endpoint: str, aws_env: Any) -> None:
    status, err, _ = serve_exits("--s3", "s3://no-such-bucket-kzr/kazoo",
                                 "--s3-endpoint", moto_endpoint)
    assert status == 1
    assert "no such bucket: 'no-such-bucket-kzr'" in err, err
    assert "listening" not in err


@pytest.mark.slow
def test_serve_refuses_an_endpoint_that_does_not_answer() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    status, err, seconds = serve_exits("--s3", "s3://rec/kazoo", "--s3-endpoint", endpoint)
    assert status == 1
    assert f"no answer from the S3 endpoint {endpoint}" in err, err
    assert seconds < 60


@pytest.mark.slow
def test_serve_refuses_a_bucket_it_may_not_write(tmp_path: Path) -> None:
    from s3server import moto_server

    # A moto server that checks credentials against its IAM after three requests: the
    # bucket, a user with no policy, and the user's key.
    with moto_server(env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"}) as endpoint:
        admin = {"endpoint_url": endpoint, "region_name": "us-east-1",
                 "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        boto3.client("s3", **admin).create_bucket(Bucket="locked")
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        env = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
               "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"], "AWS_SESSION_TOKEN": ""}
        status, err, _ = serve_exits("--s3", "s3://locked/kazoo", "--s3-endpoint", endpoint,
                                     env=env)
    assert status == 1
    assert "no permission to write to s3://locked/kazoo/ (AccessDenied 403" in err, err


class _IgnoresConditions:
    """A client for a server that ignores If-None-Match: the header never reaches it."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def put_object(self, **kwargs: Any) -> Any:
        kwargs.pop("IfNoneMatch", None)
        return self._client.put_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_preflight_warns_of_a_bucket_that_ignores_conditional_writes(
    rec: Any, moto_endpoint: str,
) -> None:
    honest = S3Store(BUCKET, PREFIX, endpoint_url=moto_endpoint)
    assert honest.preflight() == []
    ignoring = S3Store(BUCKET, PREFIX, client=_IgnoresConditions(honest.client))  # type: ignore[arg-type]
    [warning] = ignoring.preflight()
    assert warning.startswith("s3://rec ignores conditional writes (If-None-Match)")
    assert all_keys(rec) == []  # the probe is gone
    with pytest.raises(StoreUnavailable, match="no such bucket: 'nope'"):
        S3Store("nope", PREFIX, endpoint_url=moto_endpoint).preflight()


@pytest.mark.slow
def test_serve_warns_of_an_unreachable_catalog_and_stores_all_the_same(tmp_path: Path) -> None:
    from servers import serve

    catalog = f"postgresql://kzr@127.0.0.1:{free_port()}/kzr"  # nobody listens there
    with serve(tmp_path, "--catalog", catalog) as srv:
        log = srv.log()
        # Once, on one line, after the line naming the catalog.
        assert log.count("WARNING: the catalog cannot be reached (") == 1, log
        warning = next(line for line in log.splitlines() if "cannot be reached (" in line)
        assert "`kzr-wsgi reindex` adds the ones missed" in warning
        assert log.index(f"kzr-wsgi: catalog: {catalog}") < log.index(warning)
        assert httpc_put(H, srv.port, "/call_recording_nocat.mp3", b"ID3" * 1000).status == 201
    stored = [p for p in (tmp_path / "recordings").rglob("call_recording_nocat.mp3")]
    assert len(stored) == 1 and stored[0].read_bytes() == b"ID3" * 1000


def test_companions_of_an_indexed_recording_stay_and_lone_ones_go(
    rec: Any, moto_endpoint: str, aws_env: dict[str, str],
) -> None:
    store = S3Store.from_url(S3_URL, endpoint_url=moto_endpoint)
    from test_directory_store import make

    kept = store(make(b"kept" * 100, call_id="kept"))
    gone = store(make(b"gone" * 100, call_id="gone"))
    records = {r["call_id"]: r for r in store.records()}
    beside = {ANALYSIS_SUFFIX: b"{}", PEAKS_SUFFIX: b"{}"}
    for call_id in ("kept", "gone"):
        assert store.put_companions(records[call_id], beside)
    kept_key = kept.location.removeprefix(f"s3://{BUCKET}/")
    gone_key = gone.location.removeprefix(f"s3://{BUCKET}/")
    # A worker killed between writing and looking again, as "gone" was removed: its
    # entry, object and sidecar went, its files beside it stayed.
    for key in [k for k in all_keys(rec) if k.startswith(PREFIX + ".kzr/index/")
                and inventory(rec).entries[k]["key"] == gone_key]:
        rec.delete_object(Bucket=BUCKET, Key=key)
    rec.delete_object(Bucket=BUCKET, Key=gone_key)
    rec.delete_object(Bucket=BUCKET, Key=gone_key + SIDECAR_SUFFIX)
    # Not before they are ten minutes old, whatever the age asked for.
    assert list(sweep_s3(store, timedelta(0))) == []
    later = datetime.now(timezone.utc) + LATER
    found = sorted((left.what, left.key) for left, _ in sweep_s3(
        store, timedelta(0), dry_run=True, now=later))
    assert found == [(LeftoverKind.COMPANION, gone_key + suffix)
                     for suffix in sorted(beside)]
    assert [gone for _, gone in sweep_s3(store, timedelta(0), now=later)] == [True, True]
    left = inventory(rec)
    assert_consistent(left)
    assert left.companions == {kept_key: sorted(beside)}


class _RemovedWhileWriting:
    """An S3 client that removes a recording's index entry as its first companion is
    written: a prune racing the write."""

    def __init__(self, client: Any, entry_key: str) -> None:
        self._client, self._entry_key = client, entry_key

    def put_object(self, **kwargs: Any) -> Any:
        if kwargs["Key"].endswith(ANALYSIS_SUFFIX):
            self._client.delete_object(Bucket=kwargs["Bucket"], Key=self._entry_key)
        return self._client.put_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_companion_written_as_its_recording_is_removed_is_taken_back(
    rec: Any, moto_endpoint: str, aws_env: dict[str, str],
) -> None:
    store = S3Store.from_url(S3_URL, endpoint_url=moto_endpoint)
    from test_directory_store import make

    stored = store(make(b"race" * 100, call_id="race"))
    [record] = list(store.records())
    [entry_key] = [k for k in all_keys(rec) if k.startswith(PREFIX + ".kzr/index/")]
    racing = S3Store.from_url(S3_URL, client=_RemovedWhileWriting(store.client, entry_key))
    assert racing.put_companions(record, {ANALYSIS_SUFFIX: b"{}", PEAKS_SUFFIX: b"{}"}) is False
    key = stored.location.removeprefix(f"s3://{BUCKET}/")
    assert [k for k in all_keys(rec) if k.startswith(key + ".kzr.")] == [key + SIDECAR_SUFFIX]
