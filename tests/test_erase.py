"""``kzr-wsgi erase`` on a disk store with its SQLite catalog: everything about one number
goes, nothing else does, holds win, and nothing is left in the database's bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from erase_world import (
    HELD,
    OTHERS,
    SECRET_NAME,
    SECRET_WORD,
    SPECS,
    TARGETS,
    body_of,
    fill,
    kzr,
    listed,
    never_in,
    put,
    share_recordings,
    spec_of,
    tree_digest,
)
from werkzeug.test import Client

from kzr_wsgi import DirectoryStore, KazooRecordings
from kzr_wsgi.catalog import Query
from kzr_wsgi.cli import not_found
from kzr_wsgi.errors import NotFound
from kzr_wsgi.faults import CRASH_AT_ENV, CRASH_STATUS
from kzr_wsgi.housekeeping.audit import AuditTrail
from kzr_wsgi.housekeeping.holds import Hold, Holds, add_hold
from kzr_wsgi.metrics import Metrics
from kzr_wsgi.naming import COMPANION_SUFFIXES
from kzr_wsgi.recording import Kind, Name

ERASE = ["erase", "--number", "+1 415 555 0123", "--country", "US", "--request", "GDPR-7"]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[DirectoryStore, dict[str, str], list[str]]]:
    store = DirectoryStore(tmp_path / "rec")
    assert store.catalog is not None
    ids = fill(store, store.catalog)
    yield store, ids, ["--root", str(store.root)]
    store.catalog.close()


def hold_the_held_one(store: DirectoryStore) -> Hold:
    hold = Hold.new("call_id", HELD, reason="case 9: litigation")
    add_hold(Holds(store.state()), AuditTrail(store.state()), hold)
    return hold


def stored_call_ids(store: DirectoryStore) -> set[str]:
    return {str(r["call_id"]) for r in store.records()}


def opens(store: DirectoryStore, call_id: str) -> bool:
    try:
        store.open(Name(Kind.CALL, (), f"call_recording_{call_id}.mp3"),
                   f"rec-{call_id}").close()
    except NotFound:
        return False
    return True


def companions(root: Path) -> set[str]:
    return {p.name.split(".mp3")[0].removeprefix("call_recording_")
            for p in root.rglob("*") if p.name.endswith(COMPANION_SUFFIXES)}


def test_ls_lists_what_the_dry_run_selects_and_a_dry_run_changes_no_byte(world: Any) -> None:
    store, ids, where = world
    assert listed(where, "--number", "+1 415 555 0123", "--country", "US") == TARGETS
    # Without a country the national form is compared by its digits: not that number.
    assert listed(where, "--number", "+1 415 555 0123") == TARGETS - {"t-national"}
    # The last connection to close checkpoints SQLite's write-ahead log into the file
    # (the same rows, other bytes): closed here first, so the hash sees the dry run only.
    store.catalog.close()
    assert listed(where, "--call-id", "t-sip") == {"t-sip"}
    before = tree_digest(store.root)
    dry = kzr(*ERASE, *where, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    said = {line.split()[2] for line in dry.stdout.splitlines()
            if line.startswith("would erase")}
    assert said == {ids[c] for c in TARGETS}
    assert f"possible match (not selected) {ids['o-possible']}" in dry.stdout
    assert "would erase 5 recording(s)" in dry.stderr
    assert tree_digest(store.root) == before


def test_a_hold_stops_it_and_names_the_hold_then_except_held_keeps_only_that(
        world: Any, tmp_path: Path) -> None:
    store, ids, where = world
    hold = hold_the_held_one(store)
    store.catalog.close()
    assert listed(where, "--call-id", "t-sip") == {"t-sip"}
    before = tree_digest(store.root)
    stopped = kzr(*ERASE, *where, "--receipt", str(tmp_path / "r0.json"))
    assert stopped.returncode == 3, stopped.stderr
    assert hold.id in stopped.stdout and "case 9: litigation" in stopped.stdout
    assert tree_digest(store.root) == before  # the receipt is written outside the store
    assert stored_call_ids(store) == TARGETS | OTHERS
    assert json.loads((tmp_path / "r0.json").read_text())["erased"] == []
    done = kzr(*ERASE, *where, "--except-held", "--receipt", str(tmp_path / "r1.json"))
    assert done.returncode == 0, done.stderr
    receipt = json.loads((tmp_path / "r1.json").read_text())
    assert {e["call_id"] for e in receipt["erased"]} == TARGETS - {HELD}
    assert receipt["kept"] == [{"id": ids[HELD], "hold": hold.id}]
    assert stored_call_ids(store) == OTHERS | {HELD}


def test_erase_removes_exactly_that_numbers_recordings_everywhere(world: Any) -> None:
    store, ids, where = world
    assert store.catalog is not None
    done = kzr(*ERASE, *where)
    assert done.returncode == 0, done.stderr
    assert stored_call_ids(store) == OTHERS
    assert listed(where) == OTHERS
    assert listed(where, "--number", "+14155550123", "--country", "US") == set()
    assert listed(where, "--text", SECRET_WORD) == set()
    assert listed(where, "--text", "hello") == OTHERS
    for spec in SPECS:
        assert opens(store, spec.call_id) == (spec.call_id in OTHERS)
    assert companions(store.root) == OTHERS
    assert share_recordings(store.catalog) == {ids["o-london"]}
    verify = kzr("verify", *where)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # The audit trail: one line per erased copy, without the number or the name.
    trail = [e for e in AuditTrail(store.state()).read(request="GDPR-7")]
    assert sorted(e["row_id"] for e in trail) == sorted(ids[c] for c in TARGETS)
    assert all(e["action"] == "erase" and e["selector"] and e["user"] for e in trail)
    audit = kzr("audit", *where, "--request", "GDPR-7")
    assert audit.returncode == 0 and audit.stdout.count(" erase ") == len(TARGETS)
    raw = (store.root / ".kzr" / "audit.jsonl").read_bytes()
    never_in(raw, "4155550123", "415 555 0123", "(415) 555-0123", SECRET_NAME,
             where="the audit trail")
    assert not list((store.root / ".kzr" / "erasing").glob("*.json"))


def test_the_pages_api_shows_them_before_and_not_after(world: Any) -> None:
    from ui_fixtures import OPS, basic

    from kzr_wsgi.ui import SearchUI

    store, ids, where = world
    assert store.catalog is not None
    client = Client(SearchUI(store.catalog, store, viewers=(OPS,), prefix="/ui"))

    def found(**params: str) -> set[str]:
        reply = client.get("/ui/api/recordings", query_string=params,
                           headers=basic(OPS.user, OPS.password))
        assert reply.status_code == 200, reply.get_data()
        return {i["call_id"] for i in reply.json["items"]}

    assert found(number="sip:+1-415-555-0123@x") == TARGETS - {"t-national"}
    assert found(q="+1 415 555 0123") == TARGETS - {"t-national"}
    store.catalog.country = "US"  # serve --country US
    assert found(number="(415) 555-0123") == TARGETS
    assert found(q="415 555 0123") == TARGETS
    assert kzr(*ERASE, *where).returncode == 0
    assert found(number="+14155550123") == set() and found(q="+14155550123") == set()
    assert found() == OTHERS
    gone = client.get(f"/ui/api/recordings/{ids['t-sip']}",
                      headers=basic(OPS.user, OPS.password))
    assert gone.status_code == 404


def test_the_erased_event_is_queued_durably_and_delivered(world: Any) -> None:
    import http.server
    import threading

    from kzr_wsgi.housekeeping.erasures import deliver_outbox
    from kzr_wsgi.stores.tempfiles import NAMED_SUFFIX

    store, ids, where = world
    # A worker's spooled copies: one of an erased recording, one of another.
    spool = store.root.parent / "spool"
    spool.mkdir()
    (spool / f"a{NAMED_SUFFIX}").write_bytes(body_of(spec_of("t-sip")))
    (spool / f"b{NAMED_SUFFIX}").write_bytes(body_of(spec_of("o-near")))
    done = kzr(*ERASE, *where, "--spool-dir", str(spool))
    assert done.returncode == 0, done.stderr
    assert "1 spooled cop(ies) removed" in done.stderr
    assert [p.name for p in spool.iterdir()] == [f"b{NAMED_SUFFIX}"]
    [queued] = (store.root / ".kzr" / "outbox").glob("*.json")
    doc = json.loads(queued.read_bytes())
    assert doc["event"] == "recording.erased" and doc["reference"] == "GDPR-7"
    assert {r["id"] for r in doc["recordings"]} == {ids[c] for c in TARGETS}
    never_in(queued.read_bytes(), "4155550123", SECRET_NAME, where="the event")
    got: list[bytes] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        assert deliver_outbox(store.state(), [url]) == 1
    finally:
        server.shutdown()
        server.server_close()
    assert [json.loads(b)["id"] for b in got] == [doc["id"]]
    assert not list((store.root / ".kzr" / "outbox").glob("*.json"))


def test_nothing_lingers_in_the_sqlite_files(world: Any) -> None:
    store, ids, where = world
    assert store.catalog is not None
    store.catalog.close()
    done = kzr(*ERASE, *where)
    assert done.returncode == 0, done.stderr
    assert "search table(s) merged" in done.stderr
    files = [p for p in (store.root / ".kzr").glob("catalog.sqlite3*") if p.is_file()]
    assert any(p.name == "catalog.sqlite3" for p in files)
    for path in files:
        never_in(path.read_bytes(), "4155550123", "415 555 0123", "(415) 555-0123",
                 SECRET_NAME, SECRET_WORD, where=str(path))
    # What was not erased is still there (the check can find what it looks for).
    data = (store.root / ".kzr" / "catalog.sqlite3").read_bytes()
    assert b"+14155550999" in data and b"5550123" in data


def test_a_retry_of_an_erased_upload_is_answered_200_and_not_stored(world: Any) -> None:
    store, ids, where = world
    assert kzr(*ERASE, *where).returncode == 0
    metrics = Metrics()
    client = Client(KazooRecordings(not_found, store, metrics=metrics))
    spec = spec_of("t-spaced")
    retry = put(client, spec, body_of(spec))
    assert retry.status_code == 200 and b"erased" in retry.get_data()
    assert "t-spaced" not in stored_call_ids(store)
    assert metrics.uploads.labels("call", "erased")._value.get() == 1
    # A new recording under the same call id (other bytes) is stored as usual.
    again = put(client, spec, body_of(spec, n=1))
    assert again.status_code == 201, again.get_data()
    assert "t-spaced" in stored_call_ids(store)
    assert metrics.uploads.labels("call", "stored")._value.get() == 1


def test_account_alone_needs_entire_account_and_short_numbers_an_account(world: Any) -> None:
    _, _, where = world
    alone = kzr("erase", *where, "--account", "acct-acme", "--request", "R1")
    assert alone.returncode == 2 and "--entire-account" in alone.stderr
    counted = kzr("erase", *where, "--account", "acct-acme", "--request", "R1",
                  "--entire-account", "--dry-run")
    assert counted.returncode == 0 and "would erase 5 recording(s) of the whole account" \
        in counted.stderr
    short = kzr("erase", *where, "--number", "1001", "--request", "R2")
    assert short.returncode == 2 and "--account" in short.stderr
    no_request = kzr("erase", *where, "--number", "+14155550123")
    assert no_request.returncode == 2
    nothing = kzr("erase", *where, "--number", "+33 1 23 45 67 89", "--request", "R3")
    assert nothing.returncode == 0 and "nothing matched" in nothing.stderr


def test_no_tombstone_for_bodies_that_recur_across_calls() -> None:
    from kzr_wsgi.housekeeping.tombstones import wanted

    audio = {"format": "mp3", "flags": []}
    assert wanted({"size": 9, "call_id": "c1", "audio": audio})
    assert not wanted({"size": 0, "call_id": "c1", "audio": audio})
    assert not wanted({"size": 9, "call_id": "c1", "audio": {"flags": ["not_audio"]}})
    assert not wanted({"size": 9, "call_id": "c1", "audio": {"flags": ["empty"]}})
    assert not wanted({"size": 9, "call_id": "kzr-check-1", "audio": audio})
    assert not wanted({"size": 9, "call_id": "c1", "self_test": True, "audio": audio})


#: The steps of an erase, as crash points.
STEPS = ("journal", "tombstone", "audit", "index", "catalog", "file", "versions")


@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS)
def test_killed_at_each_step_then_rerun_finishes_it(world: Any, step: str) -> None:
    store, ids, where = world
    killed = kzr(*ERASE, *where, env={CRASH_AT_ENV: f"erase.{step}:2"})
    assert killed.returncode == CRASH_STATUS, killed.stderr
    assert killed.stdout.count("erased ") == 1
    journal = list((store.root / ".kzr" / "erasing").glob("*.json"))
    assert len(journal) == 1
    # The journal holds ids and hashes only.
    # Every spelling the target was sent in (a bare "415" would also be found, by chance,
    # inside the hex digests the journal is made of).
    never_in(journal[0].read_bytes(), "4155550123", "415 555", "(415)", "555 0123", "555-0123",
             SECRET_NAME, where="the journal")
    rerun = kzr(*ERASE, *where)
    assert rerun.returncode == 0, rerun.stderr
    assert stored_call_ids(store) == OTHERS
    assert listed(where) == OTHERS
    assert companions(store.root) == OTHERS
    assert not list((store.root / ".kzr" / "erasing").glob("*.json"))
    trail = list(AuditTrail(store.state()).read(request="GDPR-7"))
    assert sorted(e["row_id"] for e in trail) == sorted(ids[c] for c in TARGETS)
    assert kzr("verify", *where).returncode == 0


def test_a_job_in_flight_cannot_bring_the_analysis_back(world: Any) -> None:
    from kzr_wsgi.pipeline.worker import Worker

    store, ids, where = world
    assert store.catalog is not None
    catalog = store.catalog
    erased_now: list[Any] = []

    class LandsMidway(Worker):
        """The erase lands between the decode and the writing of its result."""

        def _keep(self, claim: Any, row: Any, *args: Any, **kwargs: Any) -> Any:
            if not erased_now:
                erased_now.append(kzr(*ERASE, *where))
            return super()._keep(claim, row, *args, **kwargs)

    # Only the target's jobs: its companions were removed; run one fresh analysis.
    for path in store.root.rglob("*"):
        if path.name.endswith(COMPANION_SUFFIXES):
            path.unlink()
    worker = LandsMidway(store, catalog)
    claim = None
    while claim is None or claim.row_id != ids["t-sip"]:
        # Others claimed on the way stay leased: nothing else touches them here.
        claim = worker.queue.claim(worker.name, lease=60.0, max_attempts=5)
        assert claim is not None
    outcome = worker.work(claim)
    assert erased_now and erased_now[0].returncode == 0, erased_now[0].stderr
    assert outcome.state == "gone"
    assert "t-sip" not in companions(store.root)
    assert catalog.get(ids["t-sip"]) is None
    assert catalog.search(Query(call_id="t-sip", self_test=True)).items == []
