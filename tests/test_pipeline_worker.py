"""The pipeline's worker in this process, on real stores and real audio: one decoding per
audio, skips, retries and failures, leases, the spool, the process set-up, the ``[analysis]``
table. The end-to-end runs through ``serve`` are in tests/test_pipeline_serve.py.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import audio_samples
import pytest
import speech_samples as ss
from test_directory_store import make

from kzr_wsgi.catalog import Catalog, Query, open_catalog
from kzr_wsgi.catalog.analysis import JobState, Origin
from kzr_wsgi.configfile import ANALYSIS, ConfigError
from kzr_wsgi.configtable import TableError
from kzr_wsgi.naming import ANALYSIS_SUFFIX, PEAKS_SUFFIX
from kzr_wsgi.pipeline.settings import PipelineSettings, parse_analysis
from kzr_wsgi.pipeline.spool import ChangedCopy, Spool
from kzr_wsgi.pipeline.worker import LeaseLost, Worker, _Lease, _Watch
from kzr_wsgi.stores import DirectoryStore
from kzr_wsgi.stores.s3 import S3Store

pytest_plugins = ["s3server"]

REPO = Path(__file__).resolve().parent.parent
FAST = PipelineSettings(attempts=3, backoff=timedelta(0))


class Counting:
    """A store whose opens of a recording are counted (each is one decoding)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.opened = 0

    def open_stored(self, location: str, sha256: str | None = None) -> Any:
        self.opened += 1
        return self.store.open_stored(location, sha256)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture
def disk(tmp_path: Path) -> DirectoryStore:
    return DirectoryStore(tmp_path / "rec")


def worker(store: Any, catalog: Catalog, tmp_path: Path,
           settings: PipelineSettings = FAST) -> Worker:
    return Worker(store, catalog, settings=settings, spool=Spool(tmp_path / "spool"))


def analysis(catalog: Catalog, call_id: str) -> dict[str, Any]:
    [row] = catalog.search(Query(call_id=call_id, self_test=True)).items
    assert row.analysis is not None
    return row.analysis.to_json()


def beside(store: DirectoryStore, call_id: str, suffix: str) -> bytes:
    [record] = [r for r in store.records() if r["call_id"] == call_id]
    return Path(record["location"] + suffix).read_bytes()


def test_each_audio_is_decoded_once_and_its_result_kept_beside_every_copy(
        disk: DirectoryStore, tmp_path: Path) -> None:
    assert disk.catalog is not None
    body = ss.one_way().read()
    for call_id in ("first", "second"):  # one audio under two names: two recordings
        disk(make(body, call_id))
    counting = Counting(disk)
    assert worker(counting, disk.catalog, tmp_path).run(once=True) == 2
    assert counting.opened == 1  # the second copy took the first one's result
    for call_id in ("first", "second"):
        got = analysis(disk.catalog, call_id)
        assert (got["state"], got["attempts"], got["flags"]) == ("done", 1, ["one_way_audio"])
        assert got["speakers"] == {"left": "caller", "right": "callee"}
    for suffix in (ANALYSIS_SUFFIX, PEAKS_SUFFIX):
        assert beside(disk, "first", suffix) == beside(disk, "second", suffix)
    doc = json.loads(beside(disk, "first", ANALYSIS_SUFFIX))
    assert doc["flags"] == ["one_way_audio"] and doc["settings"] == FAST.analysis.fingerprint()
    peaks = json.loads(beside(disk, "first", PEAKS_SUFFIX))
    assert peaks["rate"] == 10 and set(peaks["channels"]) == {"left", "right"}
    # --reanalyze decodes again, even where a result could be copied.
    assert disk.catalog.jobs.requeue([JobState.DONE], Query(call_id="second"),
                                     Origin.REANALYZE) == 1
    assert worker(counting, disk.catalog, tmp_path).run(once=True) == 1
    assert counting.opened == 2
    assert analysis(disk.catalog, "second")["flags"] == ["one_way_audio"]


def test_what_is_not_mp3_or_wav_is_skipped_with_its_reason(
        disk: DirectoryStore, tmp_path: Path) -> None:
    assert disk.catalog is not None
    disk(make(audio_samples.HTML_PAGE, "html"))
    disk(make(b"", "empty"))
    disk(make(ss.monologue().read(), "kzr-check-self"))
    counting = Counting(disk)
    worker(counting, disk.catalog, tmp_path).run(once=True)
    assert counting.opened == 2  # a self-test is skipped without being read
    for call_id, reason in (("html", "not_audio"), ("empty", "empty"),
                            ("kzr-check-self", "self_test")):
        got = analysis(disk.catalog, call_id)
        assert (got["state"], got["reason"], got["flags"]) == ("skipped", reason, [])
    assert not list(disk.root.rglob("*" + ANALYSIS_SUFFIX))


def test_a_corrupt_file_fails_after_its_attempts_with_its_error(
        disk: DirectoryStore, tmp_path: Path) -> None:
    assert disk.catalog is not None
    data = ss.conversation().read()
    disk(make(audio_samples.corrupted(data, len(data) // 2, 4096), "corrupt"))
    counting = Counting(disk)
    assert worker(counting, disk.catalog, tmp_path).run(once=True) == 3
    got = analysis(disk.catalog, "corrupt")
    assert (got["state"], got["attempts"]) == ("failed", 3) and counting.opened == 3
    assert got["error"].startswith("MP3 decoding")
    assert worker(counting, disk.catalog, tmp_path).run(once=True) == 0  # never retried
    assert disk.catalog.jobs.requeue([JobState.FAILED], Query(), Origin.RETRY) == 1
    assert analysis(disk.catalog, "corrupt")["state"] == "pending"


def test_a_removed_recording_gets_no_files_and_its_job_goes_with_its_row(
        disk: DirectoryStore, tmp_path: Path) -> None:
    assert disk.catalog is not None
    disk(make(ss.monologue().read(), "gone"))
    [record] = list(disk.records())
    queue = disk.catalog.jobs
    claim = queue.claim("w", lease=60, max_attempts=3)
    assert claim is not None
    disk.remove(record, unindexed=lambda: disk.catalog.remove(claim.row_id)  # type: ignore
                if disk.catalog is not None else None)
    work = worker(disk, disk.catalog, tmp_path)
    assert work.work(claim).state == "gone"
    assert list(disk.root.rglob("*.kzr.*")) == []


def test_a_lost_lease_abandons_the_decoding(disk: DirectoryStore) -> None:
    assert disk.catalog is not None
    disk(make(ss.monologue().read(), "leased"))
    queue = disk.catalog.jobs
    claim = queue.claim("me", lease=0.3, max_attempts=3)
    assert claim is not None
    stop = threading.Event()
    with _Lease(queue, claim, 0.3) as lease:
        watch = _Watch(lease, stop)
        time.sleep(0.25)
        watch.feed(None)  # type: ignore[arg-type]  # renewed: still ours
        # Another worker took it (this one was too slow): the next block ends the work.
        disk.catalog.execute("UPDATE kzr_jobs SET worker = 'other'", {})
        deadline = time.monotonic() + 5
        while not lease.lost.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LeaseLost):
            watch.feed(None)  # type: ignore[arg-type]


def test_a_bucket_copy_is_decoded_from_the_spool_and_leaves_nothing_there(
        s3_bucket: tuple[Any, str], moto_endpoint: str, tmp_path: Path) -> None:
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    bucket = S3Store(s3_bucket[1], "kazoo/", endpoint_url=moto_endpoint, catalog=catalog)
    bucket(make(ss.dead_air().read(), "hold"))
    spool = tmp_path / "spool"
    stale = spool / "0123.part"  # a killed worker's copy: nobody holds its lock
    spool.mkdir()
    stale.write_bytes(b"audio")
    os.utime(stale, (time.time() - 60, time.time() - 60))
    work = Worker(bucket, catalog, settings=FAST, spool=Spool(spool))
    assert work.prepare() == (1, 0)
    assert work.run(once=True) == 1
    got = analysis(catalog, "hold")
    assert (got["state"], got["flags"]) == ("done", ["dead_air"])
    assert list(spool.iterdir()) == []
    [record] = list(bucket.records())
    assert json.loads(bucket.get_companion(record, ANALYSIS_SUFFIX))["flags"] == ["dead_air"]
    catalog.close()


def test_the_spool_holds_a_private_locked_copy_while_in_use(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    body = b"x" * 3000
    digest = hashlib.sha256(body).hexdigest()
    with spool.copy_of(io.BytesIO(body), len(body), digest) as copy:
        [path] = list(spool.directory.iterdir())
        assert path.stat().st_mode & 0o777 == 0o600 and copy.read() == body
        with open(path, "rb") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert spool.sweep() == 0  # in use: never swept
    assert list(spool.directory.iterdir()) == []
    with pytest.raises(ChangedCopy), spool.copy_of(io.BytesIO(body), len(body), "0" * 64):
        pass
    assert list(spool.directory.iterdir()) == []


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60, check=True)


def test_a_worker_takes_the_lowest_cpu_and_io_priority() -> None:
    out = _run_python(
        "import ctypes, os, platform\n"
        "from kzr_wsgi.pipeline.process import IOPRIO_SET, lower_priority\n"
        "print(lower_priority())\n"
        "print(os.sched_getscheduler(0) == os.SCHED_IDLE)\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.syscall(IOPRIO_SET[platform.machine()] + 1, 1, 0) >> 13)\n")
    lines = out.stdout.splitlines()
    assert "SCHED_IDLE" in lines[0] and lines[1] == "True"
    assert lines[2] == "3"  # IOPRIO_CLASS_IDLE


def test_what_c_code_writes_to_fd_2_reaches_the_log_escaped() -> None:
    out = _run_python(
        "import logging, os, time\n"
        "from kzr_wsgi.pipeline.process import capture_stderr\n"
        "logging.basicConfig(stream=capture_stderr(),\n"
        "                    format='%(levelname)s %(name)s: %(message)s')\n"
        "os.write(2, b'[layer3.c:1774] error: part2_3_length too large\\n\\x1b[2J\\n')\n"
        "time.sleep(0.5)\n")
    assert out.stderr.splitlines() == [
        "WARNING kzr_wsgi.decoder: [layer3.c:1774] error: part2_3_length too large",
        "WARNING kzr_wsgi.decoder: \\x1b[2J"]


def test_the_analysis_table_reads_every_setting_and_names_a_wrong_key() -> None:
    settings = parse_analysis({
        "caller": "right", "lease": "30s", "attempts": 2, "backoff": "5s",
        "dead-air": "45s", "vad-mode": 2,
        "kinds": {"caller": {"caller": "left"}},
        "accounts": {"acc1": {"caller": "left"}, "acc2": {"caller": "right"}},
    })
    assert settings.lease == timedelta(seconds=30) and settings.attempts == 2
    assert settings.retry_in(1) == 5 and settings.retry_in(2) == 20
    assert settings.analysis.dead_air == 45 and settings.analysis.vad_mode == 2
    callers = settings.callers
    # accounts win over kinds, kinds over the default
    assert callers.caller_for("acc2", "caller") == "right"
    assert callers.caller_for("other", "caller") == "left"
    assert callers.caller_for("other", "call") == "right"
    assert callers.caller_for(None, "call") == "right"
    for table, key in (({"caller": "middle"}, "caller"), ({"dead-air": "soon"}, "dead-air"),
                       ({"attempts": 0}, "attempts"), ({"lease": "0s"}, "lease"),
                       ({"clip-level": 2}, "clip-level"), ({"speed": 1}, "speed"),
                       ({"kinds": {"meeting": {"caller": "left"}}}, "meeting"),
                       ({"accounts": {"a": {"volume": 1}}}, "volume")):
        with pytest.raises(TableError) as caught:
            parse_analysis(table)
        assert caught.value.key == key


def test_the_config_file_reads_the_analysis_table_with_its_lines(tmp_path: Path) -> None:
    from kzr_wsgi.cli import main
    from kzr_wsgi.cli.config import load_config

    good = tmp_path / "good.toml"
    good.write_text('[analysis]\ncaller = "right"\nlease = "2m"\n'
                    '[analysis.accounts.acc1]\ncaller = "left"\n')
    settings = ANALYSIS.of(load_config(good, main))
    assert settings is not None and settings.callers.caller_for("acc1", "call") == "left"
    bad = tmp_path / "bad.toml"
    bad.write_text('[analysis]\ncaller = "right"\n\n[analysis.kinds.call]\ncaller = "up"\n')
    with pytest.raises(ConfigError, match=r"bad.toml:5: key 'caller' in \[analysis.kinds.call\]"):
        load_config(bad, main)


def test_the_page_api_shows_the_analysis_and_its_peaks_scoped_like_the_audio(
        tmp_path: Path) -> None:
    from ui_fixtures import ACME, OPS, UIWorld
    from werkzeug.test import Client

    from kzr_wsgi.pipeline.settings import CallerMap
    from kzr_wsgi.ui import SearchUI

    world = UIWorld(tmp_path / "rec")
    mine = world.upload("c-acme", ss.one_way().read(), account_id="acct-acme")
    theirs = world.upload("c-beta", ss.dead_air().read(), account_id="acct-beta")
    for row in (mine, theirs):  # 404 until the analysis is done
        assert row["analysis"]["state"] == "pending"
        assert world.get(f"/api/recordings/{row['id']}/peaks", OPS).status_code == 404
    worker(world.store, world.catalog, tmp_path).run(once=True)
    reply = world.get(f"/api/recordings/{mine['id']}/peaks", ACME)
    assert reply.status_code == 200 and reply.headers["Content-Type"] == "application/json"
    assert reply.json["rate"] == 10 and set(reply.json["channels"]) == {"left", "right"}
    hidden = world.get(f"/api/recordings/{theirs['id']}/peaks", ACME)
    missing = world.get("/api/recordings/0123456789abcdef/peaks", ACME)
    assert hidden.status_code == 404 and hidden.data == missing.data
    assert world.get(f"/api/recordings/{theirs['id']}/peaks", OPS).status_code == 200
    item = world.get(f"/api/recordings/{mine['id']}", OPS).json
    assert item["analysis"]["flags"] == ["one_way_audio"]
    assert item["analysis"]["speakers"] == {"left": "caller", "right": "callee"}
    assert {i["call_id"] for i in world.list(params=[("flag", "one_way_audio")])["items"]} == {
        "c-acme"}
    assert {i["call_id"] for i in world.list(params=[("flag", "dead_air")])["items"]} == {
        "c-beta"}
    assert {i["call_id"] for i in world.list(params=[("flagged", "true")])["items"]} == {
        "c-acme"}
    assert world.get("/api/recordings?flag=loud", OPS).status_code == 400
    # Who is who follows the [analysis] table at once, without decoding again.
    turned = SearchUI(world.catalog, world.store, viewers=world.viewers, prefix="/ui",
                      callers=CallerMap(default="left", accounts={"acct-acme": "right"}))
    auth = {"Authorization": world.get("/", OPS).request.headers["Authorization"]}
    got = Client(turned).get(f"/ui/api/recordings/{mine['id']}", headers=auth).json
    assert got["analysis"]["speakers"] == {"left": "callee", "right": "caller"}


@pytest.mark.parametrize("status, level, said", [
    (0, logging.INFO, "stopped when told to; starting it again unless the server is stopping"),
    (1, logging.WARNING, "ended with status 1; starting it again"),
    (-9, logging.WARNING, "ended with status -9; starting it again"),
    (None, logging.WARNING, "ended reaped by the server; starting it again"),
])
def test_the_supervisor_warns_of_a_worker_that_failed_not_of_one_told_to_stop(
        caplog: pytest.LogCaptureFixture, status: int | None, level: int, said: str) -> None:
    """A worker ends well only when told to (the service being stopped signals it before
    the server stops the supervisor): said at INFO. A failure, or an end whose status
    gunicorn's master took first, is a warning."""
    from kzr_wsgi.pipeline.supervisor import FIRST_PAUSE, Supervisor, _Child

    released: list[str] = []
    supervisor = Supervisor(1, {}, released=released.append)
    child = _Child(0, name="host:abc", started=time.monotonic())
    with caplog.at_level(logging.INFO, "kzr_wsgi.pipeline"):
        supervisor._ended(child, status)
    [record] = [r for r in caplog.records if r.name == "kzr_wsgi.pipeline"]
    assert record.levelno == level and record.getMessage() == (
        f"background worker 0 (host:abc) {said}")
    assert supervisor.statuses == [-1 if status is None else status]
    assert released == ["host:abc"]  # its leases end at once either way
    assert child.not_before >= time.monotonic() + FIRST_PAUSE / 2  # started again later

