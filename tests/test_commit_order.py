"""The order of the syscalls that carry a commit's promise, seen by strace.

"A visible file is complete, a 2xx means durable" rests on the order of a few calls
(see kzr_wsgi.stores.syncing); a kill cannot show a power cut, so the calls themselves
are checked: a real DirectoryStore in its own process, traced from outside by strace,
storing a recording into a directory and index shard that already exist.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kzr_wsgi.stores.syncing import journaled, write_back

HERE = Path(__file__).resolve().parent

SCRIPT = r"""
import io, os, sys
from datetime import datetime, timezone
from kzr_wsgi.body import Body
from kzr_wsgi.metadata import parse_metadata
from kzr_wsgi.recording import Kind, Name, Recording
from kzr_wsgi.stores import DirectoryStore

root, one_sync = sys.argv[1], sys.argv[2] == "1"
store = DirectoryStore(root, one_sync=one_sync, catalog=None, upkeep_every=None)

def upload(body):
    recording = Recording(
        name=Name(Kind.CALL, (), "call_recording_abc.mp3"), call_id="abc", ext="mp3",
        content_type="audio/mpeg", content_length=len(body), metadata=parse_metadata([]),
        query="", remote_addr="192.0.2.7", stream=Body(io.BytesIO(body), len(body)),
        received_at=datetime(2024, 3, 9, tzinfo=timezone.utc))
    return store(recording)

upload(b"first" * 1000)  # makes the day's directory and the index shard
os.access("/KZR-TRACE-BEGIN", os.F_OK)
upload(b"second" * 200_000)
os.access("/KZR-TRACE-END", os.F_OK)
"""

SYNCS = ("fsync", "fdatasync", "syncfs")
CALL = re.compile(r"^\d+\s+(\w+)\((.*)\)\s+=\s+(-?\d+)")


def trace(tmp_path: Path, one_sync: bool) -> list[tuple[str, str]]:
    """The (call, arguments) of the second upload's commit, in order."""
    out = tmp_path / "trace.txt"
    subprocess.run(
        ["strace", "-f", "-qq", "-y", "-o", str(out),
         "-e", "trace=access,fsync,fdatasync,sync_file_range,syncfs,linkat,link,unlink",
         sys.executable, "-c", SCRIPT, str(tmp_path / "root"), "1" if one_sync else "0"],
        check=True, env={**os.environ, "PYTHONPATH": str(HERE.parent)}, timeout=120,
    )
    calls = []
    inside = False
    for line in out.read_text().splitlines():
        m = CALL.match(line)
        if not m:
            continue
        name, args, _ = m.groups()
        if name == "access":
            inside = "KZR-TRACE-BEGIN" in args or (inside and "KZR-TRACE-END" not in args)
            continue
        if inside:
            calls.append((name, args))
    assert calls, out.read_text()[-2000:]
    return calls


def fd_of(args: str) -> str:
    return args.split("<", 1)[0]


def linked_fd(calls: list[tuple[str, str]], suffix: str) -> tuple[int, str]:
    """Where the file got the name ending in ``suffix``, and which fd it was linked from."""
    for i, (name, args) in enumerate(calls):
        if name == "linkat" and re.search(re.escape(suffix) + r'", AT_SYMLINK_FOLLOW$', args):
            return i, re.search(r'"/proc/self/fd/(\d+)"', args).group(1)  # type: ignore[union-attr]
    raise AssertionError(f"no link to *{suffix}: {calls}")


def last_before(calls: list[tuple[str, str]], i: int, names: tuple[str, ...], fd: str) -> int:
    """Index of the last call among ``names`` on ``fd`` before ``i`` (-1 if none)."""
    return max((k for k, (n, a) in enumerate(calls[:i]) if n in names and fd_of(a) == fd),
               default=-1)


pytestmark = pytest.mark.skipif(
    shutil.which("strace") is None, reason="strace is not installed (tests/install-tools.sh)"
)


def test_one_sync_order(tmp_path: Path) -> None:
    """Written back before named; one fsync, of the sidecar, after every name."""
    calls = trace(tmp_path, one_sync=True)
    data_at, data_fd = linked_fd(calls, ".mp3")
    side_at, side_fd = linked_fd(calls, ".mp3.kzr.json")
    entry_at = next(i for i, (n, a) in enumerate(calls)
                    if n == "linkat" and "/.kzr/index/" in a)
    # The body's bytes were on the disk before its name existed, without a commit.
    assert last_before(calls, data_at, ("sync_file_range",), data_fd) >= 0
    # So were the sidecar's, before either of its names.
    assert last_before(calls, side_at, ("sync_file_range",), side_fd) >= 0
    assert side_at < entry_at
    syncs = [(i, a) for i, (n, a) in enumerate(calls) if n in SYNCS]
    assert len(syncs) == 1, syncs
    at, args = syncs[0]
    # The one commit comes after the last name, on the inode that name changed.
    assert at > max(data_at, side_at, entry_at) and fd_of(args) == side_fd
    # The pending marker goes only once the commit is durable.
    assert any(n == "unlink" and "/.kzr/pending/" in a for n, a in calls[at:])


def test_every_sync_order(tmp_path: Path) -> None:
    """Without a journal to rely on: the body synced before named, then every name synced."""
    calls = trace(tmp_path, one_sync=False)
    data_at, data_fd = linked_fd(calls, ".mp3")
    side_at, side_fd = linked_fd(calls, ".mp3.kzr.json")
    entry_at = next(i for i, (n, a) in enumerate(calls)
                    if n == "linkat" and "/.kzr/index/" in a)
    assert last_before(calls, data_at, ("fsync", "fdatasync"), data_fd) >= 0
    synced = [(i, a) for i, (n, a) in enumerate(calls) if n == "fsync" and i > entry_at]
    assert fd_of(synced[0][1]) == side_fd
    names = {a.split("<", 1)[1].split(">")[0].rsplit("/", 3)[-1] for _, a in synced[1:]}
    day = "09"  # the day's directory, then the index shard
    assert day in names and any(len(n) == 2 and n != day for n in names), synced
    assert not any(n == "sync_file_range" for n, _ in calls)


def test_write_back_writes_and_leaves_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"x" * 100_000)
        write_back(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * 100_000


def test_journaled_answers_for_this_machine(tmp_path: Path) -> None:
    """Whatever the filesystem, the answer agrees with sysfs (no guessing)."""
    answer = journaled(tmp_path)
    st = os.stat(tmp_path)
    device = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    name = os.path.basename(os.path.realpath(f"/sys/dev/block/{device}"))
    task = Path(f"/sys/fs/ext4/{name}/journal_task")
    if task.exists():
        assert answer == (task.read_text().strip() != "<none>")
    assert journaled(tmp_path / "missing") is False
