"""The transcription step in one process: a disk store, its SQLite catalog, the worker,
and the OpenAI-compatible test server on loopback. Skips decided by the analysis and the
filters, pieces kept across a failed attempt (a retry asks only for what is missing), the
same audio under two names transcribed once, and the kept pieces gone once done."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import speech_samples as ss
from openai_server import TranscriptionServer, transcription_server
from test_directory_store import make

from kzr_wsgi.catalog import Catalog, Query
from kzr_wsgi.catalog.schema import PIECES
from kzr_wsgi.naming import TRANSCRIPT_SUFFIX
from kzr_wsgi.pipeline.settings import PipelineSettings
from kzr_wsgi.pipeline.spool import Spool
from kzr_wsgi.pipeline.transcription import Transcription
from kzr_wsgi.pipeline.worker import Worker
from kzr_wsgi.stores import DirectoryStore
from kzr_wsgi.transcribe import Settings

#: Retries due at once: a test runs the queue until nothing is due.
QUICK = PipelineSettings(backoff=timedelta(0))


def worker(store: DirectoryStore, engine: TranscriptionServer, tmp_path: Path,
           **settings: Any) -> Worker:
    assert store.catalog is not None
    chosen = Settings(engine="openai", url=engine.url, model="m", **settings)
    spool = Spool(tmp_path / "spool")
    step = Transcription(chosen, store, store.catalog, pipeline=QUICK, spool=spool)
    return Worker(store, store.catalog, settings=QUICK, spool=spool, transcription=step)


def states(catalog: Catalog) -> dict[str, tuple[str, int, str | None]]:
    out = {}
    for row in catalog.search(Query(self_test=True)).items:
        assert row.transcript is not None, row.call_id
        out[str(row.call_id)] = (row.transcript.state, row.transcript.attempts,
                                 row.transcript.reason)
    return out


@pytest.fixture
def disk(tmp_path: Path) -> DirectoryStore:
    return DirectoryStore(tmp_path / "rec")


def test_skips_come_from_the_analysis_and_the_filters(disk: DirectoryStore,
                                                      tmp_path: Path) -> None:
    assert disk.catalog is not None
    disk(make(ss.silent("mp3").read(), "silent"))
    disk(make(ss.tone("dtmf").read(), "tones"))
    disk(make(b"<html>Bad Gateway</html>", "page"))
    disk(make(ss.monologue().read(), "short"))
    disk(make(ss.conversation().read(), "kept"))
    with transcription_server() as engine:
        work = worker(disk, engine, tmp_path, min_duration=20.0)
        work.prepare()
        work.run(once=True)
    assert states(disk.catalog) == {
        "silent": ("skipped", 1, "silent"), "tones": ("skipped", 1, "no_speech"),
        "page": ("skipped", 1, "analysis_skipped:not_audio"),
        "short": ("skipped", 1, "too_short"), "kept": ("done", 1, None)}
    assert len(engine.seen) == 2  # the one transcribed: a request per channel


def test_a_retry_asks_only_for_the_pieces_still_missing(disk: DirectoryStore,
                                                        tmp_path: Path) -> None:
    assert disk.catalog is not None
    disk(make(ss.conversation().read(), "call"))
    with transcription_server() as engine:
        # The left channel is answered and kept; the right one fails with a 500.
        engine.then("ok", "500")
        work = worker(disk, engine, tmp_path, concurrency=1)
        work.settings = work.transcription.pipeline = PipelineSettings(  # type: ignore[union-attr]
            backoff=timedelta(hours=1))
        work.run(once=True)
        kept = disk.catalog.fetch(f"SELECT channel FROM {PIECES}", {})
        assert [tuple(k) for k in kept] == [("left",)]
        assert len(engine.seen) == 2
        assert states(disk.catalog) == {"call": ("pending", 1, None)}
        # The retry, made due now: only the right channel's piece is asked for.
        disk.catalog.execute("UPDATE kzr_jobs SET due_us = 0 WHERE job = 'transcribe'", {})
        work.run(once=True)
    assert len(engine.seen) == 3
    assert states(disk.catalog) == {"call": ("done", 2, None)}
    assert set(engine.calls.values()) == {1, 2}  # the failed piece asked twice, no other
    assert disk.catalog.fetch(f"SELECT COUNT(*) FROM {PIECES}", {}) == [(0,)]


def test_one_audio_under_two_names_is_transcribed_once(disk: DirectoryStore,
                                                       tmp_path: Path) -> None:
    assert disk.catalog is not None
    body = ss.conversation().read()
    disk(make(body, "first"))
    disk(make(body, "second"))
    with transcription_server() as engine:
        work = worker(disk, engine, tmp_path)
        work.run(once=True)
    assert states(disk.catalog) == {"first": ("done", 1, None), "second": ("done", 1, None)}
    assert len(engine.seen) == 2 and set(engine.calls.values()) == {1}
    texts = {r["call_id"]: Path(r["location"] + TRANSCRIPT_SUFFIX).read_bytes()
             for r in disk.records()}
    assert texts["first"] == texts["second"]
    doc = json.loads(texts["first"])
    assert {s["speaker"] for s in doc["segments"]} == {"caller", "callee"}


def test_a_401_fails_at_once_and_a_scoped_view_hides_the_message(
        disk: DirectoryStore, tmp_path: Path) -> None:
    assert disk.catalog is not None
    disk(make(ss.monologue().read(), "call"))
    with transcription_server(key="right") as engine:
        work = worker(disk, engine, tmp_path)
        work.transcription = replace_key(work.transcription, "wrong")
        work.run(once=True)
    [row] = disk.catalog.search(Query()).items
    assert row.transcript is not None
    assert (row.transcript.state, row.transcript.attempts) == ("failed", 1)
    assert "401" in (row.transcript.error or "")
    assert row.transcript.to_json(scoped=True)["error"] == (
        "the transcription failed (see the log)")
    assert "401" in row.to_json()["transcript"]["error"]


def replace_key(step: Transcription | None, key: str) -> Transcription:
    assert step is not None
    return Transcription(replace(step.settings, key=key), step.store, step.catalog,
                         pipeline=step.pipeline, spool=step.spool)
