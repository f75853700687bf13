"""DirectoryStore in-process: what lands on disk for each Recording (no sockets)."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from servers import store_temporaries

from kzr_wsgi.body import Body
from kzr_wsgi.errors import BodyIncomplete, BodyTooLarge, NotFound
from kzr_wsgi.forms import CALL_PREFIX
from kzr_wsgi.metadata import parse_metadata
from kzr_wsgi.naming import SIDECAR_SUFFIX
from kzr_wsgi.recording import Kind, Name, Recording, Stored
from kzr_wsgi.stores import DirectoryStore

DAY = datetime(2024, 3, 9, 23, 59, 59, tzinfo=timezone.utc)


def make(
    body: bytes,
    call_id: str = "abc",
    *,
    query: list[tuple[str, str | None]] | None = None,
    received_at: datetime = DAY,
    segments: tuple[str, ...] = (),
    announced: int | None = -1,
    max_size: int = 1 << 30,
    kind: Kind = Kind.CALL,
    content_type: str | None = "audio/mpeg",
) -> Recording:
    """A Recording as the middleware builds it, its stream over ``body``."""
    length = len(body) if announced == -1 else announced
    filename = (CALL_PREFIX if kind is Kind.CALL else "") + call_id + ".mp3"
    return Recording(
        name=Name(kind, segments, filename),
        call_id=call_id,
        ext="mp3",
        content_type=content_type,
        content_length=length,
        metadata=parse_metadata(query or []),
        query="",
        remote_addr="192.0.2.7",
        stream=Body(io.BytesIO(body), length, max_size),
        received_at=received_at,
    )


def visible(root: Path) -> list[Path]:
    """Every file under root but the store's own ``.kzr`` state."""
    return sorted(p for p in root.rglob("*") if p.is_file() and ".kzr" not in p.relative_to(
        root).parts)


def data_files(root: Path) -> list[Path]:
    return [p for p in visible(root) if not p.name.endswith(SIDECAR_SUFFIX)]


def sidecar(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.with_name(path.name + SIDECAR_SUFFIX).read_text())
    return data


def temporaries(root: Path) -> list[str]:
    return store_temporaries(root)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "does" / "not" / "exist"


def test_root_created_and_bytes_land_with_sidecar(root: Path) -> None:
    body = os.urandom(300_000)
    store = DirectoryStore(root)
    rec = make(body, query=[("start", "63871234567"), ("account_id", "acc1"),
                            ("recording_id", "r1"), ("owner_id", ""), ("x_new", "v")])
    result = store(rec)
    assert isinstance(result, Stored) and result.created
    [path] = data_files(root)
    assert str(path) == result.location
    assert path.read_bytes() == body
    assert result.size == len(body)
    assert result.sha256 == hashlib.sha256(body).hexdigest()
    assert path.relative_to(root).as_posix() == "call/acc1/2023/12/31/call_recording_abc.mp3"
    meta = sidecar(path)
    assert meta["call_id"] == "abc"
    assert meta["size"] == len(body)
    assert meta["sha256"] == result.sha256
    assert meta["content_type"] == "audio/mpeg"
    assert meta["recording_id"] == "r1"
    assert meta["received_at"] == DAY.isoformat()
    assert meta["remote_addr"] == "192.0.2.7"
    assert meta["metadata"]["start_iso"] == "2023-12-31T09:36:07+00:00"
    assert meta["metadata"]["fields"]["owner_id"] is None
    assert meta["metadata"]["fields"]["x_new"] == "v"
    assert meta["path"] == path.relative_to(root).as_posix()
    assert temporaries(root) == []


def test_empty_body_is_a_file(root: Path) -> None:
    result = DirectoryStore(root)(make(b""))
    assert result.size == 0 and Path(result.location).read_bytes() == b""


def test_five_identical_uploads_keep_one_copy(root: Path) -> None:
    store = DirectoryStore(root)
    body = os.urandom(10_000)
    results = [store(make(body, query=[("recording_id", "r1")])) for _ in range(5)]
    assert [r.created for r in results] == [True, False, False, False, False]
    assert len({r.location for r in results}) == 1
    assert len(data_files(root)) == 1
    assert len(visible(root)) == 2  # the file and its sidecar


def test_retry_after_midnight_keeps_one_copy(root: Path) -> None:
    # No `start`: the layout falls back to the time received, which moved a day on.
    store = DirectoryStore(root)
    body = os.urandom(5000)
    first = store(make(body, received_at=DAY))
    again = store(make(body, received_at=DAY + timedelta(seconds=2)))
    later = store(make(body, received_at=DAY + timedelta(days=3)))
    assert first.created and not again.created and not later.created
    assert again.location == later.location == first.location
    assert len(data_files(root)) == 1


def test_retry_with_start_lands_where_the_original_did(root: Path) -> None:
    store = DirectoryStore(root)
    q: list[tuple[str, str | None]] = [("start", "63871234567"), ("recording_id", "r9")]
    first = store(make(b"audio", query=q, received_at=DAY))
    assert "2023/12/31" in first.location
    second = store(make(b"audio", query=q, received_at=DAY + timedelta(days=1)))
    assert second.location == first.location and not second.created


def test_retry_on_other_store_instance_same_root(root: Path) -> None:
    DirectoryStore(root)(make(b"audio"))
    assert not DirectoryStore(root)(make(b"audio")).created
    assert len(data_files(root)) == 1


def test_two_bodies_one_name_both_kept(root: Path) -> None:
    store = DirectoryStore(root)
    a, b = store(make(b"first recording")), store(make(b"second recording"))
    assert a.created and b.created and a.location != b.location
    files = data_files(root)
    assert {p.read_bytes() for p in files} == {b"first recording", b"second recording"}
    assert sorted(p.name for p in files) == ["call_recording_abc.mp3", "call_recording_abc~2.mp3"]
    assert {sidecar(p)["call_id"] for p in files} == {"abc"}
    # Each body's retry still finds its own copy.
    assert store(make(b"second recording")).location == b.location


def test_two_recording_ids_same_name_both_kept(root: Path) -> None:
    # start/stop/start in one call: same call id, same bytes even, two recordings.
    store = DirectoryStore(root)
    a = store(make(b"same", query=[("recording_id", "r1")]))
    b = store(make(b"same", query=[("recording_id", "r2")]))
    assert a.created and b.created and a.location != b.location
    assert {sidecar(p)["recording_id"] for p in data_files(root)} == {"r1", "r2"}
    assert not store(make(b"same", query=[("recording_id", "r2")])).created


def test_same_recording_id_new_body_is_not_overwritten(root: Path) -> None:
    store = DirectoryStore(root)
    store(make(b"one", query=[("recording_id", "r1")]))
    store(make(b"two", query=[("recording_id", "r1")]))
    assert {p.read_bytes() for p in data_files(root)} == {b"one", b"two"}


def test_concurrent_retries_keep_one_copy(root: Path) -> None:
    store = DirectoryStore(root)
    body = os.urandom(200_000)
    results: list[Stored] = []
    barrier = threading.Barrier(6)

    def upload() -> None:
        barrier.wait()
        results.append(store(make(body)))

    threads = [threading.Thread(target=upload) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 6
    assert sum(r.created for r in results) == 1
    assert len(data_files(root)) == 1
    assert temporaries(root) == []


HOSTILE_IDS = [
    "a/b", "../../../../etc/passwd", "..", ".", "%2F", "a%2eb", "%252e", "a\\..\\b",
    "\"quoted\" 'single'", "é€📞", "x" * 1000, "con", "a" + SIDECAR_SUFFIX, "~", "#", "%",
    "a\udcffb",
]


def test_hostile_call_ids_stay_inside_root_and_apart(root: Path) -> None:
    store = DirectoryStore(root)
    for i, call_id in enumerate(HOSTILE_IDS):
        result = store(make(f"body {i}".encode(), call_id))
        path = Path(result.location)
        assert path.resolve().is_relative_to(root.resolve())
        assert path.parent.relative_to(root).as_posix() == "call/unknown/2024/03/09"
        assert len(path.name.encode()) <= 255
    files = data_files(root)
    assert len(files) == len(HOSTILE_IDS)  # nobody shared a file
    by_id = {sidecar(p)["call_id"]: p.read_bytes() for p in files}
    assert by_id == {cid: f"body {i}".encode() for i, cid in enumerate(HOSTILE_IDS)}


def test_hostile_segments_and_account_stay_inside(root: Path) -> None:
    store = DirectoryStore(root, layout="{account_id}/{segments}")
    result = store(make(b"x", segments=("..", "../..", "/etc"),
                        query=[("account_id", "../../..")]))
    assert Path(result.location).resolve().is_relative_to(root.resolve())
    assert sidecar(Path(result.location))["segments"] == ["..", "../..", "/etc"]


def test_body_cut_short_leaves_nothing(root: Path) -> None:
    store = DirectoryStore(root)
    with pytest.raises(BodyIncomplete):
        store(make(b"x" * 1000, announced=5000))
    assert visible(root) == []
    assert temporaries(root) == []
    # A complete retry afterwards is stored normally.
    assert store(make(b"x" * 5000)).created


def test_chunked_body_over_limit_leaves_nothing(root: Path) -> None:
    store = DirectoryStore(root)
    with pytest.raises(BodyTooLarge):
        store(make(b"x" * 5000, announced=None, max_size=1000))
    assert visible(root) == []
    assert temporaries(root) == []


def test_handler_read_failure_mid_body_leaves_nothing(root: Path) -> None:
    class Dropping(io.RawIOBase):
        def __init__(self) -> None:
            self.sent = 0

        def read(self, size: int = -1) -> bytes:
            if self.sent >= 3 << 20:
                raise ConnectionResetError
            self.sent += 1 << 20
            return b"x" * (1 << 20)

    rec = make(b"")
    rec.stream = Body(Dropping(), 10 << 20)
    with pytest.raises(BodyIncomplete):
        DirectoryStore(root)(rec)
    assert visible(root) == [] and temporaries(root) == []


# -- reading back ---------------------------------------------------------------------------


def test_open_latest_and_by_recording_id(root: Path) -> None:
    store = DirectoryStore(root)
    store(make(b"one", query=[("recording_id", "r1")], received_at=DAY))
    store(make(b"two", query=[("recording_id", "r2")], received_at=DAY + timedelta(hours=1)))
    name = Name(Kind.CALL, (), "call_recording_abc.mp3")
    latest = store.open(name)
    try:
        assert latest.fileobj.read() == b"two"
        assert latest.etag == hashlib.sha256(b"two").hexdigest()
        assert latest.content_type == "audio/mpeg" and latest.size == 3
    finally:
        latest.close()
    first = store.open(name, "r1")
    try:
        assert first.fileobj.read() == b"one"
    finally:
        first.close()
    with pytest.raises(NotFound):
        store.open(name, "r3")
    with pytest.raises(NotFound):
        store.open(Name(Kind.CALL, (), "call_recording_nope.mp3"))


def test_copy_removed_by_hand_is_stored_again(root: Path) -> None:
    store = DirectoryStore(root)
    first = store(make(b"audio"))
    Path(first.location).unlink()
    again = store(make(b"audio"))
    assert again.created and Path(again.location).read_bytes() == b"audio"


# -- layout and housekeeping ---------------------------------------------------------------------


def test_custom_layout(root: Path) -> None:
    store = DirectoryStore(root, layout="{account_id}/{segments}/{yyyy}")
    result = store(make(b"x", segments=("acc", "user 7"), query=[("account_id", "A")]))
    assert Path(result.location).relative_to(root).as_posix() == (
        "A/acc/user%207/2024/call_recording_abc.mp3")


@pytest.mark.parametrize("layout", ["{nope}", "../x", "{kind}/../../.."])
def test_bad_layout_refused_at_start(root: Path, layout: str) -> None:
    with pytest.raises(ValueError):
        DirectoryStore(root, layout=layout)


def test_reap_removes_dead_writers_files_only(root: Path) -> None:
    store = DirectoryStore(root)
    tmp = root / ".kzr" / "tmp"
    old = time.time() - 3600
    dead = tmp / "dead.part"
    dead.write_bytes(b"half a recording")
    os.utime(dead, (old, old))
    young = tmp / "young.part"
    young.write_bytes(b"just created, not yet locked")
    live = tmp / "live.part"
    live.write_bytes(b"being written")
    os.utime(live, (old, old))
    # A live writer (here: another open file description) holds its file's lock.
    with open(live, "rb") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        assert store.reap() == 1
        assert not dead.exists() and young.exists() and live.exists()
    # Once its writer is gone, a new store's first use (here: serve's preflight) reaps it.
    os.utime(young, (old, old))
    DirectoryStore(root).preflight()
    assert temporaries(root) == []


def test_the_older_spellings_still_work(root: Path) -> None:
    # sweep_min_age/sweep_every and sweep()/housekeep() before reap and upkeep had names.
    store = DirectoryStore(root, sweep_min_age=0.0, sweep_every=None, catalog=None)
    assert (store.reap_min_age, store.upkeep_every) == (0.0, None)
    dead = root / ".kzr" / "tmp" / "dead.part"
    dead.write_bytes(b"half a recording")  # nobody holds its lock
    assert store.sweep() == 1 and not dead.exists()
    dead.write_bytes(b"half a recording")
    store.housekeep()
    assert not dead.exists()
