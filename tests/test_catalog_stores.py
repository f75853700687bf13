"""The stores write catalog rows: after the commit, before returning; repaired after a kill."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import pytest
from test_directory_store import make

from kzr_wsgi.catalog import ROOT_CATALOG, WRITE_FAILURES, Catalog, Query, open_catalog
from kzr_wsgi.stores import DirectoryStore, FanOut

pytest_plugins = ["s3server"]


def rows(catalog: Catalog) -> list[Any]:
    return catalog.search(Query(limit=100, self_test=True)).items


def test_directory_store_catalogues_each_new_copy_once(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    assert (tmp_path / ROOT_CATALOG).is_file()
    first = store(make(b"one", "c1", query=[("account_id", "acc1"), ("from", "1001@r")]))
    again = store(make(b"one", "c1", query=[("account_id", "acc1"), ("from", "1001@r")]))
    other = store(make(b"two", "c1"))  # a second body under the same name
    assert first.created and not again.created and other.created
    assert store.catalog is not None
    found = rows(store.catalog)
    assert sorted(r.location for r in found) == sorted([first.location, other.location])
    row = store.catalog.search(Query(number="1001")).items[0]
    assert row.account_id == "acc1" and row.sha256 == first.sha256
    assert not list((tmp_path / ".kzr" / "pending").iterdir())
    assert not (tmp_path / ".kzr" / "uncatalogued").exists()  # one marker per upload
    # records() yields the same sidecars, with their locations.
    records = list(store.records())
    assert sorted(r["location"] for r in records) == sorted([first.location, other.location])


def test_catalog_none_keeps_no_catalog(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path, catalog=None)
    store(make(b"one", "c1"))
    assert not (tmp_path / ROOT_CATALOG).exists()


def test_a_broken_catalog_never_fails_the_upload(tmp_path: Path) -> None:
    # No upkeep thread: its passes would retry the marker left below every few seconds,
    # counting and logging failures into this test's count and into later tests.
    store = DirectoryStore(tmp_path, upkeep_every=None)
    assert store.catalog is not None
    conn = store.catalog.backend.connect()
    conn.execute("DROP TABLE kzr_recordings")
    conn.close()
    before = WRITE_FAILURES.count
    stored = store(make(b"one", "c1"))
    assert stored.created and Path(stored.location).read_bytes() == b"one"
    assert WRITE_FAILURES.count == before + 1
    # The marker stays: the next start-up writes the row once the catalog is back.
    assert len(list((tmp_path / ".kzr" / "pending").iterdir())) == 1


class _DiesBeforeTheRow(DirectoryStore):
    def _catalogue(self, final: Path) -> bool:
        os._exit(0)  # killed between the commit and the row


def _store_then_die(root: str) -> None:
    _DiesBeforeTheRow(root)(make(b"killed", "ck"))


def test_a_kill_between_commit_and_row_is_repaired_at_start_up(tmp_path: Path) -> None:
    DirectoryStore(tmp_path)  # the catalog exists
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            _store_then_die(str(tmp_path))
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    pending = tmp_path / ".kzr" / "pending"
    assert len(list(pending.iterdir())) == 1
    assert Catalog.for_root(tmp_path).count() == 0
    # Markers a store from before left in its second directory are still read: one for
    # an upload that never committed is dropped; a live writer's is kept.
    legacy = tmp_path / ".kzr" / "uncatalogued"
    legacy.mkdir()
    # A copy committed by a store from before that died before its row: its marker
    # names the index entry.
    old = DirectoryStore(tmp_path, catalog=None, upkeep_every=None)(make(b"old", "co"))
    index = tmp_path / ".kzr" / "index"
    (entry,) = [p for p in index.glob("*/*.json") if old.sha256 in p.name]
    (legacy / "old.json").write_text(entry.relative_to(index).as_posix())
    (legacy / "nothing.json").write_text("ab/no-such-entry.json")
    live = legacy / "live.json"
    live.write_text("ab/another.json")
    holder = os.open(live, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        store = DirectoryStore(tmp_path)
        store.preflight()  # start-up
    finally:
        os.close(holder)
    assert store.catalog is not None
    assert sorted(r.call_id for r in rows(store.catalog)) == ["ck", "co"]
    assert list(pending.iterdir()) == []
    assert [p.name for p in legacy.iterdir()] == ["live.json"]


@pytest.mark.slow
def test_s3_store_catalogues_new_copies_and_lists_its_records(
        s3_bucket: tuple[Any, str], tmp_path: Path) -> None:
    from kzr_wsgi.stores.s3 import S3Store

    client, bucket = s3_bucket
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    store = S3Store(bucket, "p", client=client, catalog=catalog)
    first = store(make(b"one", "c1", query=[("account_id", "acc1")]))
    again = store(make(b"one", "c1", query=[("account_id", "acc1")]))
    assert first.created and not again.created
    found = rows(catalog)
    assert [r.location for r in found] == [first.location]
    assert found[0].account_id == "acc1"
    assert [r["location"] for r in store.records()] == [first.location]
    # In a fan-out with an explicit catalog, the bucket writes it; the disk keeps none.
    disk = DirectoryStore(tmp_path / "disk", catalog=None)
    FanOut(store, disk)(make(b"two", "c2"))
    assert sorted(r.call_id or "" for r in rows(catalog)) == ["c1", "c2"]


def test_a_fan_out_rolled_back_leaves_no_row(tmp_path: Path) -> None:
    from kzr_wsgi.errors import StoreUnavailable
    from kzr_wsgi.recording import Recording, Stored

    def refuses(recording: Recording) -> Stored:
        while recording.stream.read(1 << 20):
            pass
        raise StoreUnavailable("refused at the end")

    disk = DirectoryStore(tmp_path)
    with pytest.raises(StoreUnavailable):
        FanOut(disk, refuses)(make(b"one", "c1"))
    assert disk.catalog is not None and rows(disk.catalog) == []
    assert list(disk.records()) == []


def test_a_postgresql_catalog_out_of_reach_never_holds_an_upload_up(tmp_path: Path) -> None:
    import time

    from servers import free_port

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing-listens"
    store = DirectoryStore(tmp_path, catalog=open_catalog(url, connect_now=False),
                           upkeep_every=None)
    before = WRITE_FAILURES.count
    started = time.monotonic()
    for i in range(3):
        assert store(make(b"body%d" % i, f"c{i}")).created
    assert time.monotonic() - started < 5
    assert WRITE_FAILURES.count == before + 3
    # Each copy's marker stays for the repair once the database answers again.
    assert len(list((tmp_path / ".kzr" / "pending").iterdir())) == 3


@pytest.mark.slow
def test_s3_reindex_inspects_legacy_sidecars_and_verify_finds_a_missing_object(
        s3_bucket: tuple[Any, str], tmp_path: Path) -> None:
    import json

    from audio_samples import freeswitch_mp3

    from kzr_wsgi.catalog.reindex import reindex
    from kzr_wsgi.housekeeping.verify import verify
    from kzr_wsgi.stores.s3 import S3Store

    client, bucket = s3_bucket
    store = S3Store(bucket, "p", client=client)
    ten = store(make(freeswitch_mp3(10.0), "ten"))
    store(make(b"<html>502</html>", "html"))
    for record in store.records():  # as sidecars from before inspection
        del record["audio"]
        assert store.rewrite_record(record)
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    result = reindex(store, catalog)
    assert (result.rows, result.inspected) == (2, 2)
    flags = {r.call_id: r.flags for r in rows(catalog)}
    assert flags == {"ten": (), "html": ("not_audio",)}
    key = ten.location.removeprefix(f"s3://{bucket}/")
    sidecar = json.loads(client.get_object(Bucket=bucket, Key=key + ".kzr.json")["Body"].read())
    assert sidecar["audio"]["format"] == "mp3"
    entries = [r for r in store.records() if r["key"] == key]
    assert entries[0]["audio"] == sidecar["audio"]  # the index entry too
    client.delete_object(Bucket=bucket, Key=key)
    report = verify(store)
    assert (report.checked, report.missing, report.changed, report.flagged) == (2, 1, 0, 1)
    assert not report.ok


class _RecoversDuringTheRow(DirectoryStore):
    """While writing its row, opens the root again (another process's start-up would)."""

    seen: list[list[str]] = []

    def _catalogue(self, final: Path) -> bool:
        DirectoryStore(self.root, upkeep_every=None).preflight()  # its recovery runs here
        self.seen.append(sorted(p.name for p in (self.root / ".kzr" / "pending").iterdir()))
        return super()._catalogue(final)


def test_one_marker_per_upload_held_until_its_row_is_written(tmp_path: Path) -> None:
    store = _RecoversDuringTheRow(tmp_path, upkeep_every=None)
    stored = store(make(b"one", "c1"))
    # During the row: the upload's one marker, still held, so the other store's recovery
    # left it alone (and wrote no row of its own).
    (during,) = _RecoversDuringTheRow.seen
    assert len(during) == 1 and during[0].endswith(stored.sha256 + ".json")
    # After: no marker at all, and one row.
    assert list((tmp_path / ".kzr" / "pending").iterdir()) == []
    assert store.catalog is not None
    assert [r.location for r in rows(store.catalog)] == [stored.location]
