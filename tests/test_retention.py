"""Retention: prune by age and policy, legal holds, the audit trail; on disk and on S3.

The data set: recordings whose Kazoo ``start`` lies 1 to 700 days back, in three
accounts, of every kind, each labelled by hand with whether the policy below removes it
(the test does not ask the code under test what to expect).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kzr_wsgi import cli
from kzr_wsgi.body import Body
from kzr_wsgi.catalog import row_id
from kzr_wsgi.errors import NotFound
from kzr_wsgi.faults import CRASH_AT_ENV, CRASH_STATUS
from kzr_wsgi.housekeeping.audit import AuditTrail
from kzr_wsgi.housekeeping.holds import Hold, HoldError, Holds, add_hold
from kzr_wsgi.housekeeping.retention import Selection, Summary, deletion_id
from kzr_wsgi.housekeeping.retention import prune as _prune
from kzr_wsgi.housekeeping.state import state_for
from kzr_wsgi.metadata import GREGORIAN_OFFSET, parse_metadata
from kzr_wsgi.naming import COMPANION_SUFFIXES, SIDECAR_SUFFIX
from kzr_wsgi.recording import Kind, Name, Recording
from kzr_wsgi.stores import DirectoryStore

#: The moto server fixtures (``moto_endpoint``, ``aws_env``, ``s3_bucket``) live there.
pytest_plugins = ["s3server", "pgserver"]

NOW = datetime.now(timezone.utc)
A, B, C = "a" * 32, "b" * 32, "c" * 32
HELD_CALL = "held-call-c-400"

POLICY = f"""\
[retention]
default = "90d"
[retention.accounts]
{A} = "1y"
{B} = "30d"
[retention.kinds]
attachment = "1y"
"""


@dataclass(frozen=True)
class Spec:
    """One recording of the data set, and whether the policy (with the holds) removes it."""

    call_id: str
    account: str
    days: int
    kind: Kind = Kind.CALL
    #: False: no Kazoo start is sent; the age is from the time received.
    with_start: bool = True
    #: What prune does with it under POLICY and the holds (account A, call HELD_CALL).
    pruned: bool = False
    #: Due by the policy but kept for a hold.
    held: bool = False


def prune(store: Any, selection: Selection, **kwargs: Any) -> Summary:
    """:func:`kzr_wsgi.housekeeping.retention.prune`, keeping every item for the asserts."""
    return _prune(store, selection, collect=True, **kwargs)


def _dataset() -> list[Spec]:
    specs = []
    # Account A (1y; all on hold): nothing goes; the two over a year are kept for the hold.
    for days in (1, 100, 364, 400, 700):
        specs.append(Spec(f"call-a-{days}", A, days, held=days > 365))
    # Account B (30d).
    for days in (1, 29, 31, 200, 650):
        specs.append(Spec(f"call-b-{days}", B, days, pruned=days > 30))
    # Account C (the default, 90d), one call on hold.
    for days in (1, 60, 89, 91, 300, 700):
        specs.append(Spec(f"call-c-{days}", C, days, pruned=days > 90))
    specs.append(Spec(HELD_CALL, C, 400, held=True))
    specs.append(Spec("caller-c-120", C, 120, kind=Kind.CALLER, pruned=True))
    specs.append(Spec("caller-b-10", B, 10, kind=Kind.CALLER))
    specs.append(Spec("kzr-check-c-200", C, 200, pruned=True))  # self-tests: same rules
    specs.append(Spec("nostart-c-100", C, 100, with_start=False, pruned=True))
    specs.append(Spec("nostart-c-50", C, 50, with_start=False))
    # Attachments: pruned only because [retention.kinds] names them (1y; B's 30d is shorter).
    specs.append(Spec("att-c-100", C, 100, kind=Kind.ATTACHMENT))
    specs.append(Spec("att-c-400", C, 400, kind=Kind.ATTACHMENT, pruned=True))
    specs.append(Spec("att-b-200", B, 200, kind=Kind.ATTACHMENT))
    return specs


DATASET = _dataset()


def body_of(spec: Spec) -> bytes:
    """A distinct body per recording (its sha256 is checked in the audit trail)."""
    return hashlib.sha256(spec.call_id.encode()).digest() * 64 + spec.call_id.encode()


def recording(spec: Spec, body: bytes | None = None,
              received_at: datetime | None = None) -> Recording:
    """The Recording as the middleware would build it for this spec."""
    body = body_of(spec) if body is None else body
    when = NOW - timedelta(days=spec.days, hours=1)
    query: list[tuple[str, str | None]] = [("recording_id", f"rec-{spec.call_id}")]
    document = None
    if spec.kind is Kind.ATTACHMENT:
        name = Name(Kind.ATTACHMENT, (spec.account, "vm"), f"{spec.call_id}.mp3")
        document = {"account_id": spec.account}
        query = []
        call_id = None
    else:
        prefix = "call_recording_" if spec.kind is Kind.CALL else ""
        name = Name(spec.kind, (), f"{prefix}{spec.call_id}.mp3")
        query.append(("account_id", spec.account))
        call_id = spec.call_id
    if spec.with_start and spec.kind is not Kind.ATTACHMENT:
        query.append(("start", str(int(when.timestamp()) + GREGORIAN_OFFSET)))
    return Recording(
        name=name, call_id=call_id, ext="mp3", content_type="audio/mpeg",
        content_length=len(body), metadata=parse_metadata(query), query="",
        remote_addr="127.0.0.1", stream=Body(io.BytesIO(body), len(body), 1 << 30),
        # Kazoo's start when sent; else the time received is the age (uploads of old ones).
        received_at=received_at or (NOW - timedelta(hours=2) if spec.with_start and spec.kind
                                    is not Kind.ATTACHMENT else when),
        document=document,
    )


def fill(store: Any) -> dict[str, str]:
    """Store the data set; return each call id's location."""
    return {spec.call_id: store(recording(spec)).location for spec in DATASET}


def place_holds(store: Any) -> list[Hold]:
    state = state_for(store)
    holds = [Hold.new("account_id", A, reason="case 1: account under investigation"),
             Hold.new("call_id", HELD_CALL, reason="case 2: subpoena")]
    for hold in holds:
        add_hold(Holds(state), AuditTrail(state), hold)
    return holds


def expected_pruned() -> set[str]:
    return {s.call_id for s in DATASET if s.pruned}


def policy_selection(tmp_path: Path) -> Selection:
    from kzr_wsgi.cli.config import load_config

    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    policy = load_config(path, cli.serve).retention
    assert policy is not None
    return Selection(policy=policy)


def opens(store: Any, spec: Spec) -> bool:
    """Read-back: can the store serve this recording?"""
    rec = recording(spec)
    try:
        store.open(rec.name, rec.recording_id).close()
    except NotFound:
        return False
    return True


def call_ids(store: Any) -> set[str]:
    """The recordings the store's index holds (attachments by their file name's stem)."""
    out = set()
    for record in store.records():
        out.add(record["call_id"] or record["filename"].rsplit(".", 1)[0])
    return out


def catalog_agrees(store: Any) -> None:
    """The catalog's rows are exactly the store's index entries."""
    assert store.catalog is not None
    assert store.catalog.ids() == {row_id(r) for r in store.records()}


def ls_call_ids(*args: str) -> set[str]:
    """What `kzr-wsgi ls --json --self-test` lists (attachments by their file name's stem)."""
    result = invoke("ls", "--json", "--self-test", *args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return {r["call_id"] or r["filename"].rsplit(".", 1)[0] for r in rows}


def deletions(store: Any) -> list[dict[str, Any]]:
    return [e for e in AuditTrail(state_for(store)).read() if e["action"] == "delete"]


def disk_consistent(root: Path) -> None:
    """Every index entry has its file and sidecar, and every file its sidecar and entry."""
    store = DirectoryStore(root)
    indexed = {r["path"] for r in store.records()}
    files = {p.relative_to(root).as_posix() for p in root.rglob("*")
             if p.is_file() and ".kzr" not in p.relative_to(root).parts
             and not p.name.endswith((SIDECAR_SUFFIX, *COMPANION_SUFFIXES))}
    # The files kept beside a recording (its analysis) are part of it: never beside none.
    beside = {p.relative_to(root).as_posix() for p in root.rglob("*")
              if p.is_file() and p.name.endswith(COMPANION_SUFFIXES)}
    assert {b[: b.rindex(".kzr.")] for b in beside} <= indexed
    sidecars = {p.relative_to(root).as_posix()[: -len(SIDECAR_SUFFIX)] for p in root.rglob(
        "*" + SIDECAR_SUFFIX) if ".kzr" not in p.relative_to(root).parts}
    assert indexed == files == sidecars
    assert not list((root / ".kzr").glob("pruning/*.json")), "journal markers left"


# -- on disk, in-process ----------------------------------------------------------------------


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[tuple[DirectoryStore, dict[str, str]]]:
    store = DirectoryStore(tmp_path / "rec")
    locations = fill(store)
    place_holds(store)
    yield store, locations


def test_dry_run_lists_exactly_the_policy_and_removes_nothing(
        disk: tuple[DirectoryStore, dict[str, str]], tmp_path: Path) -> None:
    store, locations = disk
    before = sorted(p for p in store.root.rglob("*"))
    summary = prune(store, policy_selection(tmp_path), dry_run=True)
    would = {i.location for i in summary.items if i.outcome == "would remove"}
    assert would == {locations[c] for c in expected_pruned()}
    held = {i.location for i in summary.items if i.outcome == "held"}
    assert held == {locations[s.call_id] for s in DATASET if s.held}
    assert summary.removed == len(expected_pruned())
    assert summary.bytes == sum(len(body_of(s)) for s in DATASET if s.pruned)
    assert summary.held == 3
    assert sorted(p for p in store.root.rglob("*")) == before
    assert deletions(store) == []


def test_prune_removes_exactly_those_and_audits_each_once(
        disk: tuple[DirectoryStore, dict[str, str]], tmp_path: Path) -> None:
    store, locations = disk
    summary = prune(store, policy_selection(tmp_path))
    assert {i.location for i in summary.items if i.outcome == "removed"} == {
        locations[c] for c in expected_pruned()}
    assert call_ids(store) == {s.call_id for s in DATASET} - expected_pruned()
    for spec in DATASET:
        assert opens(store, spec) is not spec.pruned, spec
        assert Path(locations[spec.call_id]).exists() is not spec.pruned, spec
    disk_consistent(store.root)
    catalog_agrees(store)
    assert ls_call_ids("--root", str(store.root)) == call_ids(store)
    trail = deletions(store)
    assert sorted(e["location"] for e in trail) == sorted(locations[c] for c in expected_pruned())
    by_location = {e["location"]: e for e in trail}
    for spec in DATASET:
        if spec.pruned:
            event = by_location[locations[spec.call_id]]
            assert event["sha256"] == hashlib.sha256(body_of(spec)).hexdigest()
            assert event["size"] == len(body_of(spec))
            assert event["account_id"] == spec.account
            assert event["user"] and "age" in event["reason"]
    # A second prune finds nothing more.
    again = prune(store, policy_selection(tmp_path))
    assert (again.removed, again.finished, again.held) == (0, 0, 3)
    assert len(deletions(store)) == len(trail)


def test_a_kazoo_retry_of_a_pruned_recording_is_stored_afresh(
        disk: tuple[DirectoryStore, dict[str, str]], tmp_path: Path) -> None:
    store, _ = disk
    prune(store, policy_selection(tmp_path))
    spec = next(s for s in DATASET if s.pruned)
    assert not opens(store, spec)
    stored = store(recording(spec))
    assert stored.created
    assert opens(store, spec)
    disk_consistent(store.root)


def test_older_than_with_account_and_kind(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "rec")
    locations = fill(store)
    summary = prune(store, Selection(older_than=timedelta(days=100), accounts=(C,)))
    gone = {i.location for i in summary.items}
    assert gone == {locations[s.call_id] for s in DATASET if s.account == C and s.days >= 100
                    and s.kind is not Kind.ATTACHMENT}
    summary = prune(store, Selection(older_than=timedelta(days=101), kinds=("attachment",)))
    assert {i.location for i in summary.items} == {locations["att-c-400"], locations["att-b-200"]}
    summary = prune(store, Selection(older_than=timedelta(0)))
    assert call_ids(store) == {"att-c-100"}


def test_copies_received_under_a_minute_ago_are_counted_as_left(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "rec")
    spec = next(s for s in DATASET if s.pruned)
    store(recording(spec, received_at=datetime.now(timezone.utc)))
    summary = prune(store, Selection(older_than=timedelta(0)))
    assert (summary.removed, summary.settling, summary.examined) == (0, 1, 1)
    assert summary.line().endswith(
        "; left 1 due but received less than a minute ago for the next run")
    assert call_ids(store) == {spec.call_id}


def test_a_hold_covers_recordings_stored_later(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "rec")
    place_holds(store)
    spec = Spec("call-a-999", A, 600)
    store(recording(spec))
    summary = prune(store, Selection(older_than=timedelta(days=1)))
    assert [i.outcome for i in summary.items] == ["held"] and opens(store, spec)


# -- crashes and concurrency, with the real command -------------------------------------------


def run_prune(root: Path, config: Path, *args: str, env: dict[str, str] | None = None,
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kzr_wsgi", "prune", "--root", str(root), "--config",
         str(config), *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
        cwd=Path(__file__).resolve().parent.parent)


#: Where a prune is killed: at each step of its third removal, by the older spelling of
#: the crash hook, and once by its own (``KZR_CRASH_AT=prune.STEP:N``).
STEPS = ("journal", "audit", "index", "catalog", "file")
KILLS = [*({"KZR_TEST_PRUNE_KILL": f"{step}:3"} for step in STEPS),
         {CRASH_AT_ENV: "prune.index:3"}]


@pytest.mark.slow
@pytest.mark.parametrize("kill", KILLS, ids=[*STEPS, "KZR_CRASH_AT-index"])
def test_prune_killed_half_way_and_rerun_gives_the_same_result(
        disk: tuple[DirectoryStore, dict[str, str]], tmp_path: Path,
        kill: dict[str, str]) -> None:
    store, locations = disk
    config = tmp_path / "policy.toml"
    config.write_text(POLICY)
    killed = run_prune(store.root, config, env=kill)
    assert killed.returncode == CRASH_STATUS == -9, killed.stderr
    assert killed.stdout.count("removed ") == 2
    assert list((store.root / ".kzr").glob("pruning/*.json")), "the third was cut short"
    rerun = run_prune(store.root, config)
    assert rerun.returncode == 0, rerun.stderr
    assert call_ids(store) == {s.call_id for s in DATASET} - expected_pruned()
    disk_consistent(store.root)
    catalog_agrees(store)
    trail = deletions(store)
    assert sorted(e["location"] for e in trail) == sorted(locations[c] for c in expected_pruned())
    # Each reported once across both runs, as removed or as finished.
    lines = [line for out in (killed.stdout, rerun.stdout) for line in out.splitlines()
             if line.startswith(("removed", "finished"))]
    assert len(lines) == len(expected_pruned())


@pytest.mark.slow
def test_a_retry_stored_after_a_crash_survives_the_rerun(
        disk: tuple[DirectoryStore, dict[str, str]], tmp_path: Path) -> None:
    store, locations = disk
    config = tmp_path / "policy.toml"
    config.write_text(POLICY)
    # Killed after the file went, before the journal marker did.
    killed = run_prune(store.root, config, env={"KZR_TEST_PRUNE_KILL": "file:3"})
    assert killed.returncode == -9, killed.stderr
    [marker] = (store.root / ".kzr").glob("pruning/*.json")
    cut = json.loads(marker.read_text())["record"]
    spec = next(s for s in DATASET if locations[s.call_id] == cut["location"])
    # Kazoo retries that very recording: stored afresh, under the name just freed.
    again = store(recording(spec, received_at=datetime.now(timezone.utc)))
    assert again.created and again.location == cut["location"]
    rerun = run_prune(store.root, config)
    assert rerun.returncode == 0, rerun.stderr
    # The rerun finished the old copy's removal and left the new copy whole (it was
    # received a moment ago: the next prune decides about it).
    assert opens(store, spec)
    assert Path(again.location).read_bytes() == body_of(spec)
    disk_consistent(store.root)
    catalog_agrees(store)
    assert [e["location"] for e in deletions(store)].count(cut["location"]) == 1


def two_at_once(prune: Callable[[], subprocess.CompletedProcess[str]]) -> list[str]:
    """Run ``prune`` twice at the same time; both must succeed. What they say they removed."""
    results: list[subprocess.CompletedProcess[str]] = []
    threads = [threading.Thread(target=lambda: results.append(prune())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    return [line.split()[1] for r in results for line in r.stdout.splitlines()
            if line.startswith("removed")]


@pytest.mark.slow
def test_two_prunes_at_once_delete_each_thing_once(
        disk: tuple[DirectoryStore, dict[str, str]], tmp_path: Path) -> None:
    store, locations = disk
    config = tmp_path / "policy.toml"
    config.write_text(POLICY)
    removed = two_at_once(lambda: run_prune(store.root, config))
    assert sorted(removed) == sorted(locations[c] for c in expected_pruned())
    trail = deletions(store)
    assert sorted(e["location"] for e in trail) == sorted(removed)
    disk_consistent(store.root)


# -- the commands -------------------------------------------------------------------------------


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(cli.main, list(args), env=env)
    return result


def test_prune_command_dry_run_then_prune(
        disk: tuple[DirectoryStore, dict[str, str]], tmp_path: Path) -> None:
    store, locations = disk
    config = tmp_path / "kzr.toml"
    config.write_text(f'root = "{store.root}"\n' + POLICY)
    dry = invoke("prune", "--config", str(config), "--dry-run")
    assert dry.exit_code == 0, dry.output
    listed = {line.split()[2] for line in dry.stdout.splitlines()
              if line.startswith("would remove")}
    assert listed == {locations[c] for c in expected_pruned()}
    total = sum(len(body_of(s)) for s in DATASET if s.pruned)
    assert f"would remove {len(listed)} recording(s), {total} bytes; kept 3 for holds" \
        in dry.stderr
    done = invoke("prune", "--config", str(config))
    assert done.exit_code == 0, done.output
    assert f"removed {len(listed)} recording(s), {total} bytes; kept 3 for holds" in done.stderr
    assert call_ids(store) == {s.call_id for s in DATASET} - expected_pruned()


def test_prune_needs_an_age_or_a_policy(tmp_path: Path) -> None:
    result = invoke("prune", "--root", str(tmp_path / "r"))
    assert result.exit_code == 2 and "--older-than" in result.output
    result = invoke("prune", "--root", str(tmp_path / "r"), "--older-than", "90 days")
    assert result.exit_code == 2 and "not an age" in result.output
    result = invoke("prune", "--root", str(tmp_path / "r"), "--account", A)
    assert result.exit_code == 2


def test_hold_and_audit_commands(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    added = invoke("hold", "add", "--root", root, "--call-id", "c1", "--reason", "court order 7")
    assert added.exit_code == 0, added.output
    hold_id = added.stdout.strip()
    assert hold_id.startswith("h-")
    assert invoke("hold", "add", "--root", root, "--call-id", "c1").exit_code == 2
    assert invoke("hold", "add", "--root", root, "--call-id", "c1", "--account", "a",
                  "--reason", "x").exit_code == 2
    listed = invoke("hold", "ls", "--root", root)
    assert hold_id in listed.stdout and "call_id=c1" in listed.stdout
    assert "court order 7" in listed.stdout
    [doc] = [json.loads(line) for line in invoke("hold", "ls", "--root", root,
                                                 "--json").stdout.splitlines()]
    assert doc["id"] == hold_id and doc["user"]
    assert invoke("hold", "rm", "--root", root, hold_id).exit_code == 0
    assert invoke("hold", "rm", "--root", root, hold_id).exit_code == 1
    assert invoke("hold", "ls", "--root", root).stdout == ""
    events = [json.loads(line) for line in invoke("audit", "--root", root,
                                                  "--json").stdout.splitlines()]
    assert [e["action"] for e in events] == ["hold_add", "hold_rm"]
    assert all(e["call_id"] == "c1" and e["reason"] == "court order 7" for e in events)
    assert set(events[0]) >= {"at", "action", "user", "call_id", "recording_id", "account_id",
                              "location", "size", "sha256", "received_at", "reason"}
    today = NOW.date().isoformat()
    assert len(invoke("audit", "--root", root, "--since", today).stdout.splitlines()) == 2
    assert invoke("audit", "--root", root, "--until", "2000-01-01").stdout == ""
    assert invoke("audit", "--root", root, "--call-id", "c2").stdout == ""
    assert "hold_add" in invoke("audit", "--root", root, "--call-id", "c1").stdout


def test_audit_names_a_deletion_by_its_ids_as_they_were_sent(tmp_path: Path) -> None:
    # A call id that a location percent-encodes ("/", "%", "@") and that carries a
    # control sequence, which the terminal must see escaped, never obeyed.
    odd = "odd/\x1b[31m%2F@pbx.example"
    spec = Spec(odd, C, 400)
    store = DirectoryStore(tmp_path / "r")
    stored = store(recording(spec))
    assert odd not in stored.location  # the location alone would not find it
    root = str(store.root)
    pruned = invoke("prune", "--root", root, "--older-than", "30d")
    assert pruned.exit_code == 0, pruned.output
    shown_id = "odd/\\x1b[31m%2F@pbx.example"
    out = invoke("audit", "--root", root).stdout
    [line] = out.splitlines()
    assert "\x1b" not in out  # no raw escape reaches the terminal
    assert "  delete    " in line
    for fact in (f"call_id={shown_id}", f"recording_id=rec-{shown_id}", f"account_id={C}",
                 f"sha256={stored.sha256[:12]} ", stored.location, f"{stored.size} bytes"):
        assert fact in line, (fact, line)
    assert line.endswith("(--older-than 30d; age 400d)")
    # What an operator greps for, and what --call-id shows.
    assert invoke("audit", "--root", root, "--call-id", odd).stdout == out
    assert invoke("audit", "--root", root, "--call-id", "odd").stdout == ""
    [event] = [json.loads(raw) for raw in invoke("audit", "--root", root, "--json"
                                                 ).stdout.splitlines()]
    assert (event["call_id"], event["action"]) == (odd, "delete")


def kzr(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m kzr_wsgi ARGS``: the command as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "kzr_wsgi", *args], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)


def test_the_audit_command_shows_each_id_as_it_was_sent(tmp_path: Path) -> None:
    # One call id that looks percent-encoded already (its location encodes it again), one
    # that carries a terminal escape and a bell.
    encoded, escaping = "8a3f%2F2c1e/leg-1@pbx.example", "cc\x1b]0;owned\x07@pbx.example"
    store = DirectoryStore(tmp_path / "r")
    stored = {call_id: store(recording(Spec(call_id, C, 400)))
              for call_id in (encoded, escaping)}
    assert encoded not in stored[encoded].location  # "%" and "/" are encoded there
    root = str(store.root)
    pruned = kzr("prune", "--root", root, "--older-than", "30d")
    assert pruned.returncode == 0, pruned.stderr
    out = kzr("audit", "--root", root)
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout  # none reaches the terminal
    lines = out.stdout.splitlines()
    assert len(lines) == 2
    # grep -F for the call id as Kazoo sent it finds its deletion ...
    [line] = [line for line in lines if encoded in line]
    # ... and one with control characters, as ls shows them.
    shown = "cc\\x1b]0;owned\\x07@pbx.example"
    [other] = [line for line in lines if shown in line]
    for call_id, seen, text in ((encoded, encoded, line), (escaping, shown, other)):
        copy = stored[call_id]
        for fact in (f"call_id={seen} ", f"recording_id=rec-{seen} ", f"account_id={C} ",
                     f"sha256={copy.sha256[:12]} ", f" {copy.location} ",
                     f" {copy.size} bytes "):
            assert fact in text, (fact, text)
        # audit --call-id X shows X's deletion, and only that.
        only = kzr("audit", "--root", root, "--call-id", call_id)
        assert only.returncode == 0, only.stderr
        assert only.stdout.splitlines() == [text]


def test_hold_needs_a_reason() -> None:
    with pytest.raises(HoldError):
        Hold.new("call_id", "x", reason=" ")
    with pytest.raises(HoldError):
        Hold.new("number", "x", reason="r")


def test_deletion_ids_differ_per_copy() -> None:
    one = {"location": "/r/a.mp3", "sha256": "0" * 64, "received_at": "t1", "recording_id": "r"}
    assert deletion_id(one) == deletion_id(dict(one))
    assert deletion_id(one) != deletion_id({**one, "received_at": "t2"})


# -- on S3 (moto's server) -------------------------------------------------------------------


def bucket_data(client: Any, bucket: str) -> set[str]:
    """The keys of recordings and sidecars in the bucket (not the store's own state)."""
    out = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        out.update(i["Key"] for i in page.get("Contents", []) if "/.kzr/" not in i["Key"])
    return out


@pytest.fixture
def s3(s3_bucket: tuple[Any, str], moto_endpoint: str) -> Iterator[tuple[Any, dict[str, str]]]:
    from kzr_wsgi.stores.s3 import S3Store

    _, bucket = s3_bucket
    store = S3Store(bucket, "kazoo/", endpoint_url=moto_endpoint)
    locations = fill(store)
    place_holds(store)
    yield store, locations


def key_of(location: str) -> str:
    return location.split("/", 3)[3]


@pytest.mark.slow
def test_s3_dry_run_then_prune(s3: tuple[Any, dict[str, str]], s3_bucket: tuple[Any, str],
                               tmp_path: Path) -> None:
    store, locations = s3
    client, bucket = s3_bucket
    before = bucket_data(client, bucket)
    dry = prune(store, policy_selection(tmp_path), dry_run=True)
    assert {i.location for i in dry.items if i.outcome == "would remove"} == {
        locations[c] for c in expected_pruned()}
    assert dry.held == 3 and bucket_data(client, bucket) == before
    summary = prune(store, policy_selection(tmp_path))
    assert {i.location for i in summary.items if i.outcome == "removed"} == {
        locations[c] for c in expected_pruned()}
    kept = {s.call_id for s in DATASET} - expected_pruned()
    assert call_ids(store) == kept
    # The bucket holds exactly the kept recordings and their sidecars.
    assert bucket_data(client, bucket) == {
        k for c in kept for k in (key_of(locations[c]), key_of(locations[c]) + SIDECAR_SUFFIX)}
    for spec in DATASET:
        assert opens(store, spec) is not spec.pruned, spec
    trail = deletions(store)
    assert sorted(e["location"] for e in trail) == sorted(locations[c] for c in expected_pruned())
    for event in trail:
        spec = next(s for s in DATASET if locations[s.call_id] == event["location"])
        assert event["sha256"] == hashlib.sha256(body_of(spec)).hexdigest()
    assert not list(state_for(store).list("pruning"))
    # A retry of a pruned recording is stored afresh.
    spec = next(s for s in DATASET if s.pruned)
    assert store(recording(spec)).created and opens(store, spec)


def run_s3_prune(bucket: str, endpoint: str, config: Path, *args: str,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kzr_wsgi", "prune", "--s3", f"s3://{bucket}/kazoo",
         "--s3-endpoint", endpoint, "--config", str(config), *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
        cwd=Path(__file__).resolve().parent.parent)


@pytest.mark.slow
@pytest.mark.parametrize("step", ["audit", "index", "file"])
def test_s3_prune_killed_and_rerun(s3: tuple[Any, dict[str, str]], s3_bucket: tuple[Any, str],
                                   moto_endpoint: str, tmp_path: Path, step: str) -> None:
    store, locations = s3
    client, bucket = s3_bucket
    config = tmp_path / "policy.toml"
    config.write_text(POLICY)
    killed = run_s3_prune(bucket, moto_endpoint, config, env={"KZR_TEST_PRUNE_KILL": f"{step}:4"})
    assert killed.returncode == -9, killed.stderr
    rerun = run_s3_prune(bucket, moto_endpoint, config)
    assert rerun.returncode == 0, rerun.stderr
    kept = {s.call_id for s in DATASET} - expected_pruned()
    assert call_ids(store) == kept
    assert bucket_data(client, bucket) == {
        k for c in kept for k in (key_of(locations[c]), key_of(locations[c]) + SIDECAR_SUFFIX)}
    assert sorted(e["location"] for e in deletions(store)) == sorted(
        locations[c] for c in expected_pruned())
    lines = [line for out in (killed.stdout, rerun.stdout) for line in out.splitlines()
             if line.startswith(("removed", "finished"))]
    assert len(lines) == len(expected_pruned())


@pytest.mark.slow
def test_s3_two_prunes_at_once(s3: tuple[Any, dict[str, str]], s3_bucket: tuple[Any, str],
                               moto_endpoint: str, tmp_path: Path) -> None:
    store, locations = s3
    _, bucket = s3_bucket
    config = tmp_path / "policy.toml"
    config.write_text(POLICY)
    removed = two_at_once(lambda: run_s3_prune(bucket, moto_endpoint, config))
    assert sorted(removed) == sorted(locations[c] for c in expected_pruned())
    assert sorted(e["location"] for e in deletions(store)) == sorted(removed)
    assert call_ids(store) == {s.call_id for s in DATASET} - expected_pruned()


# -- the housekeeper ----------------------------------------------------------------------------


def test_disk_lease_is_held_by_one(tmp_path: Path) -> None:
    from kzr_wsgi.housekeeping.housekeeper import DiskLease

    first, second = DiskLease(tmp_path / "l.lock"), DiskLease(tmp_path / "l.lock")
    assert first.acquire() and first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire() and not first.acquire()
    second.release()


def test_one_housekeeper_prunes_per_store(
        disk: tuple[DirectoryStore, dict[str, str]], tmp_path: Path) -> None:
    from kzr_wsgi.housekeeping.housekeeper import Housekeeper, lease_for, prune_job

    store, _ = disk
    policy = policy_selection(tmp_path).policy
    assert policy is not None
    keepers = [Housekeeper([prune_job(DirectoryStore(store.root), policy)],
                           lease_for(store)) for _ in range(2)]
    lines = [keeper.run_once() for keeper in keepers]
    assert lines[1] == []
    [line] = lines[0]
    assert line.startswith(f"housekeeper: prune: removed {len(expected_pruned())} recording(s)")
    assert keepers[0].run_once() == []  # not due again for an hour
    keepers[0].stop()
    assert keepers[1].run_once()[0].startswith("housekeeper: prune: removed 0 recording(s)")
    keepers[1].stop()
    assert call_ids(store) == {s.call_id for s in DATASET} - expected_pruned()


@pytest.mark.slow
def test_s3_lease(s3_bucket: tuple[Any, str], moto_endpoint: str) -> None:
    from kzr_wsgi.housekeeping.housekeeper import S3Lease
    from kzr_wsgi.stores.s3 import S3Store

    _, bucket = s3_bucket
    state = state_for(S3Store(bucket, "kazoo/", endpoint_url=moto_endpoint))
    assert isinstance(state, type(state))
    first = S3Lease(state, ttl=timedelta(seconds=2))  # type: ignore[arg-type]
    second = S3Lease(state, ttl=timedelta(seconds=2))  # type: ignore[arg-type]
    assert first.acquire() and first.acquire()  # renewed
    assert not second.acquire()
    first.release()
    assert second.acquire() and not first.acquire()
    import time as _time

    _time.sleep(2.5)  # the holder stopped renewing: it expires
    assert first.acquire() and not second.acquire()


@pytest.mark.slow
def test_serve_prunes_by_itself_once_per_store(
        disk: tuple[DirectoryStore, dict[str, str]], tmp_path: Path) -> None:
    from servers import serve

    store, _ = disk
    config = tmp_path / "kzr.toml"
    config.write_text(POLICY.replace('default = "90d"', 'default = "90d"\ninterval = "1s"'))
    with serve(tmp_path, "--config", str(config), "--workers", "2", root=store.root) as one, \
            serve(tmp_path, "--config", str(config), "--workers", "2", root=store.root) as two:
        deadline = __import__("time").monotonic() + 30
        while call_ids(store) != {s.call_id for s in DATASET} - expected_pruned():
            assert __import__("time").monotonic() < deadline, one.log() + two.log()
            __import__("time").sleep(0.2)
        __import__("time").sleep(2.5)  # a few more runs
        logs = one.log() + two.log()
    assert "retention default 90d" in one.log()
    runs = [line for line in logs.splitlines() if "housekeeper: prune: removed" in line]
    assert sum(f"removed {len(expected_pruned())} recording(s)" in line for line in runs) == 1
    assert len({line.split("[")[1].split("]")[0] for line in runs}) == 1, runs  # one process
    assert len(deletions(store)) == len(expected_pruned())


@pytest.mark.slow
def test_uploads_during_a_prune_are_intact(tmp_path: Path) -> None:
    from kazoo import httpc_put
    from servers import serve

    store = DirectoryStore(tmp_path / "rec")
    # Many old recordings, so the prune runs while the uploads arrive.
    old = [Spec(f"old-{i}", C, 200 + i % 300, pruned=True) for i in range(400)]
    for spec in old:
        store(recording(spec))
    config = tmp_path / "kzr.toml"
    config.write_text(POLICY)
    new = [Spec(f"new-{i}", C, 1) for i in range(40)]
    with serve(tmp_path, "--read-back", root=store.root) as srv:
        prune_proc = subprocess.Popen(
            [sys.executable, "-m", "kzr_wsgi", "prune", "--root", str(store.root), "--config",
             str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parent.parent)
        replies = []
        for i, spec in enumerate(new):
            rec = recording(spec)
            start = rec.metadata.fields["start"]
            target = (f"/call_recording_{spec.call_id}.mp3?account_id={C}&start={start}"
                      f"&recording_id=rec-{spec.call_id}")
            replies.append(httpc_put(srv.host, srv.port, target, body_of(spec)).status)
            # Kazoo retrying recordings the prune is removing: de-duplicated or afresh.
            retry = old[i * 10]
            rec = recording(retry)
            target = (f"/call_recording_{retry.call_id}.mp3?account_id={C}"
                      f"&start={rec.metadata.fields['start']}&recording_id=rec-{retry.call_id}")
            replies.append(httpc_put(srv.host, srv.port, target, body_of(retry)).status)
            if i == 20:
                overlapped = prune_proc.poll() is None
        out, err = prune_proc.communicate(timeout=120)
        assert prune_proc.returncode == 0, err
        assert all(status in (200, 201) for status in replies), replies
        assert overlapped, "the prune ended before the uploads: not a concurrency test"
        for spec in new:
            assert opens(store, spec)
            rec = recording(spec)
            copy = store.open(rec.name, rec.recording_id)
            try:
                assert copy.fileobj.read() == body_of(spec)
            finally:
                copy.close()
    removed = [line for line in out.splitlines() if line.startswith("removed")]
    assert removed and len(removed) <= len(old)
    disk_consistent(store.root)
    # Every old recording is either removed (and audited once) or stored afresh after.
    audited = [e["call_id"] for e in deletions(store)]
    assert len(audited) == len(set(audited)) == len(removed)
    assert set(audited) | call_ids(store) >= {s.call_id for s in old}


def test_systemd_example_runs_prune_with_the_config(
        disk: tuple[DirectoryStore, dict[str, str]], tmp_path: Path) -> None:
    import configparser
    import shlex
    import shutil

    units = Path(__file__).resolve().parent.parent / "examples" / "systemd"
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.optionxform = str  # type: ignore[assignment,method-assign]
    service.read(units / "kzr-prune.service")
    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.read(units / "kzr-prune.timer")
    assert timer["Timer"]["OnCalendar"] == "hourly"
    name, _, value = service["Service"]["Environment"].partition("=")
    assert (name, value) == ("KZR_CONFIG", "/etc/kzr-wsgi.toml")
    program, *args = shlex.split(service["Service"]["ExecStart"])
    assert program.endswith("/kzr-wsgi") and args == ["prune"]
    # What the unit runs, with this test's file in KZR_CONFIG.
    store, _ = disk
    config = tmp_path / "kzr.toml"
    config.write_text(f'root = "{store.root}"\n' + POLICY)
    done = subprocess.run([sys.executable, "-m", "kzr_wsgi", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, name: str(config)},
                          cwd=units.parent.parent)
    assert done.returncode == 0, done.stderr
    assert call_ids(store) == {s.call_id for s in DATASET} - expected_pruned()
    if shutil.which("systemd-analyze"):
        checked = subprocess.run(["systemd-analyze", "verify", str(units / "kzr-prune.timer"),
                                  str(units / "kzr-prune.service")],
                                 capture_output=True, text=True, timeout=60)
        problems = [line for line in checked.stderr.splitlines()
                    if "is not executable" not in line]  # no kzr-wsgi installed here
        assert problems == [], checked.stderr


@pytest.mark.slow
def test_s3_with_the_postgresql_catalog(s3_bucket: tuple[Any, str], moto_endpoint: str,
                                        pg_url: str, tmp_path: Path) -> None:
    from kzr_wsgi.catalog import open_catalog
    from kzr_wsgi.housekeeping.housekeeper import PostgresLease, lease_for
    from kzr_wsgi.stores.s3 import S3Store

    client, bucket = s3_bucket
    store = S3Store(bucket, "kazoo/", endpoint_url=moto_endpoint, catalog=open_catalog(pg_url))
    locations = fill(store)
    place_holds(store)
    # One recording the catalog missed (a failed row write): prune still finds it.
    missed = next(s for s in DATASET if s.pruned and s.account == C)
    store.catalog.remove(row_id(next(r for r in store.records()  # type: ignore[union-attr]
                                     if r["call_id"] == missed.call_id)))
    config = tmp_path / "kzr.toml"
    config.write_text(f's3 = "s3://{bucket}/kazoo"\ns3-endpoint = "{moto_endpoint}"\n'
                      f'catalog = "{pg_url}"\n' + POLICY)
    everything = {s.call_id for s in DATASET}
    assert ls_call_ids("--config", str(config)) == everything - {missed.call_id}
    dry = invoke("prune", "--config", str(config), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert {line.split()[2] for line in dry.stdout.splitlines() if line.startswith("would")} \
        == {locations[c] for c in expected_pruned()}
    assert call_ids(store) == everything
    done = invoke("prune", "--config", str(config))
    assert done.exit_code == 0, done.output
    kept = everything - expected_pruned()
    # ls (the catalog), the index, read-back and the bucket agree.
    assert ls_call_ids("--config", str(config)) == call_ids(store) == kept
    catalog_agrees(store)
    for spec in DATASET:
        assert opens(store, spec) is not spec.pruned, spec
    assert bucket_data(client, bucket) == {
        k for c in kept for k in (key_of(locations[c]), key_of(locations[c]) + SIDECAR_SUFFIX)}
    trail = deletions(store)
    assert sorted(e["location"] for e in trail) == sorted(locations[c] for c in expected_pruned())
    assert len({e["id"] for e in trail}) == len(trail)
    # With a PostgreSQL catalog, the housekeeper's lock is an advisory lock.
    first, second = lease_for(store, pg_url), lease_for(store, pg_url)
    assert isinstance(first, PostgresLease)
    assert first.acquire() and first.acquire() and not second.acquire()
    first.release()
    assert second.acquire()
    second.release()


@pytest.mark.slow
def test_fan_out_prunes_every_copy(s3_bucket: tuple[Any, str], moto_endpoint: str,
                                   tmp_path: Path) -> None:
    from kzr_wsgi.stores import FanOut
    from kzr_wsgi.stores.s3 import S3Store

    client, bucket = s3_bucket
    bucket_store = S3Store(bucket, "kazoo/", endpoint_url=moto_endpoint)
    disk_store = DirectoryStore(tmp_path / "rec")
    both = FanOut(bucket_store, disk_store)
    for spec in DATASET:
        both(recording(spec))
    place_holds(both)  # with the bucket: every host shares it
    assert Holds(state_for(bucket_store)).list() and not Holds(state_for(disk_store)).list()
    summary = prune(both, policy_selection(tmp_path))
    assert summary.removed == 2 * len(expected_pruned()) and summary.held == 6
    kept = {s.call_id for s in DATASET} - expected_pruned()
    assert call_ids(bucket_store) == call_ids(disk_store) == kept
    disk_consistent(disk_store.root)
    assert len(deletions(both)) == 2 * len(expected_pruned())
    for spec in DATASET:
        assert opens(both, spec) is not spec.pruned, spec


class _Held:
    """A lease this process always holds."""

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


def test_the_master_never_forks_while_a_job_runs() -> None:
    """A worker forked mid-job would inherit SQLite's locks half-held: the fork waits."""
    from kzr_wsgi.housekeeping.housekeeper import Housekeeper, Job

    started, release = threading.Event(), threading.Event()
    state = {"done": False}

    def slow() -> str:
        started.set()
        release.wait(30)
        state["done"] = True
        return "ran"

    keeper = Housekeeper([Job("slow", timedelta(hours=1), slow)], _Held())
    runner = threading.Thread(target=keeper.run_once)
    runner.start()
    assert started.wait(30)
    threading.Timer(0.2, release.set).start()  # this thread is held in fork() until then
    pid = os.fork()
    if pid == 0:
        os._exit(0 if state["done"] else 1)
    _, status = os.waitpid(pid, 0)
    runner.join()
    assert os.waitstatus_to_exitcode(status) == 0  # the child saw the job finished
