"""``kzr-wsgi erase`` on a bucket with versioning (moto) beside a disk, with a PostgreSQL
catalog: every version goes, Object Lock is a refusal, and two hosts with their own disk
copies beside one catalog both apply an erasure."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from erase_world import (
    OTHERS,
    SECRET_NAME,
    SECRET_WORD,
    SPECS,
    TARGETS,
    fill,
    kzr,
    listed,
    never_in,
    share_recordings,
)
from servers import serve

from kzr_wsgi.building import build_store, catalog_of
from kzr_wsgi.catalog import Query, open_catalog
from kzr_wsgi.catalog.schema import ERASURE_HOSTS

pytest_plugins = ["s3server", "pgserver"]

ERASE = ["erase", "--number", "+1 415 555 0123", "--country", "US", "--request", "GDPR-7"]


def make_bucket(endpoint: str, **kwargs: Any) -> tuple[Any, str]:
    client = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1")
    name = f"kzr-erase-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name, **kwargs)
    return client, name


def every_version(client: Any, bucket: str) -> list[dict[str, Any]]:
    found = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        found += [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
    return found


def drop_bucket(client: Any, bucket: str) -> None:
    for version in every_version(client, bucket):
        client.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"],
                             BypassGovernanceRetention=True)
    client.delete_bucket(Bucket=bucket)


@pytest.fixture
def versioned(moto_endpoint: str, aws_env: dict[str, str]) -> Iterator[tuple[Any, str]]:
    client, bucket = make_bucket(moto_endpoint)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    yield client, bucket
    drop_bucket(client, bucket)


@pytest.mark.slow
def test_both_stores_with_postgresql_every_version_goes(
        tmp_path: Path, versioned: tuple[Any, str], moto_endpoint: str, pg_url: str) -> None:
    client, bucket = versioned
    url = f"s3://{bucket}/kz"
    store, _ = build_store(str(tmp_path / "rec"), True, url, moto_endpoint, pg_url)
    catalog = catalog_of(store)
    assert catalog is not None
    ids = fill(store, catalog)
    where = ["--root", str(tmp_path / "rec"), "--s3", url, "--s3-endpoint", moto_endpoint,
             "--catalog", pg_url]
    assert listed(where, "--number", "+14155550123", "--country", "US") == TARGETS
    done = kzr(*ERASE, *where, "--receipt", str(tmp_path / "receipt.json"))
    assert done.returncode == 0, done.stderr
    assert listed(where) == OTHERS
    assert listed(where, "--text", SECRET_WORD) == set()
    assert share_recordings(catalog) == {ids["o-london"]}
    for part in store.parts():
        assert {str(r["call_id"]) for r in part.records()} == OTHERS, part
    versions = every_version(client, bucket)
    keys = {v["Key"] for v in versions}
    for spec in SPECS:
        assert any(spec.call_id in k for k in keys) == (spec.call_id in OTHERS), spec.call_id
    # No version of any object (recordings, sidecars, companions, index entries, the
    # state: journal, tombstones, audit trail) holds the number, the name or the word.
    for version in versions:
        if "Size" not in version:
            continue  # a delete marker has no body
        got = client.get_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
        never_in(got["Body"].read(), "4155550123", "415 555 0123", SECRET_NAME, SECRET_WORD,
                 where=version["Key"])
    rows = catalog.fetch("SELECT count(*) FROM kzr_segments WHERE words LIKE :w",
                         {"w": f"%{SECRET_WORD}%"})
    assert rows[0][0] == 0
    verify = kzr("verify", *where)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    catalog.close()


@pytest.mark.slow
def test_object_lock_is_a_refusal_before_anything_is_deleted(
        tmp_path: Path, moto_endpoint: str, aws_env: dict[str, str], pg_url: str) -> None:
    client, bucket = make_bucket(moto_endpoint, ObjectLockEnabledForBucket=True)
    try:
        url = f"s3://{bucket}/kz"
        store, _ = build_store(str(tmp_path / "rec"), False, url, moto_endpoint, pg_url)
        catalog = catalog_of(store)
        assert catalog is not None
        fill(store, catalog)
        catalog.close()
        where = ["--s3", url, "--s3-endpoint", moto_endpoint, "--catalog", pg_url]
        before = sorted((v["Key"], v["VersionId"]) for v in every_version(client, bucket))
        refused = kzr(*ERASE, *where)
        assert refused.returncode == 1, refused.stderr
        assert "Object Lock" in refused.stderr and "nothing was erased" in refused.stderr
        assert sorted((v["Key"], v["VersionId"]) for v in every_version(client, bucket)) \
            == before
        assert listed(where) == TARGETS | OTHERS
    finally:
        drop_bucket(client, bucket)


@pytest.mark.slow
def test_two_hosts_with_disk_copies_and_one_catalog(tmp_path: Path, pg_url: str) -> None:
    roots = [tmp_path / "host-a", tmp_path / "host-b"]
    stores = [build_store(str(r), True, None, None, pg_url)[0] for r in roots]
    ids = {}
    for n, store in enumerate(stores):
        catalog = catalog_of(store)
        assert catalog is not None
        ids = fill(store, catalog, shares=n == 0)  # the same recordings: the same ids
        catalog.close()
    shared = open_catalog(pg_url)
    try:
        # Host B serves: a job of its own applies erasures to its disk.
        with serve(tmp_path, "--catalog", pg_url, "--no-analyze", root=roots[1]) as server:
            deadline = time.monotonic() + 60
            while not any(str(roots[1]) in str(h) for (h,) in shared.select(
                    f"SELECT host FROM {ERASURE_HOSTS} WHERE reference = '*'", {})):
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.5)
            done = kzr(*ERASE, "--root", str(roots[0]), "--catalog", pg_url, "--wait", "90s",
                       "--receipt", str(tmp_path / "receipt.json"))
            assert done.returncode == 0, done.stderr + server.log()
            status = kzr("erase", "--root", str(roots[0]), "--catalog", pg_url,
                         "--status", "GDPR-7")
            assert status.returncode == 0, status.stdout + status.stderr
            said = [line for line in status.stdout.splitlines() if line.startswith("done")]
            assert len(said) == 2 and any(str(roots[1]) in line for line in said)
        assert json.loads((tmp_path / "receipt.json").read_text())["pending"] == []
        for root in roots:
            store = build_store(str(root), True, None, None, pg_url)[0]
            assert {str(r["call_id"]) for r in store.parts()[0].records()} == OTHERS, root
            assert not [p for p in root.rglob("*t-sip*")], root
        assert {r.id for r in shared.iter_search(Query(self_test=True))} == {
            ids[c] for c in OTHERS}
        unknown = kzr("erase", "--root", str(roots[0]), "--catalog", pg_url, "--status", "NO")
        assert unknown.returncode == 1 and "no erasure" in unknown.stderr
    finally:
        shared.close()
