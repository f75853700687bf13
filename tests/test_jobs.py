"""The queue in the catalog (kzr_wsgi.catalog.jobs): the same cases on SQLite and on a real
PostgreSQL. Jobs written with their rows, claimed one worker each, leases that end, backoff,
attempts that run out, repair and backfill, and the analysis's flags in searches.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from test_catalog import sidecar

from kzr_wsgi.catalog import Catalog, Query, open_catalog, row_from_record, row_id
from kzr_wsgi.catalog.analysis import JobState, Origin, Restored
from kzr_wsgi.catalog.codec import write_params
from kzr_wsgi.catalog.jobs import JobQueue, now_us
from kzr_wsgi.catalog.schema import MIGRATIONS, TABLE, statements

pytest_plugins = ["pgserver"]

SECOND = 1_000_000
ONE_WAY = {"channel_names": ["left", "right"], "talk_ms": {"left": 9000, "right": 0},
           "longest_silence_ms": 700, "flags": ["one_way_audio"], "duration_ms": 12000}
FACT = {"channel_names": ["mono"], "talk_ms": {"mono": 4000}, "longest_silence_ms": 41000,
        "flags": ["dead_air"], "duration_ms": 50000}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'c.sqlite3'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def catalog(url: str) -> Iterator[Catalog]:
    cat = open_catalog(url)
    try:
        yield cat
    finally:
        cat.close()


def add(catalog: Catalog, *call_ids: str, **kw: Any) -> list[str]:
    return [catalog.add(sidecar(c, sha=f"{i:064x}", **kw)).id
            for i, c in enumerate(call_ids, start=1)]


def state(catalog: Catalog, rid: str) -> dict[str, Any]:
    row = catalog.get(rid)
    assert row is not None and row.analysis is not None
    return row.analysis.to_json()


def test_each_row_gets_its_job_in_its_own_transaction(catalog: Catalog) -> None:
    [a] = add(catalog, "a")
    assert state(catalog, a)["state"] == "pending"
    catalog.add(sidecar("a", sha=f"{1:064x}"))  # a retry: the same row, the same job
    assert catalog.jobs.counts()[("analyse", "pending")] == 1
    [t] = add(catalog, "kzr-check-1", self_test=True)
    skipped = state(catalog, t)
    assert (skipped["state"], skipped["reason"]) == ("skipped", "self_test")
    catalog.pipeline = False  # serve --no-analyze: the row alone, no job wanted
    [off] = add(catalog, "off")
    got = catalog.get(off)
    assert got is not None and got.analysis is None and got.to_json()["analysis"] is None


def test_a_claim_takes_the_oldest_due_job_counts_an_attempt_and_leases_it(
        catalog: Catalog) -> None:
    a, b = add(catalog, "a", "b")
    queue = catalog.jobs
    first = queue.claim("w1", lease=60, max_attempts=5)
    second = queue.claim("w2", lease=60, max_attempts=5)
    assert first is not None and second is not None
    assert {first.row_id, second.row_id} == {a, b} and first.attempts == 1
    assert queue.claim("w3", lease=60, max_attempts=5) is None  # both leased
    assert queue.counts()[("analyse", "running")] == 2
    assert queue.finish(first, ONE_WAY, {".kzr.analysis.json": "0" * 64}, "fp")
    assert not queue.finish(first, ONE_WAY, {}, "fp")  # not ours any more
    done = state(catalog, first.row_id)
    assert done["state"] == "done" and done["attempts"] == 1
    assert done["flags"] == ["one_way_audio"] and done["channels"] == 2
    assert done["speakers"] == {"left": "caller", "right": "callee"}
    assert queue.skip(second, "not_audio")
    assert state(catalog, second.row_id)["reason"] == "not_audio"


def test_a_dead_workers_job_is_taken_again_when_its_lease_ends(catalog: Catalog) -> None:
    [a] = add(catalog, "a")
    queue = catalog.jobs
    t0 = now_us()
    dead = queue.claim("dead", lease=10, max_attempts=5, now=t0)
    assert dead is not None
    assert queue.claim("w2", lease=10, max_attempts=5, now=t0 + 9 * SECOND) is None
    again = queue.claim("w2", lease=10, max_attempts=5, now=t0 + 11 * SECOND)
    assert again is not None and again.row_id == a and again.attempts == 2
    assert queue.renew(dead, 10) is None  # the dead one's lease is gone for good
    renewed = queue.renew(again, 10)
    assert renewed is not None and renewed.lease_until > again.lease_until - 11 * SECOND
    assert queue.fail(dead, "late", max_attempts=5, retry_in=0) == ""
    assert queue.finish(again, FACT, {}, "fp")


def test_a_dead_workers_leases_can_be_ended_at_once(catalog: Catalog) -> None:
    add(catalog, "a")
    queue = catalog.jobs
    assert queue.claim("host:1", lease=600, max_attempts=5) is not None
    assert queue.release("host:1") == 1
    again = queue.claim("host:2", lease=600, max_attempts=5)
    assert again is not None and again.attempts == 2


def test_failures_back_off_and_end_failed_with_their_error(catalog: Catalog) -> None:
    [a] = add(catalog, "a")
    queue = catalog.jobs
    t0 = now_us()
    for attempt in (1, 2):
        claim = queue.claim("w", lease=60, max_attempts=3, now=t0 + attempt * 100 * SECOND)
        assert claim is not None and claim.attempts == attempt
        assert queue.fail(claim, f"bad {attempt}", max_attempts=3, retry_in=30) == "pending"
        # Not due again before its backoff ends.
        assert queue.claim("w", lease=60, max_attempts=3, now=now_us() + 29 * SECOND) is None
    assert state(catalog, a)["error"] == "bad 2"
    last = queue.claim("w", lease=60, max_attempts=3, now=now_us() + 31 * SECOND)
    assert last is not None and last.attempts == 3
    assert queue.fail(last, "MP3 decoding failed", max_attempts=3, retry_in=30) == "failed"
    assert queue.claim("w", lease=60, max_attempts=3, now=now_us() + 3600 * SECOND) is None
    failed = state(catalog, a)
    assert (failed["state"], failed["attempts"], failed["error"]) == (
        "failed", 3, "MP3 decoding failed")


def test_a_job_that_kills_its_worker_every_time_ends_failed(catalog: Catalog) -> None:
    [a] = add(catalog, "a")
    queue = catalog.jobs
    t = now_us()
    for _ in range(2):
        assert queue.claim("w", lease=1, max_attempts=2, now=t) is not None
        t += 2 * SECOND  # each worker dies: its lease runs out
    assert queue.claim("w", lease=1, max_attempts=2, now=t) is None
    got = state(catalog, a)
    assert got["state"] == "failed" and "each of 2 attempts" in got["error"]


def test_retry_failed_and_reanalyze_queue_again_what_the_filters_select(
        catalog: Catalog) -> None:
    a, b = add(catalog, "a", "b", fields={"account_id": "acc1"})
    [c] = add(catalog, "c", fields={"account_id": "acc2"})
    queue = catalog.jobs
    for _ in range(3):
        claim = queue.claim("w", lease=60, max_attempts=1)
        assert claim is not None
        if claim.row_id == b:
            queue.fail(claim, "broken", max_attempts=1, retry_in=0)
        else:
            queue.finish(claim, ONE_WAY, {}, "fp")
    assert queue.requeue([JobState.FAILED], Query(), Origin.RETRY) == 1
    again = state(catalog, b)
    assert (again["state"], again["attempts"], again["error"]) == ("pending", 0, None)
    assert queue.requeue([JobState.DONE], Query(account_id="acc2"), Origin.REANALYZE) == 1
    assert state(catalog, c)["state"] == "pending" and state(catalog, a)["state"] == "done"
    assert queue.requeue([JobState.DONE], Query(flags=("one_way_audio",)),
                         Origin.REANALYZE) == 1


def test_the_analysis_flags_filter_like_the_inspections(catalog: Catalog) -> None:
    ids = dict(zip(("oneway", "deadair", "clean", "truncated"),
                   add(catalog, "oneway", "deadair", "clean"), strict=False))
    ids["truncated"] = catalog.add(sidecar("truncated", sha="f" * 64, flags=("truncated",))).id
    queue = catalog.jobs
    results = {ids["oneway"]: ONE_WAY, ids["deadair"]: FACT,
               ids["clean"]: {**FACT, "flags": []}}
    while (claim := queue.claim("w", lease=60, max_attempts=5)) is not None:
        queue.finish(claim, results.get(claim.row_id, {"flags": []}), {}, "fp")

    def found(**kw: Any) -> set[str | None]:
        return {r.call_id for r in catalog.search(Query(**kw)).items}

    assert found(flags=("one_way_audio",)) == {"oneway"}
    assert found(flags=("dead_air",)) == {"deadair"}
    assert found(flags=("dead_air", "truncated")) == {"deadair", "truncated"}
    # Flagged means a defect: a fact (dead_air) is not one.
    assert found(flagged=True) == {"oneway", "truncated"}
    row = catalog.get(ids["oneway"])
    assert row is not None and row.defects == ("one_way_audio",)
    # A row written again (a retry, a reindex) keeps what its analysis found.
    catalog.add(sidecar("oneway", sha=f"{1:064x}"))
    assert found(flags=("one_way_audio",)) == {"oneway"} and "oneway" in found(flagged=True)


def test_a_queue_that_cannot_be_written_leaves_the_row_owed_and_repair_pays(
        tmp_path: Path) -> None:
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    conn = sqlite3.connect(tmp_path / "c.sqlite3")
    conn.execute("CREATE TRIGGER no_jobs BEFORE INSERT ON kzr_jobs BEGIN "
                 "SELECT RAISE(ABORT, 'the queue cannot be written'); END")
    conn.commit()
    row = catalog.add_stored(sidecar("a"))
    assert row is not None  # the row is written all the same, owed its job
    got = catalog.get(row.id)
    assert got is not None and got.analysis is None and catalog.count() == 1
    with pytest.raises(sqlite3.DatabaseError, match="cannot be written"):
        catalog.jobs.repair()  # still refused: the row stays owed
    conn.execute("DROP TRIGGER no_jobs")
    conn.commit()
    conn.close()
    assert catalog.jobs.repair() == 1
    assert catalog.jobs.repair() == 0
    assert state(catalog, row.id)["state"] == "pending"
    catalog.close()


def test_backfill_queues_rows_from_before_the_analysis(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    for statement in statements(MIGRATIONS[0], "sqlite"):
        conn.execute(statement)
    conn.execute("CREATE TABLE kzr_schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO kzr_schema_version VALUES (1)")
    # Rows as the catalog wrote them before the queue: its first schema's columns.
    for record in (sidecar("t", sha="e" * 64, flags=("truncated",)),
                   sidecar("a", sha="a" * 64), sidecar("b", sha="b" * 64)):
        params = {k: v for k, v in write_params(row_from_record(record)).items()
                  if k not in ("noted", "queued", "cname_norm")}
        conn.execute(f"INSERT INTO {TABLE} ({', '.join(params)}) VALUES "
                     f"({', '.join(':' + k for k in params)})", params)
    conn.commit()
    conn.close()
    catalog = open_catalog(f"sqlite:///{path}")  # migrated to the queue's schema
    try:
        assert catalog.jobs.repair() == 0  # nothing owed: none was ever wanted
        assert [r.analysis for r in catalog.search(Query()).items] == [None] * 3
        assert {r.call_id for r in catalog.search(Query(flagged=True)).items} == {"t"}
        assert {r.call_id for r in catalog.search(Query(flags=("truncated",))).items} == {"t"}
        assert catalog.jobs.backfill() == 3
        assert catalog.jobs.backfill() == 0
        claim = catalog.jobs.claim("w", lease=60, max_attempts=5)
        assert claim is not None and claim.origin == "backfill"
        assert {r.analysis.state for r in catalog.search(Query()).items
                if r.analysis is not None} == {"pending"}
    finally:
        catalog.close()


def test_reindex_puts_a_done_analysis_back_without_a_job_running(catalog: Catalog) -> None:
    rows = [row_from_record(sidecar(c, sha=f"{i:064x}"))
            for i, c in enumerate(("done", "none"), start=1)]
    restored = {rows[0].id: Restored(ONE_WAY, {".kzr.analysis.json": "a" * 64}, "fp")}
    assert catalog.add_rows(rows, origin=Origin.BACKFILL, restored=restored) == 2
    assert state(catalog, rows[0].id)["state"] == "done"
    assert state(catalog, rows[0].id)["attempts"] == 0
    assert state(catalog, rows[1].id)["state"] == "pending"
    result = catalog.jobs.result_of(rows[0].id)
    assert result is not None and result.files == {".kzr.analysis.json": "a" * 64}
    assert {r.call_id for r in catalog.search(Query(flagged=True)).items} == {"done"}


def test_a_done_result_of_the_same_audio_is_found_for_another_copy(catalog: Catalog) -> None:
    a = catalog.add(sidecar("a", sha="c" * 64))
    b = catalog.add(sidecar("b", sha="c" * 64))
    queue = catalog.jobs
    claim = queue.claim("w", lease=60, max_attempts=5)
    assert claim is not None
    queue.finish(claim, ONE_WAY, {".kzr.peaks.json": "p" * 64}, "fp1")
    other = b.id if claim.row_id == a.id else a.id
    found = queue.done_result("c" * 64, "fp1", besides=other)
    assert found is not None and found.row_id == claim.row_id
    assert queue.done_result("c" * 64, "fp2", besides=other) is None  # other settings
    assert queue.done_result("c" * 64, "fp1", besides=claim.row_id) is None


def test_removing_a_row_removes_its_jobs(catalog: Catalog) -> None:
    [a] = add(catalog, "a")
    assert catalog.remove(a)
    assert catalog.jobs.counts() == {}
    assert catalog.jobs.states([a]) == {}
    assert row_id(sidecar("a", sha=f"{1:064x}")) == a


@pytest.mark.slow
def test_postgres_claims_skip_a_job_another_transaction_holds(pg_url: str) -> None:
    first, second = open_catalog(pg_url), open_catalog(pg_url)
    try:
        a, b = add(first, "a", "b")
        holder = psycopg.connect(pg_url)
        try:
            with holder.transaction():
                locked = holder.execute(
                    "SELECT row_id FROM kzr_jobs WHERE state = 'pending' ORDER BY due_us"
                    " LIMIT 1 FOR UPDATE SKIP LOCKED").fetchone()
                assert locked is not None
                # Another worker is not kept waiting: it takes the other job.
                claim = second.jobs.claim("w2", lease=60, max_attempts=5)
                assert claim is not None and claim.row_id == ({a, b} - {locked[0]}).pop()
                assert second.jobs.claim("w3", lease=60, max_attempts=5) is None
        finally:
            holder.close()
        taken = first.jobs.claim("w1", lease=60, max_attempts=5)
        assert taken is not None and taken.row_id == locked[0]
    finally:
        first.close()
        second.close()


def test_claims_from_many_threads_never_share_a_job(url: str) -> None:
    catalogs = [open_catalog(url) for _ in range(4)]
    try:
        add(catalogs[0], *(f"c{i}" for i in range(20)))
        taken: list[str] = []
        lock = threading.Lock()

        def work(queue: JobQueue, name: str) -> None:
            while (claim := queue.claim(name, lease=60, max_attempts=5)) is not None:
                with lock:
                    taken.append(claim.row_id)

        threads = [threading.Thread(target=work, args=(c.jobs, f"w{i}"))
                   for i, c in enumerate(catalogs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(taken) == 20 and len(set(taken)) == 20
    finally:
        for c in catalogs:
            c.close()


def test_the_partial_indexes_serve_the_queue_and_the_flags(tmp_path: Path) -> None:
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    conn = sqlite3.connect(tmp_path / "c.sqlite3")
    try:
        plans = {
            "claim": "SELECT row_id FROM kzr_jobs WHERE job = 'analyse' AND state = 'pending'"
                     " AND due_us <= 5 ORDER BY due_us LIMIT 1",
            "repair": f"SELECT id FROM {TABLE} WHERE queued = 0 LIMIT 5",
            "fact": f"SELECT id FROM {TABLE} WHERE noted = 1 AND ((flag_bits | analysis_bits)"
                    " & 512) <> 0 ORDER BY sort_us DESC, id DESC LIMIT 5",
        }
        used = {name: " ".join(str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
                for name, sql in plans.items()}
        assert "kzr_jobs_due" in used["claim"]
        assert "kzr_rec_owed" in used["repair"]
        assert "kzr_rec_noted" in used["fact"] and "TEMP B-TREE" not in used["fact"]
    finally:
        conn.close()
        catalog.close()
