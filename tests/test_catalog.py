"""The catalog's Python API, the same cases on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kzr_wsgi.audio import AudioInfo
from kzr_wsgi.catalog import (
    WRITE_FAILURES,
    Catalog,
    Query,
    open_catalog,
    parse_when,
    row_from_record,
    row_id,
)
from kzr_wsgi.catalog.backends.sqlite import SQLiteBackend
from kzr_wsgi.catalog.connections import Connections
from kzr_wsgi.catalog.migrations import migrate
from kzr_wsgi.catalog.schema import MIGRATIONS, VERSION_TABLE
from kzr_wsgi.metadata import GREGORIAN_OFFSET

pytest_plugins = ["pgserver"]

T0 = datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc)


def sidecar(call_id: str, *, sha: str | None = None, start: datetime | None = T0,
            received: datetime = T0, recording_id: str | None = None,
            kind: str = "call", segments: tuple[str, ...] = (), fields: dict[str, Any] | None
            = None, flags: tuple[str, ...] | None = (), document: Any = None,
            self_test: bool = False, filename: str | None = None) -> dict[str, Any]:
    """A sidecar dict as the stores write it (only what the catalog reads)."""
    f: dict[str, Any] = dict(fields or {})
    if start is not None:
        f["start"] = str(int(start.timestamp()) + GREGORIAN_OFFSET)
    if recording_id is not None:
        f["recording_id"] = recording_id
    audio = None if flags is None else AudioInfo("mp3", 1000, 16000, 2, 64, flags).to_json()
    name = filename if filename is not None else (
        f"call_recording_{call_id}.mp3" if kind == "call" else f"{call_id}.mp3")
    return {
        "kind": kind, "call_id": call_id if kind != "attachment" else None,
        "filename": name, "segments": list(segments), "recording_id": recording_id,
        "received_at": received.isoformat(), "size": 10, "sha256": sha or "0" * 64,
        "content_type": "audio/mpeg", "location": f"/srv/rec/{call_id}.mp3",
        "metadata": {"fields": f}, "audio": audio, "self_test": self_test,
        "document": document,
    }


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    """An empty catalog of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    else:
        url = request.getfixturevalue("pg_url")
    cat = open_catalog(url)
    try:
        yield cat
    finally:
        cat.close()


def ids(page_items: list[Any]) -> list[str | None]:
    return [r.call_id for r in page_items]


def find(catalog: Catalog, **kw: Any) -> list[str | None]:
    return ids(catalog.search(Query(**kw)).items)


def test_a_row_holds_the_sidecar_fields_and_round_trips(catalog: Catalog) -> None:
    rec = sidecar("c1", recording_id="r1", flags=("truncated",), fields={
        "from": "1001@a.example", "to": "+15555550100@a.example", "caller_id_name": "Alice",
        "caller_id_number": "1001", "account_id": "acc1", "owner_id": "own1",
        "duration_ms": "5000"})
    added = catalog.add(rec)
    got = catalog.get(added.id)
    assert got is not None and got.seq > 0
    # Read back, it carries its analysis job, queued in the row's own transaction.
    assert added.analysis is None
    assert got.to_json() == {**added.to_json(), "analysis": {
        "state": "pending", "attempts": 0, "channels": None, "speakers": {}, "talk_ms": {},
        "longest_silence_ms": None, "flags": [], "reason": None, "error": None}}
    doc = got.to_json()
    assert list(doc) == ["id", "kind", "call_id", "recording_id", "account_id", "owner_id",
                         "from", "to", "caller_id_name", "caller_id_number", "start",
                         "duration_ms", "received_at", "size", "sha256", "content_type",
                         "location", "segments", "filename", "audio", "self_test", "analysis",
                         "transcript"]
    assert doc["start"] == "2026-01-31T12:00:00+00:00"
    assert doc["duration_ms"] == 5000 and doc["account_id"] == "acc1"
    assert doc["audio"]["flags"] == ["truncated"]
    assert got.id == row_id(rec)
    assert catalog.remove(got.id) is True
    assert catalog.remove(got.id) is False
    assert catalog.get(got.id) is None


def test_adding_again_is_one_row_and_a_second_body_is_another(catalog: Catalog) -> None:
    first = catalog.add(sidecar("c1", recording_id="r1"))
    seq = catalog.get(first.id).seq  # type: ignore[union-attr]
    catalog.add(sidecar("c1", recording_id="r1"))  # a retry: same name, rid, body
    assert catalog.count() == 1
    assert catalog.get(first.id).seq == seq  # type: ignore[union-attr]
    catalog.add(sidecar("c1", recording_id="r1", sha="1" * 64))  # another body
    catalog.add(sidecar("c1", recording_id="r2"))  # another recording of the call
    assert catalog.count() == 3


def test_order_is_start_else_received_then_id(catalog: Catalog) -> None:
    catalog.add(sidecar("old", start=T0 - timedelta(days=2)))
    catalog.add(sidecar("nostart", start=None, received=T0 - timedelta(days=1)))
    catalog.add(sidecar("new", start=T0))
    catalog.add(sidecar("tie-a", start=T0 - timedelta(hours=1)))
    catalog.add(sidecar("tie-b", start=T0 - timedelta(hours=1)))
    got = catalog.search(Query()).items
    assert [r.call_id for r in got][:1] == ["new"]
    assert [r.call_id for r in got][3:] == ["nostart", "old"]
    ties = got[1:3]
    assert ties[0].id > ties[1].id


def test_number_matches_from_to_and_caller_id_with_or_without_realm(catalog: Catalog) -> None:
    catalog.add(sidecar("a", fields={"from": "1001@x.example", "to": "2002@x.example"}))
    catalog.add(sidecar("b", fields={"to": "1001"}))
    catalog.add(sidecar("c", fields={"caller_id_number": "1001@y"}))
    catalog.add(sidecar("d", fields={"from": "10011@x.example"}))
    assert sorted(find(catalog, number="1001")) == ["a", "b", "c"]  # type: ignore[type-var]
    assert sorted(find(catalog, number="1001@other")) == ["a", "b", "c"]  # type: ignore
    assert find(catalog, number="2002") == ["a"]
    assert find(catalog, number="100") == []


def test_call_id_account_scope_and_kinds(catalog: Catalog) -> None:
    catalog.add(sidecar("a", fields={"account_id": "acc1"}))
    catalog.add(sidecar("b", fields={"account_id": "acc2"}))
    catalog.add(sidecar("c"))
    catalog.add(sidecar("att", kind="attachment", segments=("acc3", "doc"),
                        document={"pvt_account_id": "acc3"}, filename="vm.mp3"))
    assert find(catalog, call_id="a") == ["a"]
    assert find(catalog, account_id="acc2") == ["b"]
    assert sorted(find(catalog, scope=("acc1", "acc2"))) == ["a", "b"]  # type: ignore
    assert find(catalog, scope=()) == []
    assert len(find(catalog)) == 4
    att = catalog.search(Query(kinds=("attachment",))).items
    assert [r.account_id for r in att] == ["acc3"]
    assert len(find(catalog, kinds=("call",))) == 3


def test_account_is_never_guessed_from_the_url(catalog: Catalog) -> None:
    catalog.add(sidecar("a", segments=("acc-in-path",)))
    catalog.add(sidecar("att", kind="attachment", segments=("acc-in-path", "doc"),
                        filename="vm.mp3", document={"name": "no account here"}))
    assert {r.account_id for r in catalog.search(Query()).items} == {None}


def test_since_until_and_a_bare_until_date_takes_the_whole_day(catalog: Catalog) -> None:
    day = datetime(2026, 1, 31, tzinfo=timezone.utc)
    catalog.add(sidecar("before", start=day - timedelta(microseconds=1)))
    catalog.add(sidecar("midnight", start=day))
    catalog.add(sidecar("late", start=day + timedelta(hours=23, minutes=59, seconds=59)))
    catalog.add(sidecar("next", start=day + timedelta(days=1)))
    catalog.add(sidecar("received-only", start=None, received=day + timedelta(hours=5)))
    got = find(catalog, since=parse_when("2026-01-31"), until=parse_when("2026-01-31",
                                                                          end=True))
    assert got == ["late", "received-only", "midnight"]
    assert find(catalog, until=parse_when("2026-01-31T00:00:00Z")) == ["midnight", "before"]
    assert find(catalog, since=parse_when("2026-02-01")) == ["next"]


def test_flags_are_or_flagged_is_any_and_uninspected_is_never_flagged(catalog: Catalog) -> None:
    catalog.add(sidecar("empty", flags=("empty",)))
    catalog.add(sidecar("trunc", flags=("truncated", "silent")))
    catalog.add(sidecar("short", flags=("shorter_than_reported",)))
    catalog.add(sidecar("clean", flags=()))
    catalog.add(sidecar("uninspected", flags=None))
    assert sorted(find(catalog, flags=("empty", "silent"))) == ["empty", "trunc"]  # type: ignore
    assert find(catalog, flags=("truncated",)) == ["trunc"]
    assert sorted(find(catalog, flagged=True)) == ["empty", "short", "trunc"]  # type: ignore
    assert find(catalog, flags=("not_audio",)) == []
    with pytest.raises(ValueError):
        Query(flags=("loud",))


def test_self_test_uploads_are_hidden_unless_asked(catalog: Catalog) -> None:
    catalog.add(sidecar("kzr-check-123"))
    catalog.add(sidecar("flagged-by-sidecar", self_test=True))
    catalog.add(sidecar("real"))
    assert find(catalog) == ["real"]
    assert len(find(catalog, self_test=True)) == 3
    assert catalog.count() == 1 and catalog.count(Query(self_test=True)) == 3


@pytest.mark.parametrize("common", [False, True], ids=["rare-prefix", "common-prefix"])
def test_q_finds_call_id_number_or_a_name_prefix_in_any_case(
        catalog: Catalog, common: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if common:
        # Any prefix counts as common: the page walks the order's index instead.
        monkeypatch.setattr("kzr_wsgi.catalog.facade.COMMON_PREFIX", 1)
    catalog.add(sidecar("abc", fields={"caller_id_name": "Émilie Durand"}))
    catalog.add(sidecar("def", fields={"from": "+15555550100@r", "caller_id_name": "BOB"}))
    catalog.add(sidecar("ghi", fields={"caller_id_name": "Bobby"}))
    assert find(catalog, q="abc") == ["abc"]
    assert find(catalog, q="+15555550100") == ["def"]
    assert sorted(find(catalog, q="bob")) == ["def", "ghi"]  # type: ignore[type-var]
    assert find(catalog, q="émi") == ["abc"]
    assert find(catalog, q="Durand") == []  # a prefix, not a substring


@pytest.mark.parametrize("q", ["9ff3078fcc1b0c3e-7@pbx", "+15555550100", "bob"],
                         ids=["call-id", "number", "name"])
def test_q_is_answered_by_one_index_per_branch_never_a_walk_of_every_row(
        tmp_path: Path, q: str) -> None:
    """SQLite's plan for ``q``: each branch of the OR through its own index.

    (A constant false branch, written once for a q that is no number, made SQLite walk
    the whole table in date order instead: 3 s a search at a million rows.)
    """
    from kzr_wsgi.catalog import Query
    from kzr_wsgi.catalog.search import select_page

    catalog = Catalog.for_root(tmp_path)
    sql, params = select_page(Query(q=q), None)
    conn = sqlite3.connect(tmp_path / ".kzr" / "catalog.sqlite3")
    try:
        plan = [str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    finally:
        conn.close()
        catalog.close()
    assert "MULTI-INDEX OR" in plan, plan
    assert not [step for step in plan if step.startswith("SCAN")], plan
    assert any("kzr_rec_call (call_id=?)" in step for step in plan), plan


def test_keyset_pages_cover_every_row_once_and_a_snapshot_holds(catalog: Catalog) -> None:
    for i in range(23):
        # Some share a start: ties are broken by id across page boundaries too.
        catalog.add(sidecar(f"c{i:02d}", start=T0 - timedelta(minutes=i // 3)))
    seen: list[str] = []
    query: Query | None = Query(limit=5)
    pages = 0
    while query is not None:
        page = catalog.search(query)
        seen += [r.id for r in page.items]
        pages += 1
        if pages == 2:
            # Rows arriving meanwhile (newer and older) do not shift the pages.
            catalog.add(sidecar("late-new", start=T0 + timedelta(days=1)))
            catalog.add(sidecar("late-old", start=T0 - timedelta(days=1)))
        query = page.next
    assert pages == 5
    everything = [r.id for r in catalog.search(Query(limit=100)).items]
    assert seen == [i for i in everything if i not in (
        row_id(sidecar("late-new")), row_id(sidecar("late-old")))]
    assert len(set(seen)) == 23


def test_received_since_compares_the_time_received(catalog: Catalog) -> None:
    catalog.add(sidecar("old", start=T0, received=T0 - timedelta(days=3)))
    catalog.add(sidecar("fresh", start=T0 - timedelta(days=9), received=T0))
    assert find(catalog, received_since=T0 - timedelta(days=1)) == ["fresh"]


def test_untrusted_text_is_stored_whatever_its_bytes(catalog: Catalog) -> None:
    odd = "x\udcff\x00'; DROP TABLE kzr_recordings; --"
    row = catalog.add(sidecar(odd, fields={"caller_id_name": odd, "from": odd}))
    got = catalog.get(row.id)
    assert got is not None and got.call_id == "x\ufffd\ufffd'; DROP TABLE kzr_recordings; --"
    assert find(catalog, call_id=odd) == [got.call_id]
    assert catalog.count() == 1


def test_opening_again_migrates_nothing_and_the_version_is_recorded(
        catalog: Catalog) -> None:
    catalog.add(sidecar("a"))
    again = open_catalog(catalog.backend.url)
    try:
        assert again.count() == 1
        conn = again.backend.connect()
        try:
            cur = conn.cursor()
            cur.execute("SELECT version FROM kzr_schema_version")
            assert cur.fetchall() == [(len(MIGRATIONS),)]
        finally:
            conn.close()
    finally:
        again.close()


def test_each_thread_has_its_own_connection_until_dropped_or_closed(tmp_path: Path) -> None:
    connections = Connections(SQLiteBackend(tmp_path / "c.sqlite3"))
    mine = connections.get()
    assert connections.get() is mine
    theirs: list[Any] = []
    worker = threading.Thread(target=lambda: theirs.append(connections.get()))
    worker.start()
    worker.join()
    assert len(theirs) == 1 and theirs[0] is not mine
    connections.drop()  # this thread's only: closed, and a new one on the next use
    with pytest.raises(sqlite3.ProgrammingError):
        mine.execute("SELECT 1")
    again = connections.get()
    assert again is not mine and again.execute("SELECT 1").fetchone() == (1,)
    connections.close()  # every thread's
    for conn in (again, theirs[0]):
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")


def test_migrating_twice_changes_nothing_and_a_newer_schema_is_refused(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "c.sqlite3")
    migrate(backend)
    migrate(backend)
    conn = backend.connect()
    try:
        assert conn.execute(f"SELECT version FROM {VERSION_TABLE}").fetchall() == [
            (len(MIGRATIONS),)]
        conn.execute(f"UPDATE {VERSION_TABLE} SET version = {len(MIGRATIONS) + 1}")
    finally:
        conn.close()
    with pytest.raises(RuntimeError, match="newer than this kzr_wsgi knows"):
        migrate(backend)
    with pytest.raises(RuntimeError, match="upgrade kzr_wsgi"):
        Catalog(backend)


def _child_adds(url: str, queue: Any) -> None:
    try:
        from kzr_wsgi.catalog import open_catalog as reopen  # noqa: F401 - same module

        cat = _SHARED[url]
        cat.add(sidecar(f"from-child-{os.getpid()}"))
        queue.put(cat.count())
    except BaseException as exc:  # pragma: no cover - reported to the parent
        queue.put(repr(exc))


_SHARED: dict[str, Catalog] = {}


def test_a_forked_child_never_uses_its_parents_connection(catalog: Catalog) -> None:
    catalog.add(sidecar("parent"))  # the parent now holds a connection
    _SHARED[catalog.backend.url] = catalog
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    children = [ctx.Process(target=_child_adds, args=(catalog.backend.url, queue))
                for _ in range(2)]
    for child in children:
        child.start()
    results = [queue.get(timeout=30) for _ in children]
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    assert all(isinstance(r, int) for r in results), results
    # The parent's own connection still works after its children exited.
    catalog.add(sidecar("parent-again"))
    assert catalog.count() == 4


@pytest.mark.slow
def test_postgres_reconnects_after_its_session_is_killed(pg_url: str) -> None:
    cat = open_catalog(pg_url)
    try:
        cat.add(sidecar("a"))
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'kzr_wsgi'")
        cat.add(sidecar("b"))
        assert cat.count() == 2
    finally:
        cat.close()


def test_a_failed_write_is_counted_and_never_raised(tmp_path: Path) -> None:
    cat = Catalog.for_root(tmp_path)
    seen: list[BaseException] = []
    WRITE_FAILURES.hooks.append(seen.append)
    before = WRITE_FAILURES.count
    try:
        (tmp_path / ".kzr" / "catalog.sqlite3").chmod(0o444)
        os.chmod(tmp_path / ".kzr", 0o555)
        cat.close()
        if os.geteuid() == 0:
            # root writes read-only files: break the catalog another way.
            conn = cat.backend.connect()
            conn.execute("DROP TABLE kzr_recordings")
            conn.close()
        assert cat.add_stored(sidecar("a")) is None
    finally:
        WRITE_FAILURES.hooks.remove(seen.append)
        os.chmod(tmp_path / ".kzr", 0o755)
    assert WRITE_FAILURES.count == before + 1 and len(seen) == 1


def test_row_id_and_parse_when() -> None:
    rec = sidecar("a", recording_id="r")
    assert row_id(rec) == row_id(json.loads(json.dumps(rec)))
    assert row_id(rec) != row_id(sidecar("a", recording_id="r2"))
    assert row_id(rec) != row_id(sidecar("a", recording_id="r", sha="f" * 64))
    assert row_id(rec) != row_id({**rec, "segments": ["x"]})
    assert parse_when("2026-01-31") == datetime(2026, 1, 31, tzinfo=timezone.utc)
    assert parse_when("2026-01-31", end=True) == datetime(
        2026, 1, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
    assert parse_when("2026-01-31T10:00:00") == datetime(2026, 1, 31, 10, tzinfo=timezone.utc)
    assert parse_when("2026-01-31T10:00:00Z", end=True).hour == 10
    with pytest.raises(ValueError):
        parse_when("last tuesday")
    row = row_from_record(sidecar("kzr-check-1"))
    assert row.self_test is True
