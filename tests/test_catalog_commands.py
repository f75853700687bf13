"""``kzr-wsgi ls``, ``reindex`` and ``verify`` on a real store (in process, click's runner)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from audio_samples import freeswitch_mp3
from click.testing import CliRunner
from test_directory_store import make

from kzr_wsgi.audio import AudioInfo
from kzr_wsgi.catalog import ROOT_CATALOG, Query
from kzr_wsgi.cli import main
from kzr_wsgi.metadata import GREGORIAN_OFFSET
from kzr_wsgi.naming import SIDECAR_SUFFIX
from kzr_wsgi.recording import Kind
from kzr_wsgi.stores import DirectoryStore
from kzr_wsgi.transcribe.model import Segment

DAY = datetime(2026, 1, 31, tzinfo=timezone.utc)


def kazoo(when: datetime) -> str:
    return str(int(when.timestamp()) + GREGORIAN_OFFSET)


def upload(store: DirectoryStore, call_id: str, body: bytes, *, start: datetime | None,
           flags: tuple[str, ...] | None = (), kind: Kind = Kind.CALL,
           **fields: str) -> None:
    """Store ``body`` as the receiver would, its audio already found (``flags``), or not
    inspected (``flags=None``)."""
    query = [(k, v) for k, v in fields.items()]
    if start is not None:
        query.append(("start", kazoo(start)))
    recording = make(body, call_id, query=query, received_at=DAY + timedelta(days=3),
                     kind=kind)
    if flags is not None:
        recording.audio = AudioInfo("mp3", 1000, 16000, 2, 64, flags)
    assert store(recording).created


@pytest.fixture
def store(tmp_path: Path) -> DirectoryStore:
    """A store holding a few recordings of every sort the filters tell apart."""
    s = DirectoryStore(tmp_path / "rec", sweep_every=None)
    upload(s, "a", b"aaa", start=DAY, **{"from": "1001@x.example", "to": "2002@x.example",
                                         "account_id": "acc1"})
    upload(s, "b", b"bbb", start=DAY + timedelta(hours=23, minutes=59), flags=("silent",),
           **{"to": "1001", "account_id": "acc2"})
    upload(s, "c", b"ccc", start=DAY - timedelta(seconds=1), flags=("empty", "truncated"),
           caller_id_number="1001@y", account_id="acc1")
    upload(s, "d", b"ddd", start=DAY + timedelta(days=1), flags=("not_audio",),
           **{"from": "3003"})
    upload(s, "e", b"eee", start=None, flags=None)  # sorted by the time received
    upload(s, "kzr-check-1", b"fff", start=DAY)
    return s


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def ls(store: DirectoryStore, *args: str) -> list[str | None]:
    out = run("ls", "--root", str(store.root), "--json", *args)
    return [json.loads(line)["call_id"] for line in out.splitlines()]


@pytest.mark.parametrize(("args", "expected"), [
    pytest.param([], ["e", "d", "b", "a", "c"], id="all-newest-first"),
    pytest.param(["--call-id", "b"], ["b"], id="call-id"),
    pytest.param(["--number", "1001"], ["b", "a", "c"], id="number"),
    pytest.param(["--number", "1001@elsewhere"], ["b", "a", "c"], id="number-with-realm"),
    pytest.param(["--number", "2002@x.example"], ["a"], id="number-to"),
    pytest.param(["--account", "acc1"], ["a", "c"], id="account"),
    pytest.param(["--since", "2026-01-31", "--until", "2026-01-31"], ["b", "a"],
                 id="bare-date-until-takes-the-day"),
    pytest.param(["--until", "2026-01-30T23:59:59Z"], ["c"], id="until-time"),
    pytest.param(["--since", "2026-02-01T00:00:00+00:00"], ["e", "d"], id="since-time"),
    pytest.param(["--flag", "silent", "--flag", "empty"], ["b", "c"], id="flags-or"),
    pytest.param(["--flag", "truncated"], ["c"], id="flag"),
    pytest.param(["--flagged"], ["d", "b", "c"], id="flagged"),
    pytest.param(["--flagged", "--account", "acc1"], ["c"], id="filters-and"),
    pytest.param(["--limit", "2"], ["e", "d"], id="limit"),
    pytest.param(["--self-test", "--call-id", "kzr-check-1"], ["kzr-check-1"],
                 id="self-test-shown-when-asked"),
    pytest.param(["--call-id", "kzr-check-1"], [], id="self-test-hidden"),
])
def test_ls_filters(store: DirectoryStore, args: list[str], expected: list[str]) -> None:
    assert ls(store, *args) == expected


def test_ls_json_has_the_row_keys_and_text_lines_escape_control_characters(
        store: DirectoryStore) -> None:
    row = json.loads(run("ls", "--root", str(store.root), "--json", "--call-id", "c"))
    assert row["caller_id_number"] == "1001@y" and row["account_id"] == "acc1"
    assert row["start"] == "2026-01-30T23:59:59+00:00"
    assert row["audio"]["flags"] == ["empty", "truncated"]
    assert row["received_at"].startswith("2026-02-03T")
    upload(store, "evil\x1b[2J", b"zzz", start=DAY)
    out = run("ls", "--root", str(store.root), "--number", "1001")
    assert "\x1b" not in out and len(out.splitlines()) == 3
    assert "\\x1b[2J" in run("ls", "--root", str(store.root))


def test_ls_says_when_there_is_no_catalog(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "rec", catalog=None, sweep_every=None)
    upload(store, "c1", b"abc", start=None)
    out = run("ls", "--root", str(store.root), code=1)
    assert "reindex" in out
    # No store at all (a mistyped --root): reindex would not help, so it is not suggested.
    out = run("ls", "--root", str(tmp_path / "none"), code=1)
    assert "no store at" in out and "check --root" in out and "reindex" not in out


def test_reindex_after_losing_the_catalog_gives_the_same_listing(
        store: DirectoryStore) -> None:
    root = str(store.root)
    before = run("ls", "--root", root, "--json", "--self-test")
    for leftover in store.root.glob(str(ROOT_CATALOG) + "*"):
        leftover.unlink()
    run("reindex", "--root", root)
    assert run("ls", "--root", root, "--json", "--self-test") == before
    run("reindex", "--root", root)  # idempotent
    assert run("ls", "--root", root, "--json", "--self-test") == before


def test_reindex_drops_rows_whose_copy_is_no_longer_indexed(store: DirectoryStore) -> None:
    record = next(r for r in store.records() if r["call_id"] == "a")
    name = Path(record["location"])
    entries = [p for p in (store.root / ".kzr" / "index").rglob("*.json")
               if os.path.samefile(p, name.with_name(name.name + SIDECAR_SUFFIX))]
    assert len(entries) == 1
    entries[0].unlink()
    out = run("reindex", "--root", str(store.root))
    assert "1 stale row(s) removed" in out
    assert "a" not in ls(store)


def test_rewrite_record_replaces_the_sidecar_and_its_index_entry_as_one_file(
        store: DirectoryStore) -> None:
    record = next(r for r in store.records() if r["call_id"] == "e")
    del record["audio"]  # as a sidecar from before this round
    assert store.rewrite_record(record)
    record["audio"] = {"format": "mp3", "duration_ms": 5, "sample_rate": 8000,
                       "channels": 1, "bitrate_kbps": 16, "flags": []}
    assert store.rewrite_record(record)
    final = Path(record["location"])
    sidecar = final.with_name(final.name + SIDECAR_SUFFIX)
    assert json.loads(sidecar.read_text())["audio"]["duration_ms"] == 5
    assert sidecar.stat().st_nlink == 2  # still one file: sidecar and index entry
    again = next(r for r in store.records() if r["call_id"] == "e")
    assert again["audio"]["duration_ms"] == 5 and "location" not in json.loads(
        sidecar.read_text())
    assert not list((store.root / ".kzr" / "tmp").glob("*.part"))


def test_verify_names_a_flipped_byte_and_a_missing_file_and_exits_1(
        store: DirectoryStore) -> None:
    root = str(store.root)
    out = run("verify", "--root", root)
    # (Flags come from inspecting the bytes again: see test_verify_reports_flagged_audio.)
    assert out.splitlines()[-1].startswith("verified 6 copies (18 bytes): 0 missing, "
                                           "0 changed, ")
    records = {r["call_id"]: r for r in store.records()}
    target = Path(records["b"]["location"])
    data = bytearray(target.read_bytes())
    data[1] ^= 0x01
    target.write_bytes(bytes(data))
    out = run("verify", "--root", root, code=1)
    changed = [line for line in out.splitlines() if line.startswith("CHANGED")]
    assert changed == [line for line in changed if str(target) in line] and len(changed) == 1
    assert "0 missing, 1 changed" in out.splitlines()[-1]
    Path(records["d"]["location"]).unlink()
    out = run("verify", "--root", root, code=1)
    assert any(line.startswith("MISSING") and records["d"]["location"] in line
               for line in out.splitlines())
    # --since (by time received): every copy here was received on 2026-02-03.
    out = run("verify", "--root", root, "--since", "2026-02-04", code=0)
    assert out.splitlines()[-1].startswith("verified 0 copies")


def _as_legacy(store: DirectoryStore) -> None:
    """Make the store look like one from before this round: no catalog, no ``audio``."""
    for record in store.records():
        del record["audio"]
        assert store.rewrite_record(record)
    for leftover in store.root.glob(str(ROOT_CATALOG) + "*"):
        leftover.unlink()


def test_a_store_from_before_the_catalog_is_catalogued_and_inspected_by_reindex(
        tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "rec", sweep_every=None)
    ten = freeswitch_mp3(10.0)
    upload(store, "ten", ten, start=DAY, flags=None, duration_ms="10000")
    upload(store, "short", ten, start=DAY, flags=None, duration_ms="30000",
           recording_id="r2")
    upload(store, "html", b"<html><body>502 Bad Gateway</body></html>", start=DAY,
           flags=None)
    upload(store, "empty", b"", start=DAY, flags=None)
    _as_legacy(store)
    root = str(store.root)
    run("ls", "--root", root, code=1)
    out = run("reindex", "--root", root)
    assert "4 inspected" in out
    got: dict[str, Any] = {json.loads(line)["call_id"]: json.loads(line) for line in
                           run("ls", "--root", root, "--json").splitlines()}
    assert sorted(got) == ["empty", "html", "short", "ten"]
    assert got["ten"]["audio"]["format"] == "mp3"
    assert got["ten"]["audio"]["flags"] == []
    assert abs(got["ten"]["audio"]["duration_ms"] - 10_000) < 400
    assert got["short"]["audio"]["flags"] == ["shorter_than_reported"]
    assert got["html"]["audio"]["flags"] == ["not_audio"]
    assert got["empty"]["audio"]["flags"] == ["empty"]
    # The sidecars themselves now carry it (one file: sidecar and index entry).
    for record in store.records():
        final = Path(record["location"])
        sidecar = final.with_name(final.name + SIDECAR_SUFFIX)
        assert json.loads(sidecar.read_text())["audio"] == got[record["call_id"]]["audio"]
        assert sidecar.stat().st_nlink == 2
    assert sorted(ls(store, "--flagged")) == ["empty", "html", "short"]
    # Nothing left to inspect: a second run reads no file.
    assert "0 inspected" in run("reindex", "--root", root)
    out = run("verify", "--root", root)
    assert sorted(line.split()[0] for line in out.splitlines()[:-1]) == ["FLAGGED"] * 3
    assert out.splitlines()[-1].endswith("0 missing, 0 changed, 3 flagged")


def test_ls_text_combines_with_every_filter_and_shows_where(store: DirectoryStore) -> None:
    catalog = store.catalog
    assert catalog is not None
    said = {"a": ["Hello, I want to cancel", "my subscription today"],
            "b": ["cancel my subscription\x1b[2J please"], "c": ["nothing to see"],
            "d": ["cancel it"], "kzr-check-1": ["cancel my subscription"]}
    for row in catalog.iter_search(Query(self_test=True)):
        texts = said.get(row.call_id or "")
        if texts:
            catalog.put_segments(row.id, [Segment(1.5 + 3 * i, 3.0 + 3 * i, t, "left")
                                          for i, t in enumerate(texts)])
    assert ls(store, "--text", "cancel") == ["d", "b", "a"]
    assert ls(store, "--text", 'cancel "my subscription"') == ["b", "a"]
    assert ls(store, "--text", '"cancel my subscription"') == ["b"]
    assert ls(store, "--text", "cancel", "--account", "acc1") == ["a"]
    assert ls(store, "--text", "cancel", "--flagged") == ["d", "b"]
    assert ls(store, "--text", "cancel", "--since", "2026-02-01") == ["d"]
    assert ls(store, "--text", "cancel", "--limit", "1") == ["d"]
    assert ls(store, "--text", "cancel", "--self-test", "--call-id", "kzr-check-1") == [
        "kzr-check-1"]
    assert ls(store, "--text", "* - :") == ls(store)  # nothing searchable: no text filter
    row = json.loads(run("ls", "--root", str(store.root), "--json", "--text", "subscription",
                         "--call-id", "a"))
    assert row["matches"] == [{"start": 4.5, "end": 6.0, "speaker": "caller",
                               "snippet": "my subscription today", "highlights": [[3, 15]]}]
    assert "matches" not in json.loads(run("ls", "--root", str(store.root), "--json",
                                           "--call-id", "a"))
    out = run("ls", "--root", str(store.root), "--text", "please")
    # A snippet shows a control character as a space; the rest is escaped as ls does.
    assert out.strip().endswith("@1.5s caller: cancel my subscription [2J please")
    assert "\x1b" not in out
