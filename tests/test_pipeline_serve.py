"""The pipeline end to end, through ``kzr-wsgi serve`` as shipped: real speech, tones and
music (tests/speech_samples.py) uploaded over HTTP, analysed by serve's background worker,
seen through ``ls``, the page's API and the files beside each recording. A worker killed
mid-file, a corrupt file, ``reindex`` after the catalog is lost, ``--backfill`` on a store
from before, two hosts on one bucket and one PostgreSQL catalog; and uploads answered as
ever whatever the pipeline does.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psutil
import pytest
import speech_samples as ss
import test_s3_serve
from servers import Server, request, serve
from test_analysis import CASES
from test_s3_serve import S3_URL, assert_consistent, inventory, serve_s3

from kzr_wsgi.catalog import Catalog, Query, open_catalog
from kzr_wsgi.naming import ANALYSIS_SUFFIX, PEAKS_SUFFIX

pytest_plugins = ["pgserver", "s3server"]
#: The bucket ``rec`` on the moto server, emptied after each test.
rec = test_s3_serve.rec

REPO = Path(__file__).resolve().parent.parent
VIEWER = ("ops", "correct horse battery")
#: How long a test waits for the background worker to get through its uploads.
PATIENCE = 240.0


def kzr(*args: str, env: dict[str, str] | None = None, code: int = 0) -> str:
    """Run ``python -m kzr_wsgi ARGS``; its stdout (stderr after it), checked for ``code``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KZR_")}
    proc = subprocess.run([sys.executable, "-m", "kzr_wsgi", *args], capture_output=True,
                          text=True, timeout=600, env={**clean, "PYTHONPATH": str(REPO),
                                                       **(env or {})})
    assert proc.returncode == code, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def upload(server: Server, name: str, body: bytes, *, ext: str = "mp3") -> None:
    answer = request(server.port, "PUT", f"/call_recording_{name}.{ext}", body)
    assert (answer.status, answer.body) == (201, b"stored\n"), server.log()


def rows(root: Path, *args: str) -> dict[str, dict[str, Any]]:
    """``ls --json`` by call id."""
    out = kzr("ls", "--root", str(root), "--json", "--self-test", *args)
    return {doc["call_id"]: doc for doc in map(json.loads, out.splitlines())}


def settled(catalog: Catalog, count: int, timeout: float = PATIENCE) -> list[Any]:
    """Wait until ``count`` rows have an analysis that is no longer pending."""
    deadline = time.monotonic() + timeout
    while True:
        found = list(catalog.iter_search(Query(self_test=True, limit=500)))
        if len(found) >= count and all(
                r.analysis is not None and r.analysis.state != "pending" for r in found):
            return found
        assert time.monotonic() < deadline, [(r.call_id, r.analysis) for r in found]
        time.sleep(0.5)


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kzr.toml"
    path.write_text(text)
    return path


def viewer_get(server: Server, path: str) -> tuple[int, bytes]:
    import http.client

    token = base64.b64encode(":".join(VIEWER).encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Basic {token}"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


#: What serve as shipped is sent: every recording of the analysis tests (the WAVs as WAV).
SAMPLES: dict[str, tuple[Callable[[], ss.Sample], tuple[str, ...], str]] = {
    name.replace("_", "-"): (maker, flags, "wav" if name in ("silent_wav", "multichannel")
                             else "mp3")
    for name, (maker, flags) in CASES.items()
}


@pytest.mark.slow
def test_serve_as_shipped_analyses_every_recording_once(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    with serve(tmp_path, "--ui", "--viewer", ":".join(VIEWER), root=root) as server:
        assert "analysis: 1 background worker(s)" in server.log()
        for name, (maker, _, ext) in SAMPLES.items():
            upload(server, name, maker().read(), ext=ext)
        catalog = open_catalog(f"sqlite:///{root / '.kzr' / 'catalog.sqlite3'}")
        try:
            found = settled(catalog, len(SAMPLES))
        finally:
            catalog.close()
        docs = rows(root)
        for name, (maker, flags, _) in SAMPLES.items():
            got = docs[name]["analysis"]
            assert (got["state"], got["attempts"], got["flags"]) == ("done", 1, list(flags)), name
            put_in = maker().talk_ms
            assert set(got["talk_ms"]) == set(put_in), name
            for channel, talk in put_in.items():
                if talk:  # within a fifth of the speech put in; tones and music are not speech
                    assert abs(got["talk_ms"][channel] - talk) <= talk / 5, (name, channel)
                else:
                    assert got["talk_ms"][channel] < 500, (name, channel)
            speakers = {1: {"mono": "all"}, 2: {"left": "caller", "right": "callee"}}
            assert got["speakers"] == speakers.get(got["channels"], {}), name
            # Peaks come back for each, through the page's API, scoped like the audio.
            status, body = viewer_get(server, f"/ui/api/recordings/{docs[name]['id']}/peaks")
            assert status == 200, name
            peaks = json.loads(body)
            assert peaks["rate"] == 10 and set(peaks["channels"]) == set(got["talk_ms"])
            location = Path(docs[name]["location"])
            for suffix in (ANALYSIS_SUFFIX, PEAKS_SUFFIX):
                assert (location.parent / (location.name + suffix)).is_file()
        # Tones and music are not speech.
        for name in ("tone440", "dtmf", "fax", "ringback", "melody", "chords"):
            assert docs[name]["analysis"]["flags"] == ["no_speech"]
        assert set(rows(root, "--flag", "one_way_audio")) == {"one-way"}
        assert set(rows(root, "--flag", "dead_air")) == {"dead-air", "on-hold"}
        assert set(rows(root, "--flagged")) == {"one-way", "silent-mp3", "silent-wav",
                                                "clipped"}
        listing = kzr("ls", "--root", str(root), "--flag", "one_way_audio")
        assert "analysis=done[one_way_audio]" in listing
        status, body = viewer_get(server, "/ui/api/recordings?flag=no_speech")
        assert status == 200 and len(json.loads(body)["items"]) == 6
        # Each audio was decoded once: one "done" line per recording in the log.
        assert server.log().count(": done after attempt 1") == len(found)
    assert "ended with status" not in server.log()  # no worker died


def _long_wav(minutes: float) -> bytes:
    """A 16 kHz stereo WAV of the conversation, repeated for ``minutes``."""
    source = ss.workdir() / "conversation.wav"
    if not source.exists():
        source = ss.stereo(ss.gap(1.0, 16000), ss.gap(1.0, 16000), "fallback")
    out = ss.workdir() / f"long-{minutes}.wav"
    if not out.exists():
        repeats = max(1, round(minutes * 60 / ss.seconds_of(source)) - 1)
        ss.run("sox", str(source), str(out), "repeat", str(repeats))
    return out.read_bytes()


def _background_workers(server: Server) -> list[psutil.Process]:
    return [p for p in psutil.Process(server.proc.pid).children(recursive=True)
            if p.cmdline()[-1:] == ["worker"]]


@pytest.mark.slow
def test_a_worker_killed_mid_file_leaves_the_job_to_the_next_which_ends_it_done(
        tmp_path: Path) -> None:
    ss.conversation()  # the conversation's WAV is made on the way
    body = _long_wav(30.0)
    root = tmp_path / "rec"
    toml = config(tmp_path, '[analysis]\nlease = "5s"\n')
    with serve(tmp_path, "--config", str(toml), root=root) as server:
        catalog = open_catalog(f"sqlite:///{root / '.kzr' / 'catalog.sqlite3'}")
        try:
            upload(server, "long", body, ext="wav")
            deadline = time.monotonic() + PATIENCE
            while True:  # the job is claimed: the worker is in the middle of the file
                held = catalog.fetch("SELECT worker FROM kzr_jobs WHERE worker IS NOT NULL"
                                     " AND state = 'pending'", {})
                if held:
                    break
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.02)
            [victim] = _background_workers(server)
            victim.send_signal(signal.SIGKILL)
            [row] = settled(catalog, 1)
        finally:
            catalog.close()
        assert row.analysis is not None
        assert (row.analysis.state, row.analysis.attempts) == ("done", 2)
        assert row.analysis.to_json()["talk_ms"]["left"] > 10 * 60 * 1000 / 3
        replaced = _background_workers(server)
        log = server.log()
        # Seen dead (its status read, or gunicorn's master reaped it first) and replaced.
        assert re.search(r"background worker 0 \(\S+\) ended (with status -9|reaped by "
                         r"the server); starting it again", log)
        assert log.count(": done after attempt 2") == 1 and ": done after attempt 1" not in log
    # serve stopped: its workers with it.
    assert replaced and not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                                for p in replaced)


@pytest.mark.slow
def test_a_corrupt_file_fails_after_its_attempts_and_reindex_restores_the_rest(
        tmp_path: Path) -> None:
    import audio_samples

    root = tmp_path / "rec"
    toml = config(tmp_path, '[analysis]\nattempts = 3\nbackoff = "0s"\n')
    data = ss.conversation().read()
    with serve(tmp_path, "--config", str(toml), root=root) as server:
        upload(server, "corrupt", audio_samples.corrupted(data, len(data) // 2, 4096))
        for name in ("one-way", "monologue", "silent-wav"):
            maker, _, ext = SAMPLES[name]
            upload(server, name, maker().read(), ext=ext)
        catalog = open_catalog(f"sqlite:///{root / '.kzr' / 'catalog.sqlite3'}")
        try:
            settled(catalog, 4)
        finally:
            catalog.close()
    before = rows(root)
    failed = before.pop("corrupt")["analysis"]
    assert (failed["state"], failed["attempts"]) == ("failed", 3)
    assert failed["error"].startswith("MP3 decoding")
    # The catalog is lost; reindex puts every done analysis back from beside its recording.
    for leftover in (root / ".kzr").glob("catalog.sqlite3*"):
        leftover.unlink()
    out = kzr("reindex", "--root", str(root), "--config", str(toml))
    assert "3 analysis(es) put back" in out
    after = rows(root)
    for name, doc in before.items():
        assert after[name]["analysis"] == {**doc["analysis"], "attempts": 0}, name
    # No job ran: every done job came back from its files, none was claimed.
    conn = sqlite3.connect(root / ".kzr" / "catalog.sqlite3")
    try:
        jobs = dict(conn.execute("SELECT state, COUNT(*) FROM kzr_jobs WHERE worker IS NULL"
                                 " AND started_us IS NULL GROUP BY state").fetchall())
    finally:
        conn.close()
    assert jobs == {"done": 3, "pending": 1}  # the corrupt one is queued again
    assert "0 missing, 0 changed" in kzr("verify", "--root", str(root))
    # verify reports a done analysis whose file is gone or changed.
    location = Path(after["one-way"]["location"])
    (location.parent / (location.name + PEAKS_SUFFIX)).unlink()
    (location.parent / (location.name + ANALYSIS_SUFFIX)).write_text("{}")
    out = kzr("verify", "--root", str(root), code=1)
    assert f"MISSING {location}{PEAKS_SUFFIX}" in out
    assert f"CHANGED {location}{ANALYSIS_SUFFIX}" in out


@pytest.mark.slow
def test_backfill_analyses_a_store_from_before_the_pipeline(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    with serve(tmp_path, "--no-analyze", root=root) as server:
        assert "analysis off (--no-analyze)" in server.log()
        for name in ("one-way", "dead-air"):
            maker, _, ext = SAMPLES[name]
            upload(server, name, maker().read(), ext=ext)
    assert [doc["analysis"] for doc in rows(root).values()] == [None, None]
    out = kzr("worker", "--root", str(root), "--backfill", "--once")
    assert "queued 2 recording(s) without an analysis" in out
    got = {name: doc["analysis"] for name, doc in rows(root).items()}
    assert got["one-way"]["flags"] == ["one_way_audio"] and got["dead-air"]["flags"] == [
        "dead_air"]
    assert "done after attempt 1" in out and "SCHED_IDLE" in out


@pytest.mark.slow
def test_uploads_are_answered_as_ever_whatever_the_pipeline_does(tmp_path: Path) -> None:
    body = ss.monologue().read()
    # A worker that crashes at every job: uploads are answered as ever, the job fails.
    root = tmp_path / "crashing"
    toml = config(tmp_path, '[analysis]\nattempts = 2\n')
    with serve(tmp_path, "--config", str(toml), root=root,
               env={"KZR_CRASH_AT": "worker.claimed"}) as server:
        upload(server, "a", body)
        catalog = open_catalog(f"sqlite:///{root / '.kzr' / 'catalog.sqlite3'}")
        try:
            [row] = settled(catalog, 1)
            upload(server, "b", body)
        finally:
            catalog.close()
        assert row.analysis is not None and row.analysis.state == "failed"
        assert "died or lost its lease in each of 2 attempts" in (row.analysis.error or "")
        assert "; starting it again" in server.log()
    # A queue that cannot be written: the upload is answered, the row owed its job,
    # which the next start writes.
    root = tmp_path / "unwritable"
    path = root / ".kzr" / "catalog.sqlite3"
    open_catalog(f"sqlite:///{path}").close()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TRIGGER no_jobs BEFORE INSERT ON kzr_jobs BEGIN "
                 "SELECT RAISE(ABORT, 'the queue cannot be written'); END")
    conn.commit()
    with serve(tmp_path, root=root) as server:
        upload(server, "c", body)
        assert rows(root)["c"]["analysis"] is None
        assert "the analysis queue could not be written" in server.log()
    conn.execute("DROP TRIGGER no_jobs")
    conn.commit()
    conn.close()
    with serve(tmp_path, root=root) as server:
        catalog = open_catalog(f"sqlite:///{path}")
        try:
            [row] = settled(catalog, 1)
        finally:
            catalog.close()
        assert row.analysis is not None and row.analysis.state == "done"
        assert "queued 1 recording(s) stored while the queue could not be written" in (
            server.log())
    # A catalog that is down: uploads are stored and answered; the worker waits.
    root = tmp_path / "down"
    with serve(tmp_path, "--catalog", "postgresql://kzr@127.0.0.1:9/none", root=root) as server:
        upload(server, "d", body)
        deadline = time.monotonic() + 30
        while "the queue cannot be read" not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.2)


@pytest.mark.slow
def test_reserved_names_are_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    with serve(tmp_path, "--attachments-prefix", "/store", root=root) as server:
        for suffix in (ANALYSIS_SUFFIX, PEAKS_SUFFIX, ".kzr.transcript.json"):
            answer = request(server.port, "PUT", f"/store/acct/doc/x.mp3{suffix}", b"{}")
            assert answer.status == 400 and b"reserved" in answer.body
    assert [p for p in root.rglob("*") if p.is_file() and ".kzr" not in p.parts] == []


@pytest.mark.slow
def test_serve_s3_without_a_catalog_has_no_pipeline_and_says_so(
        tmp_path: Path, rec: Any, moto_endpoint: str) -> None:
    with serve_s3(tmp_path, moto_endpoint) as server:
        upload(server, "one-way", ss.one_way().read())
        assert "analysis off: the queue is kept in the catalog" in server.log()
        assert not _background_workers(server)
    keys = [o["Key"] for o in rec.list_objects_v2(Bucket="rec").get("Contents", [])]
    assert not any(k.endswith(ANALYSIS_SUFFIX) for k in keys)


@pytest.mark.slow
def test_two_hosts_on_one_bucket_and_one_catalog_analyse_each_recording_once(
        tmp_path: Path, rec: Any, moto_endpoint: str, pg_url: str) -> None:
    names = ("one-way", "monologue", "dead-air", "tone440", "silent-mp3")
    with serve_s3(tmp_path, moto_endpoint, "--catalog", pg_url, name="a") as first, \
            serve_s3(tmp_path, moto_endpoint, "--catalog", pg_url, name="b") as second:
        hosts = (first, second)
        for i, sample in enumerate(names):
            maker, _, ext = SAMPLES[sample]
            body = maker().read()
            upload(hosts[i % 2], sample, body, ext=ext)
            # Kazoo retries on the other host: the same recording, analysed once.
            answer = request(hosts[(i + 1) % 2].port, "PUT", f"/call_recording_{sample}.{ext}",
                             body)
            assert answer.status == 200
        catalog = open_catalog(pg_url)
        try:
            found = settled(catalog, len(names))
        finally:
            catalog.close()
        assert {r.call_id: (r.analysis.state, r.analysis.attempts) for r in found
                if r.analysis is not None} == {n: ("done", 1) for n in names}
        logs = first.log() + second.log()
        assert logs.count(": done after attempt 1") == len(names)
    # Each object has its analysis beside it, and the bucket's sweep leaves them alone.
    from kzr_wsgi.housekeeping.sweep import sweep_s3
    from kzr_wsgi.stores.s3 import S3Store

    store = S3Store.from_url(S3_URL, endpoint_url=moto_endpoint)
    for record in store.records():
        assert json.loads(store.get_companion(record, ANALYSIS_SUFFIX))["version"] >= 1
    later = datetime.now(timezone.utc) + timedelta(minutes=11)
    assert list(sweep_s3(store, timedelta(0), now=later)) == []
    left = inventory(rec)
    assert_consistent(left)
    assert len(left.objects) == len(names)
    assert {key: sorted(ends) for key, ends in left.companions.items()} == {
        key: [ANALYSIS_SUFFIX, PEAKS_SUFFIX] for key in left.objects}


@pytest.mark.slow
def test_the_metrics_count_jobs_audio_and_new_uploads_flags(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    with serve(tmp_path, "--metrics", root=root) as server:
        upload(server, "one-way", ss.one_way().read())
        upload(server, "kzr-check-x", ss.silent("mp3").read())  # a self-test: not counted
        catalog = open_catalog(f"sqlite:///{root / '.kzr' / 'catalog.sqlite3'}")
        try:
            settled(catalog, 2)
        finally:
            catalog.close()
        scrape = request(server.port, "GET", "/metrics")
    assert scrape.status == 200
    page = scrape.body.decode()
    lines = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
             for line in page.splitlines() if line and not line.startswith("#")}
    assert lines['kzr_jobs{job="analyse",state="done"}'] == 1
    assert lines['kzr_jobs{job="analyse",state="skipped"}'] == 1
    assert lines['kzr_jobs{job="analyse",state="pending"}'] == 0
    assert lines['kzr_job_seconds_count{job="analyse"}'] == 1
    assert 14 < lines['kzr_audio_seconds_processed_total{job="analyse"}'] < 16
    assert lines['kzr_analysis_flags_total{flag="one_way_audio"}'] == 1
    assert lines['kzr_analysis_flags_total{flag="silent"}'] == 0
