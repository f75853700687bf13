"""The store contract (:mod:`kzr_wsgi.stores.base`): its table, what mypy checks and what
each built-in store does agree, and each store is driven through the protocols alone.

The disk store on a temporary root, the S3 store on moto's server, and a fan-out of both.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
from pathlib import Path
from typing import Any

import pytest
from test_directory_store import make

from kzr_wsgi.catalog import Catalog
from kzr_wsgi.errors import NotFound
from kzr_wsgi.naming import ANALYSIS_SUFFIX, PEAKS_SUFFIX, TRANSCRIPT_SUFFIX
from kzr_wsgi.recording import Stream
from kzr_wsgi.stores import DirectoryStore, FanOut, base
from kzr_wsgi.stores.s3 import S3Store
from kzr_wsgi.stores.state import DiskState, S3State

#: The moto server fixtures (``moto_endpoint``, ``aws_env``, ``s3_bucket``) live there.
pytest_plugins = ["s3server"]

#: The table's columns, and the parameter of ``_implemented`` that stands for each.
COLUMNS = {"DirectoryStore": "disk", "S3Store": "bucket", "FanOut": "both"}


def table() -> dict[str, dict[str, bool]]:
    """The module docstring's table: protocol -> store class -> implemented."""
    rows: dict[str, dict[str, bool]] = {}
    for line in (base.__doc__ or "").splitlines():
        found = re.fullmatch(r":class:`(\w+)`\s+(yes|no)\s+(yes|no)\s+(yes|no)", line.strip())
        if found:
            name, *cells = found.groups()
            rows[name] = {store: cell == "yes" for store, cell in zip(COLUMNS, cells, strict=True)}
    return rows


def checked_by_mypy() -> set[tuple[str, str]]:
    """``(protocol, parameter)`` for each assignment in ``_implemented`` (what mypy checks)."""
    tree = ast.parse(inspect.getsource(base))
    [function] = [node for node in ast.walk(tree)
                  if isinstance(node, ast.FunctionDef) and node.name == "_implemented"]
    declared: dict[str, str] = {}
    pairs = set()
    for node in function.body:
        if isinstance(node, ast.AnnAssign):
            assert isinstance(node.target, ast.Name) and isinstance(node.annotation, ast.Name)
            declared[node.target.id] = node.annotation.id
            assert isinstance(node.value, ast.Name)
            pairs.add((node.annotation.id, node.value.id))
        elif isinstance(node, ast.Assign):
            [target] = node.targets
            assert isinstance(target, ast.Name) and isinstance(node.value, ast.Name)
            pairs.add((declared[target.id], node.value.id))
    return pairs


@pytest.fixture
def bucket_store(s3_bucket: tuple[Any, str], moto_endpoint: str) -> S3Store:
    _, bucket = s3_bucket
    return S3Store(bucket, "kazoo/", endpoint_url=moto_endpoint)


def test_the_table_mypy_and_each_store_agree(tmp_path: Path, bucket_store: S3Store) -> None:
    rows = table()
    assert set(rows) == set(base.__all__), "every protocol has its row, and only those"
    expected = {(name, COLUMNS[store]) for name, row in rows.items()
                for store, implemented in row.items() if implemented}
    assert checked_by_mypy() == expected
    disk = DirectoryStore(tmp_path / "disk", catalog=None)
    stores = {"DirectoryStore": disk, "S3Store": bucket_store,
              "FanOut": FanOut(bucket_store, disk)}
    for name, row in rows.items():
        protocol = getattr(base, name)
        for store, implemented in row.items():
            assert isinstance(stores[store], protocol) is implemented, (name, store)


def read_all(stream: Stream) -> bytes:
    data = stream.read()
    close = getattr(stream, "close", None)  # a file, or botocore's body
    if close is not None:
        close()
    return data


def exercise(store: base.CopyStore, *, shared: bool) -> None:
    """One copy stored, opened every way, listed, rewritten and removed: protocols only."""
    assert isinstance(store.preflight(), list)
    body = os.urandom(20_000)
    recording = make(body, "contract@pbx")
    stored = store(recording)
    assert stored is not None and stored.created and stored.size == len(body)
    assert store(make(body, "contract@pbx")).created is False  # a retry finds it
    # Open a stored copy: by name, by location, by record.
    named = store.open(recording.name)
    try:
        assert named.fileobj.read() == body and named.location == stored.location
    finally:
        named.close()
    at = store.open_stored(stored.location, stored.sha256)
    try:
        assert at.fileobj.read() == body and at.etag.strip('"') == stored.sha256
    finally:
        at.close()
    # List what is held.
    [record] = list(store.records())
    assert record["location"] == stored.location and record["sha256"] == stored.sha256
    assert read_all(store.open_copy(record)) == body
    assert store.owns(stored.location) and not store.owns("/nowhere/else.mp3")
    assert store.count_hint() in (None, 1)
    # Files beside the copy (its analysis, its waveform): part of it, never a copy.
    beside = {ANALYSIS_SUFFIX: b'{"flags": []}', PEAKS_SUFFIX: b'{"rate": 10}'}
    assert store.put_companions(record, beside)
    assert store.get_companion(record, PEAKS_SUFFIX) == b'{"rate": 10}'
    assert store.put_companions(record, {PEAKS_SUFFIX: b'{"rate": 10, "again": 1}'})
    assert store.get_companion(record, PEAKS_SUFFIX) == b'{"rate": 10, "again": 1}'
    with pytest.raises(NotFound):
        store.get_companion(record, TRANSCRIPT_SUFFIX)
    assert [r["location"] for r in store.records()] == [stored.location]
    assert store.count_hint() in (None, 1)
    for suffix in beside:
        with pytest.raises(NotFound):  # never served as a recording
            store.open_stored(stored.location + suffix)
    with pytest.raises(ValueError):
        store.put_companions(record, {".kzr.json": b"{}"})
    # Rewrite its record, then remove it in the crash-safe order.
    assert store.rewrite_record({**record, "note": "rewritten"})
    [record] = list(store.records())
    assert record["note"] == "rewritten"
    steps: list[str] = []
    with store.index_lock(record):
        assert store.indexes(record)
        assert store.remove(record, unindexed=lambda: steps.append("unindexed"), locked=True)
    assert steps == ["unindexed"]
    assert not store.indexes(record) and list(store.records()) == []
    with pytest.raises(NotFound):
        store.open_stored(stored.location)
    assert store.remove(record) is False  # again: nothing left to do
    # The companions went with it, and none is written beside a removed copy.
    with pytest.raises(NotFound):
        store.get_companion(record, ANALYSIS_SUFFIX)
    assert store.put_companions(record, beside) is False
    # Take back a copy just committed.
    again = store(make(body, "contract@pbx"))
    assert again is not None and again.created
    assert store.put_companions(record, beside)
    store.discard(again)
    assert list(store.records()) == []
    assert store.put_companions(record, beside) is False
    # Where its state lives, and what it is made of.
    place = store.state()
    assert place.shared is shared
    place.write("contract/one.json", b"{}")
    assert place.read("contract/one.json") == b"{}"
    assert [name for name, _ in place.list("contract")] == ["contract/one.json"]
    assert store.parts() == (store,)
    assert store.buckets() == ((store,) if shared else ())


def test_the_disk_store_through_the_contract(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "rec")
    exercise(store, shared=False)
    # Nothing of the removed copies is left on the disk, companions included.
    left = [p.name for p in (tmp_path / "rec").rglob("*")
            if p.is_file() and ".kzr" not in p.relative_to(tmp_path / "rec").parts]
    assert left == []
    assert isinstance(store.state(), DiskState)
    assert isinstance(store.catalog, Catalog)  # its own SQLite catalog beside it


def test_the_s3_store_through_the_contract(bucket_store: S3Store) -> None:
    exercise(bucket_store, shared=True)
    listed = bucket_store.client.list_objects_v2(Bucket=bucket_store.bucket, Prefix="kazoo/")
    left = [o["Key"] for o in listed.get("Contents", []) if "/.kzr/" not in o["Key"]]
    assert left == []
    assert isinstance(bucket_store.state(), S3State)
    assert bucket_store.catalog is None  # none unless given one


def test_a_fan_out_answers_from_its_parts(tmp_path: Path, bucket_store: S3Store) -> None:
    disk = DirectoryStore(tmp_path / "rec")
    both = FanOut(bucket_store, FanOut(disk))  # a nested fan-out's parts count too
    assert both.parts() == (bucket_store, disk)
    assert both.buckets() == (bucket_store,)
    assert both.state() == bucket_store.state()  # every host shares the bucket's
    assert FanOut(disk).state() == disk.state()
    assert both.catalog is disk.catalog  # the first part that writes one
    assert both.preflight() == bucket_store.preflight() + disk.preflight()
    body = os.urandom(5_000)
    stored = both(make(body, "fan@pbx"))
    assert stored is not None and stored.created
    for part in both.parts():
        [record] = list(part.records())
        assert read_all(both.open_copy(record)) == body
        opened = both.open_stored(record["location"])
        try:
            assert opened.fileobj.read() == body
        finally:
            opened.close()
    with pytest.raises(NotFound):
        both.open_copy({"location": "s3://another/bucket/x.mp3"})
    # Files beside the copy go to every store that holds it.
    [record] = list(bucket_store.records())
    assert both.put_companions(record, {PEAKS_SUFFIX: b"[1]"})
    for part in both.parts():
        assert part.get_companion(record, PEAKS_SUFFIX) == b"[1]"
    assert both.get_companion(record, PEAKS_SUFFIX) == b"[1]"


def test_a_handler_of_ones_own_is_none_of_the_stores(tmp_path: Path) -> None:
    # Any callable can be mounted; only what it has makes it one of the protocols.
    def handler(recording: object) -> None:
        return None

    assert isinstance(handler, base.UploadStore)
    for name in set(base.__all__) - {"UploadStore"}:
        assert not isinstance(handler, getattr(base, name)), name
    # A fan-out over it serves what its stores can, and nothing they cannot.
    disk = DirectoryStore(tmp_path / "rec", catalog=None)
    assert FanOut(handler, disk).parts() == (disk,)


def test_the_state_a_store_names_is_where_holds_and_the_audit_trail_go(
        tmp_path: Path) -> None:
    # housekeeping asks the store, never its class: the older entry point agrees.
    from kzr_wsgi.housekeeping.state import state_for

    disk = DirectoryStore(tmp_path / "rec", catalog=None)
    assert state_for(disk) == disk.state() == DiskState(tmp_path / "rec" / ".kzr")
