"""Crashes lose nothing and leave nothing: kills at each step of the commit, SIGKILL in the
middle of a large upload with an immediate restart, a dead writer beside a live server,
and a short run of the crash loop (``benchmarks/crash_loop.py``).

A kill inside the commit is made with the store's named crash points
(:mod:`kzr_wsgi.faults`): a forked copy of the test process, or a ``serve``, is killed
(``SIGKILL``) exactly there.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from apps import host_app
from flask import Flask
from kazoo import httpc_put
from servers import Server, serve, store_temporaries, wsgi_server
from test_directory_store import make
from werkzeug.test import Client

from kzr_wsgi import KazooRecordings
from kzr_wsgi.catalog import Catalog, Query, row_id
from kzr_wsgi.faults import CRASH_AT_ENV, CRASH_STATUS, POINTS
from kzr_wsgi.flask import KazooFlask
from kzr_wsgi.naming import SIDECAR_SUFFIX
from kzr_wsgi.stores import DirectoryStore

REPO = Path(__file__).resolve().parent.parent
MB = 1 << 20
H = "127.0.0.1"
#: How long a dead writer's temporary file may outlive it.
DEBRIS_BOUND = 10.0
DIR_POINTS = sorted(p for p in POINTS if p.startswith("dir."))


def data_files(root: Path) -> list[Path]:
    """Recordings a reader of the store sees (no sidecars, nothing under .kzr)."""
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and ".kzr" not in p.relative_to(root).parts
                  and not p.name.endswith(SIDECAR_SUFFIX))


def index_entries(root: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in (root / ".kzr" / "index").glob("*/*.json")]


def pending(root: Path) -> list[Path]:
    """Markers of commits in flight (or left by a writer that died in one)."""
    directory = root / ".kzr" / "pending"
    return sorted(directory.iterdir()) if directory.is_dir() else []


def markers(root: Path) -> list[Path]:
    """Every marker: uploads in flight (one each: commit and row), and any in the
    directory of catalog-only markers stores from before wrote."""
    directory = root / ".kzr" / "uncatalogued"
    return pending(root) + (sorted(directory.iterdir()) if directory.is_dir() else [])


def assert_one_copy(root: Path, body: bytes) -> Path:
    """Exactly one file holds ``body``, with its sidecar and one index entry naming it."""
    digest = hashlib.sha256(body).hexdigest()
    (only,) = data_files(root)
    assert only.read_bytes() == body
    sidecar = json.loads(only.with_name(only.name + SIDECAR_SUFFIX).read_text())
    assert sidecar["sha256"] == digest and sidecar["size"] == len(body)
    (entry,) = index_entries(root)
    assert entry["sha256"] == digest and root / str(entry["path"]) == only
    # And one catalog row, naming that file.
    catalog = Catalog.for_root(root)
    try:
        (row,) = catalog.search(Query(limit=10)).items
    finally:
        catalog.close()
    assert (row.id, row.sha256, row.location) == (row_id(sidecar), digest, str(only))
    return only


def die_at(point: str, store: DirectoryStore, body: bytes) -> int:
    """Run one upload in a forked copy of this process told to die at ``point``."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.environ[CRASH_AT_ENV] = point
            store(make(body))
        finally:
            os._exit(1)  # reached only when the point was never passed
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


# -- a kill at each step of the commit -------------------------------------------------------


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed-tmp", "named-tmp"])
@pytest.mark.parametrize("then", ["restart", "live-store"])
@pytest.mark.parametrize("point", DIR_POINTS)
def test_kill_at_each_commit_step_then_retry_keeps_one_copy(
    tmp_path: Path, point: str, then: str, unnamed: bool
) -> None:
    root = tmp_path / "recordings"
    store = DirectoryStore(root, unnamed_temporaries=unnamed, upkeep_every=None,
                           reap_min_age=0.0)  # no live writer here to spare
    assert store.unnamed is unnamed
    store.preflight()  # in use (serving) before the writer dies
    body = os.urandom(300_000)
    assert die_at(point, store, body) == CRASH_STATUS
    placed = point != "dir.marked"
    assert len(data_files(root)) == int(placed)
    assert len(pending(root)) == 1  # the dead writer's marker

    if then == "restart":
        store = DirectoryStore(root, unnamed_temporaries=unnamed, upkeep_every=None,
                               reap_min_age=0.0)  # no live writer here to spare
        store.preflight()  # start-up: serve's, before it listens
        # Start-up finished what the dead writer had placed, and dropped the rest.
        assert pending(root) == []
        if placed:
            assert_one_copy(root, body)
    # Kazoo retries the upload it never got an answer for.
    result = store(make(body))
    # Answered 201 unless a finished commit was already there to find.
    assert result.created is (then == "live-store" and point != "dir.indexed" or not placed)
    store.upkeep()  # what the serving process does every few seconds
    only = assert_one_copy(root, body)
    assert result.location == str(only)
    assert markers(root) == [] and store_temporaries(root) == []
    # And a retry of the now acknowledged upload is a duplicate.
    assert store(make(body)).created is False
    assert len(data_files(root)) == 1


def test_a_marker_whose_name_went_to_another_upload_is_dropped(tmp_path: Path) -> None:
    # Killed between writing the marker and linking: meanwhile another upload took the
    # name the marker mentions. Recovery must not adopt that other upload's file.
    root = tmp_path / "recordings"
    store = DirectoryStore(root, upkeep_every=None)
    store.preflight()
    body = os.urandom(1000)
    assert die_at("dir.marked", store, body) == CRASH_STATUS
    other = os.urandom(2000)
    assert store(make(other)).created  # same name, another body: takes the free name
    DirectoryStore(root, upkeep_every=None).preflight()  # start-up
    assert pending(root) == []
    assert [p.read_bytes() for p in data_files(root)] == [other]
    assert len(index_entries(root)) == 1


def test_named_temporary_of_a_dead_writer_is_reaped_while_serving(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    store = DirectoryStore(root, unnamed_temporaries=False, reap_min_age=0.5, upkeep_every=1.0)
    store.preflight()  # serving
    dead = root / ".kzr" / "tmp" / "dead.part"
    dead.write_bytes(b"half a recording")  # nobody holds its lock
    started = time.monotonic()
    while dead.exists() and time.monotonic() - started < DEBRIS_BOUND:
        time.sleep(0.1)
    assert not dead.exists()
    del store


def test_no_o_tmpfile_falls_back_to_named_files(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def no_tmpfile(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(95, "Operation not supported")  # EOPNOTSUPP, as vfat or NFS say
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", no_tmpfile)
    root = tmp_path / "recordings"
    store = DirectoryStore(root, upkeep_every=None)
    assert store.unnamed is False
    body = os.urandom(10_000)
    assert store(make(body)).created
    assert_one_copy(root, body)
    assert store_temporaries(root) == []


# -- no constructor starts anything; each process's first use does ----------------------------


#: Run in a process of its own (no other store has started the upkeep there): what a
#: store's construction, its first use, and a fork's child each start.
UPKEEP_SCRIPT = r"""
import json, os, sys, threading, time
from kzr_wsgi.stores import DirectoryStore

root = sys.argv[1]

def looked_at(dead):
    return {"threads": sorted(t.name for t in threading.enumerate() if t.name == "kzr-upkeep"),
            "dead_left": os.path.exists(dead)}

def dead_writers_file(name):
    path = os.path.join(root, ".kzr", "tmp", name)
    with open(path, "wb") as fh:
        fh.write(b"half a recording")
    os.utime(path, (time.time() - 3600,) * 2)
    return path

# A pass every hour: only the first passes can have reaped anything below.
store = DirectoryStore(root, unnamed_temporaries=False, upkeep_every=3600)
first = dead_writers_file("first.part")
seen = {"built": looked_at(first)}
list(store.records())
seen["used"] = looked_at(first)
second = dead_writers_file("second.part")
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    forked = looked_at(second)
    list(store.records())
    os.write(write_end, json.dumps([forked, looked_at(second)]).encode())
    os._exit(0)
os.close(write_end)
os.waitpid(pid, 0)
seen["forked"], seen["child_used"] = json.loads(os.read(read_end, 65536))
print(json.dumps(seen))
"""


def test_a_store_starts_nothing_until_its_first_use_in_each_process(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", UPKEEP_SCRIPT, str(tmp_path / "rec")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    # Built: no thread, nothing looked at.
    assert seen["built"] == {"threads": [], "dead_left": True}
    # First use: its first pass (the dead writer's file reaped), then the thread.
    assert seen["used"] == {"threads": ["kzr-upkeep"], "dead_left": False}
    # A fork's child inherits neither; its own first use starts both.
    assert seen["forked"] == {"threads": [], "dead_left": True}
    assert seen["child_used"] == {"threads": ["kzr-upkeep"], "dead_left": False}


def die_in_the_middleware(root: Path, target: str, body: bytes) -> int:
    """PUT ``body`` through the bare middleware in a forked copy of this process that is
    killed in the commit, its file placed (and named temporary files, as without
    ``O_TMPFILE``)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.environ[CRASH_AT_ENV] = "dir.placed"
            store = DirectoryStore(root, unnamed_temporaries=False, upkeep_every=None)
            Client(KazooRecordings(host_app, store)).put(
                target, data=body, headers={"Content-Type": "audio/mpeg"})
        finally:
            os._exit(1)  # reached only when the point was never passed
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("host", ["bare middleware", "Flask extension"])
def test_a_host_app_finishes_a_dead_writers_upload_and_reaps_on_first_use(
        tmp_path: Path, host: str) -> None:
    # No serve, no preflight: the store a host app builds starts on its first request.
    root = tmp_path / "recordings"
    body = os.urandom(200_000)
    target = "/call_recording_first.mp3?recording_id=r-1"
    assert die_in_the_middleware(root, target, body) == CRASH_STATUS
    assert len(data_files(root)) == 1 and len(pending(root)) == 1  # placed, not indexed
    dead = root / ".kzr" / "tmp" / "dead.part"  # another writer's, long dead
    dead.write_bytes(b"half a recording")
    os.utime(dead, (time.time() - 3600,) * 2)
    if host == "bare middleware":
        client = Client(KazooRecordings(host_app, DirectoryStore(root)))
    else:
        app = Flask("host")
        app.config.update(KZR_ROOT=str(root))
        KazooFlask(app)
        client = app.test_client()
    # Built and mounted, never used: nothing was looked at yet.
    assert len(pending(root)) == 1 and dead.exists()
    # The first use finishes the dead writer's commit before the retry commits: the
    # retry finds it stored (200), where its own commit would have adopted it (201).
    reply = client.put(target, data=body, headers={"Content-Type": "audio/mpeg"})
    assert reply.status_code == 200, reply.get_data()
    assert pending(root) == [] and not dead.exists()
    assert_one_copy(root, body)


# -- through serve: SIGKILL, and a kill in the commit ------------------------------------------


class Upload:
    """A PUT whose body is sent in pieces, so the test can act in the middle."""

    def __init__(self, port: int, path: str, length: int) -> None:
        self.sock = socket.create_connection((H, port), timeout=30)
        self.sock.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: {H}:{port}\r\nContent-Type: audio/mpeg\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n".encode())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def kill_group(server: Server) -> None:
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=15)


def wait_no_debris(root: Path, since: float) -> list[str]:
    """Poll until the store has no temporary file and no marker, or the bound passes."""
    while True:
        left = store_temporaries(root) + [str(p) for p in markers(root)]
        if not left or time.monotonic() - since > DEBRIS_BOUND:
            return left
        time.sleep(0.1)


def wait_writing(root: Path) -> None:
    deadline = time.monotonic() + 15
    while not store_temporaries(root):
        assert time.monotonic() < deadline, "the upload never reached the store"
        time.sleep(0.02)


@contextlib.contextmanager
def named_server(tmp_path: Path, root: Path) -> Iterator[Server]:
    """The receiver under gunicorn over a store with named temporary files (no O_TMPFILE),
    started before serving as ``serve`` starts its store."""
    tmp_path.mkdir(exist_ok=True)
    with wsgi_server("gunicorn", "apps:recordings_app", tmp_path, root=str(root),
                     unnamed_temporaries=False, preflight=True) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed-tmp", "named-tmp"])
def test_sigkill_mid_40mb_upload_and_immediate_restart_leave_no_temporary(
    tmp_path: Path, unnamed: bool
) -> None:
    root = tmp_path / "recordings"
    body = os.urandom(40 * MB)
    run = (lambda d: serve(d, root=root)) if unnamed else (lambda d: named_server(d, root))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with run(tmp_path / "a") as doomed:
        upload = Upload(doomed.port, "/call_recording_big.mp3", len(body))
        upload.send(body[: 20 * MB])
        wait_writing(root)
        kill_group(doomed)
        upload.close()
        with run(tmp_path / "b") as restarted:  # at once, on the same port-less root
            since = time.monotonic()
            assert wait_no_debris(root, since) == []
            assert data_files(root) == []
            # Kazoo's retry is stored whole.
            assert httpc_put(H, restarted.port, "/call_recording_big.mp3", body).status == 201
    assert_one_copy(root, body)


@pytest.mark.slow
@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed-tmp", "named-tmp"])
def test_dead_writer_beside_a_live_server_leaves_nothing_without_a_restart(
    tmp_path: Path, unnamed: bool
) -> None:
    root = tmp_path / "recordings"
    dead_body, live_body = os.urandom(12 * MB), os.urandom(12 * MB)
    run = (lambda d: serve(d, root=root)) if unnamed else (lambda d: named_server(d, root))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with run(tmp_path / "a") as doomed, run(tmp_path / "b") as live:
        going = Upload(live.port, "/call_recording_lives.mp3", len(live_body))
        going.send(live_body[: 4 * MB])
        wait_writing(root)
        (live_tmp,) = store_temporaries(root)
        dying = Upload(doomed.port, "/call_recording_dies.mp3", len(dead_body))
        dying.send(dead_body[: 4 * MB])
        deadline = time.monotonic() + 15
        while len(store_temporaries(root)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        kill_group(doomed)
        dying.close()
        since = time.monotonic()
        # The live server sweeps the dead writer's file (if it had a name) and never
        # touches its own writer's, however long that one takes.
        while store_temporaries(root) != [live_tmp]:
            assert time.monotonic() - since < DEBRIS_BOUND, store_temporaries(root)
            time.sleep(0.1)
        time.sleep(4)  # more than a sweep period: the live writer's file is still there
        assert store_temporaries(root) == [live_tmp]
        going.send(live_body[4 * MB:])
        reply = going.sock.recv(100)
        assert reply.split()[1] == b"201", reply
        going.close()
        assert store_temporaries(root) == []
    assert_one_copy(root, live_body)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["dir.placed", "dir.sidecar"])
def test_serve_killed_in_the_commit_then_restarted_answers_the_retry_with_one_copy(
    tmp_path: Path, point: str
) -> None:
    root = tmp_path / "recordings"
    body = os.urandom(2 * MB)
    target = "/call_recording_commit.mp3?recording_id=r-1"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with serve(tmp_path / "a", "--workers", "1", root=root,
               env={CRASH_AT_ENV: point}) as doomed:
        try:
            reply: object = httpc_put(H, doomed.port, target, body)
        except (OSError, http.client.HTTPException):
            reply = None  # the worker died in the commit: no answer
        assert reply is None, reply
        assert len(data_files(root)) == 1  # placed, but not indexed
        kill_group(doomed)
    with serve(tmp_path / "b", root=root) as restarted:
        assert "finished the commit" in restarted.log()
        reply = httpc_put(H, restarted.port, target, body)
        assert reply.status == 200, reply  # already stored: one recording, one file
        assert wait_no_debris(root, time.monotonic()) == []
    assert_one_copy(root, body)


@pytest.mark.slow
def test_bare_middleware_finishes_a_dead_writers_commit_on_its_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The middleware under a host's own gunicorn, no serve: its store starts nothing when
    # built, and starts on its first use in each worker, before that use is served.
    root = tmp_path / "recordings"
    body = os.urandom(300_000)
    target = "/call_recording_first.mp3?recording_id=r-1"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.setenv(CRASH_AT_ENV, "dir.placed")
    with wsgi_server("gunicorn", "apps:recordings_app", tmp_path / "a", root=str(root),
                     unnamed_temporaries=False) as doomed:
        try:
            reply: object = httpc_put(H, doomed.port, target, body)
        except (OSError, http.client.HTTPException):
            reply = None  # the worker died in the commit: no answer
        assert reply is None, reply
        kill_group(doomed)
    monkeypatch.delenv(CRASH_AT_ENV)
    assert len(data_files(root)) == 1 and len(pending(root)) == 1  # placed, not indexed
    dead = root / ".kzr" / "tmp" / "dead.part"  # another writer's, long dead
    dead.write_bytes(b"half a recording")
    os.utime(dead, (time.time() - 3600,) * 2)
    with wsgi_server("gunicorn", "apps:recordings_app", tmp_path / "b", root=str(root),
                     unnamed_temporaries=False) as host:
        # Listening, never used: nothing was looked at yet.
        assert len(pending(root)) == 1 and dead.exists()
        # The first use finishes the dead writer's commit before the retry commits: the
        # retry finds it stored (200), where its own commit would have adopted it (201).
        reply = httpc_put(H, host.port, target, body)
        assert reply.status == 200, reply
        assert pending(root) == [] and not dead.exists()
    assert_one_copy(root, body)


# -- the crash loop, briefly -------------------------------------------------------------------


@pytest.mark.slow
def test_crash_loop_short_run(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import crash_loop
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    summary = crash_loop.run(rounds=3, seed=7, workdir=tmp_path, large_mb=(20, 24))
    assert summary.rounds == 3 and summary.kills == 3
    assert summary.acknowledged > 0
    assert summary.problems() == {}, summary
