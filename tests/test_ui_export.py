"""The export ZIP: read back with the stdlib's zipfile, entry by entry and byte for byte.

Real uploads into a real DirectoryStore for the ordinary case; rows made here for hostile
and colliding names; and (slow) a generated 5 GB+ stream, never stored, through flat
memory, read back as ZIP64 from a sparse file.
"""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ui_fixtures import SECOND, UIWorld

from kzr_wsgi import errors
from kzr_wsgi.catalog import Query, Row
from kzr_wsgi.recording import StoredFile
from kzr_wsgi.ui.api import item as api_item
from kzr_wsgi.ui.export import export_names, export_zip, transcript_name
from kzr_wsgi.ui.manifest import csv_cell, csv_columns, flatten

T0 = 1767225600  # 2026-01-01T00:00:00Z
WHEN = datetime(2026, 3, 1, 9, 5, 7, tzinfo=timezone.utc)


def make_row(row_id: str, call_id: str = "c1", **changes: Any) -> Row:
    base = Row(id=row_id, kind="call", call_id=call_id, recording_id=None, account_id="acct",
               owner_id=None, from_="1001@acme.example", to="1002@acme.example",
               caller_id_name="Alice", caller_id_number="+15550001", start=WHEN,
               duration_ms=1000, received_at=WHEN, size=3, sha256="0" * 64,
               content_type="audio/mpeg", location=f"mem:{row_id}", segments=(),
               filename="call_recording_x.mp3", audio=None, self_test=False)
    return replace(base, **changes)


def opener(bodies: dict[str, bytes], opened: list[StoredFile] | None = None) -> Any:
    def open_audio(row: Row) -> StoredFile:
        if row.id not in bodies:
            raise errors.NotFound("pruned meanwhile")
        stored = StoredFile(io.BytesIO(bodies[row.id]), len(bodies[row.id]), "audio/mpeg",
                            "etag", WHEN, row.location)
        if opened is not None:
            opened.append(stored)
        return stored
    return open_audio


def read_zip(chunks: Iterator[bytes]) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.testzip() is None  # every CRC right
    return archive


def manifest_rows(archive: zipfile.ZipFile) -> list[dict[str, str]]:
    text = archive.read("manifest.csv").decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:])))


# -- the ordinary case: real uploads --------------------------------------------------


def test_an_export_of_real_uploads_reads_back(tmp_path: Path) -> None:
    world = UIWorld(tmp_path / "rec")
    world.upload("call-a", start=T0, caller_id_name='=HYPERLINK("http://evil/?x")')
    world.upload("call-b", start=T0 + 60, caller_id_name="@SUM(A1:A9)",
                 caller_id_number="-2+3")
    world.upload("call-c", start=T0 + 120, body=SECOND[:-100])
    rows = world.catalog.search(Query(limit=10)).items  # newest first: c, b, a
    assert [r.call_id for r in rows] == ["call-c", "call-b", "call-a"]
    said = {"call-a": "WEBVTT\n\n00:00.000 --> 00:01.000\n<v caller>hello\n",
            "call-c": ["WEBVTT\n\n", "00:00.000 --> 00:00.500\n", "<v callee>bye\n"]}
    archive = read_zip(export_zip(
        rows, lambda r: world.store.open_stored(r.location, r.sha256),
        transcript=lambda r: said.get(r.call_id or "")))
    names = export_names(rows)
    audio = [names[r.id] for r in rows]
    assert archive.namelist() == [
        audio[0], transcript_name(audio[0]), audio[1], audio[2], transcript_name(audio[2]),
        "manifest.csv", "manifest.json"]
    assert all(n.startswith("2026010") and n.endswith(".mp3") for n in audio)
    for row in rows:
        assert archive.read(names[row.id]) == world.get(f"/api/recordings/{row.id}/audio").data
    assert archive.read(transcript_name(audio[0])).decode() == "".join(said["call-c"])
    assert archive.read(transcript_name(audio[2])).decode() == said["call-a"]
    info = archive.getinfo(audio[0])
    assert info.compress_type == zipfile.ZIP_STORED and info.file_size == rows[0].size

    items = json.loads(archive.read("manifest.json"))
    api = world.list()["items"]
    assert [i["id"] for i in items] == [i["id"] for i in api]
    for got, want in zip(items, api, strict=True):
        assert set(got) == set(want) | {"transcript_url"}
        assert {k: v for k, v in got.items() if k not in ("audio_url", "transcript_url")} == {
            k: v for k, v in want.items() if k != "audio_url"}
    assert [i["audio_url"] for i in items] == audio
    assert [i["transcript_url"] for i in items] == [
        transcript_name(audio[0]), None, transcript_name(audio[2])]
    assert items[2]["caller_id_name"] == '=HYPERLINK("http://evil/?x")'  # JSON: as it came

    table = manifest_rows(archive)
    assert [r["id"] for r in table] == [i["id"] for i in items]
    assert {"audio.format", "audio.flags", "audio.duration_ms", "segments"} <= set(table[0])
    assert "audio" not in table[0] and "location" not in table[0]
    assert table[2]["caller_id_name"] == "'=HYPERLINK(\"http://evil/?x\")"
    assert table[1]["caller_id_name"] == "'@SUM(A1:A9)"
    assert table[1]["caller_id_number"] == "'-2+3"
    assert table[0]["caller_id_number"] == "'+15550001"
    assert "truncated" in table[0]["audio.flags"]  # the cut upload
    assert table[0]["audio.format"] == "mp3" and table[0]["self_test"] == "false"
    assert table[1]["transcript_url"] == ""


# -- the manifest's cells ---------------------------------------------------------------


@pytest.mark.parametrize("text, cell", [
    ("=1+1", "'=1+1"), ("+1555", "'+1555"), ("-5", "'-5"), ("@x", "'@x"), ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"), ("a=1", "a=1"), ("", ""), (" =1", " =1"), ("'=1", "'=1"),
])
def test_formula_cells_are_quoted(text: str, cell: str) -> None:
    assert csv_cell(text) == cell


def test_flattening() -> None:
    item = {"id": "x", "ok": True, "none": None, "n": 3, "audio": {"flags": [], "fmt": "mp3"},
            "list": ["=a", "b"], "deep": {"a": {"b": 1}}, "objs": [{"k": 1}]}
    assert flatten(item) == {"id": "x", "ok": "true", "none": "", "n": "3", "audio.flags": "",
                             "audio.fmt": "mp3", "list": "=a;b", "deep.a.b": "1",
                             "objs": '{"k":1}'}
    assert csv_columns([{"id": 1, "audio": None}, {"id": 2, "audio": {"format": "wav"}}]) == [
        "id", "audio.format"]


# -- names --------------------------------------------------------------------------------


def test_colliding_names_get_an_id_suffix() -> None:
    rows = [make_row("aaaa1111bbbb2222"), make_row("cccc3333dddd4444"),
            make_row("eeee", call_id="C1"),  # differs only in case
            make_row("ffff", call_id="other", filename="x.wav"),
            make_row("gggg", call_id="other", filename="x.mp3"),  # one stem, two extensions
            make_row("hhhh", call_id="alone")]
    names = export_names([*rows, rows[0]])  # a row listed twice is one entry
    assert names == {
        "aaaa1111bbbb2222": "20260301T090507Z_1001_1002_c1_aaaa1111bbbb.mp3",
        "cccc3333dddd4444": "20260301T090507Z_1001_1002_c1_cccc3333dddd.mp3",
        "eeee": "20260301T090507Z_1001_1002_C1_eeee.mp3",
        "ffff": "20260301T090507Z_1001_1002_other_ffff.wav",
        "gggg": "20260301T090507Z_1001_1002_other_gggg.mp3",
        "hhhh": "20260301T090507Z_1001_1002_alone.mp3",
    }
    assert len({transcript_name(n).casefold() for n in names.values()}) == len(names)
    archive = read_zip(export_zip([*rows, rows[0]], opener({r.id: r.id.encode() for r in rows})))
    assert len(archive.namelist()) == len(rows) + 2
    assert archive.read(names["eeee"]) == b"eeee"


HOSTILE = ["../../etc/passwd", "..", ".", "a/b\\c", "x\0y", "." * 20, "é" * 300,
           "\u202eevil", "con", "-.-", "..\\..\\windows", "\n\r"]


def test_hostile_names_stay_in_their_folder(tmp_path: Path) -> None:
    rows = [make_row(f"id{n}", call_id=call_id, from_=call_id, to=call_id)
            for n, call_id in enumerate(HOSTILE)]
    names = export_names(rows)
    for name in names.values():
        assert "/" not in name and "\\" not in name and ".." not in name
        assert not name.startswith(".") and len(name.encode()) <= 255 - 8
    archive = read_zip(export_zip(rows, opener({r.id: b"abc" for r in rows}),
                                  transcript=lambda r: "WEBVTT\n"))
    target = tmp_path / "out"
    archive.extractall(target)
    written = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert len(written) == 2 * len(rows) + 2
    assert all(p.count("/") == (1 if p.startswith("transcripts/") else 0) for p in written)


_ANY = st.text(max_size=120) | st.sampled_from(HOSTILE)


@given(st.lists(st.tuples(_ANY, _ANY, _ANY, _ANY), min_size=1, max_size=12))
@settings(max_examples=300, deadline=None)
def test_names_are_always_safe_and_unique(fields: list[tuple[str, str, str, str]]) -> None:
    rows = [make_row(f"{n:032x}", call_id=c, from_=f, to=t, filename=fn)
            for n, (c, f, t, fn) in enumerate(fields)]
    names = export_names(rows)
    assert len(names) == len(rows)
    assert len({n.casefold() for n in names.values()}) == len(rows)
    assert len({transcript_name(n).casefold() for n in names.values()}) == len(rows)
    for name in names.values():
        assert "/" not in name and "\\" not in name and ".." not in name and "\0" not in name
        assert name and not name.startswith(".") and len(name.encode()) <= 250


# -- failures and early ends ----------------------------------------------------------


def test_a_recording_that_cannot_be_read_is_left_out_and_said(caplog: Any) -> None:
    rows = [make_row("r1", call_id="one"), make_row("r2", call_id="two")]
    archive = read_zip(export_zip(rows, opener({"r2": b"two"})))
    names = export_names(rows)
    assert archive.namelist() == [names["r2"], "manifest.csv", "manifest.json"]
    items = json.loads(archive.read("manifest.json"))
    assert [(i["id"], i["audio_url"]) for i in items] == [("r1", None), ("r2", names["r2"])]
    assert "r1" in caplog.text and "pruned" not in caplog.text


def test_closing_the_body_early_closes_the_file() -> None:
    rows = [make_row(f"r{n}", call_id=f"c{n}", size=300_000) for n in range(3)]
    opened: list[StoredFile] = []
    body = export_zip(rows, opener({r.id: b"x" * 300_000 for r in rows}, opened),
                      chunk_size=1000)
    for _ in range(5):
        next(body)
    assert len(opened) == 1 and not opened[0].fileobj.closed
    body.close()  # what a WSGI server does when the client goes away
    assert opened[0].fileobj.closed


def test_an_empty_export_is_a_zip_of_its_manifests() -> None:
    archive = read_zip(export_zip([], opener({})))
    assert archive.namelist() == ["manifest.csv", "manifest.json"]
    assert json.loads(archive.read("manifest.json")) == []


def test_a_custom_item(tmp_path: Path) -> None:
    row = make_row("r1")
    archive = read_zip(export_zip([row], opener({"r1": b"x"}), item=lambda r, name: {
        **api_item(r, f"/ui/api/recordings/{r.id}/audio"), "extra": {"k": ["a", "b"]}}))
    [line] = manifest_rows(archive)
    assert line["extra.k"] == "a;b" and line["audio_url"] == export_names([row])["r1"]


# -- 5 GB+, generated, through flat memory ---------------------------------------------


CHUNK = 1 << 20
ZERO = bytes(CHUNK)


class Zeros(io.RawIOBase):
    """``size`` zero bytes, made as they are read (never stored)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        take = min(self.left, CHUNK if n < 0 else n)
        self.left -= take
        return ZERO if take == CHUNK else bytes(take)


@pytest.mark.slow
def test_a_5_gb_export_streams_in_flat_memory_and_reads_back_as_zip64(tmp_path: Path) -> None:
    sizes = {"big": 4_700_000_000, "after": 600_000_000}  # 5.3 GB: an entry and offsets > 4 GiB
    rows = [make_row(i, call_id=i, size=s) for i, s in sizes.items()]

    def open_audio(row: Row) -> StoredFile:
        return StoredFile(Zeros(row.size), row.size, "audio/mpeg", "e", WHEN, row.location)

    path = tmp_path / "export.zip"
    streamed = 0
    tracemalloc.start()
    try:
        with open(path, "wb") as out:
            for chunk in export_zip(rows, open_audio, chunk_size=CHUNK):
                streamed += len(chunk)
                if chunk is ZERO:
                    out.seek(CHUNK, io.SEEK_CUR)  # a hole: the test's disk stays empty
                else:
                    out.write(chunk)
            out.truncate()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert streamed == path.stat().st_size > 5_000_000_000
    assert peak < 8 * CHUNK, f"peak {peak} bytes for {streamed} streamed"
    assert path.stat().st_blocks * 512 < 1_000_000  # sparse: nothing stored

    names = export_names(rows)
    with zipfile.ZipFile(path) as archive:
        infos = {i.filename: i for i in archive.infolist()}
        assert list(infos) == [names["big"], names["after"], "manifest.csv", "manifest.json"]
        assert infos[names["big"]].file_size == sizes["big"] > 0xFFFFFFFF
        assert infos[names["after"]].header_offset > 0xFFFFFFFF
        with archive.open(names["after"]) as entry:  # read through: CRC checked at the end
            read = 0
            while block := entry.read(CHUNK):
                assert block == ZERO[:len(block)]
                read += len(block)
        assert read == sizes["after"]
        items = json.loads(archive.read("manifest.json"))
        assert [i["size"] for i in items] == list(sizes.values())
    with open(path, "rb") as fh:
        fh.seek(-200, io.SEEK_END)
        assert b"PK\x06\x06" in fh.read()  # the ZIP64 end of central directory
