"""The ``openai`` engine through ``kzr-wsgi serve --transcribe openai``, against the
OpenAI-compatible test server (tests/openai_server.py) in each real server's shape: the
request field by field, the key sent and never logged nor shown by ``ps``, a 500 then
success, a timeout, a refused connection, a 401, a redirect not followed, and a
25-minute recording in pieces.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest
import speech_samples as ss
from openai_server import SHAPES, TranscriptionServer, sound_runs, transcription_server
from servers import Server, free_port, serve
from test_pipeline_serve import config, kzr, rows, upload
from test_transcribe_serve import beside, transcribed

from kzr_wsgi.catalog import open_catalog
from kzr_wsgi.naming import TRANSCRIPT_SUFFIX

KEY = "sk-test-9f8e7d6c5b4a39281706"
MODEL = "large-v3"
#: Retries a second apart, two attempts (the queue's backoff comes from [analysis]).
QUICK = '[analysis]\nbackoff = "1s"\n[transcribe]\nattempts = 2\n'


def variant(body: bytes, n: int) -> bytes:
    """The same MP3 with an ID3v1 tag of its own: other bytes (another sha256), same
    audio (the engine hears the same thing)."""
    return body + b"TAG" + f"take {n}".encode().ljust(125, b"\0")


def openai_serve(tmp_path: Path, engine: TranscriptionServer | None, *extra: str,
                 url: str | None = None, toml: str = QUICK) -> Any:
    root = tmp_path / "rec"
    return serve(tmp_path, "--config", str(config(tmp_path, toml)), "--transcribe", "openai",
                 "--transcribe-url", url or (engine.url if engine else ""),
                 "--transcribe-model", MODEL, "--transcribe-language", "en", *extra,
                 root=root, env={"KZR_TRANSCRIBE_KEY": KEY})


def wait(root: Path, count: int) -> list[Any]:
    catalog = open_catalog(f"sqlite:///{root / '.kzr' / 'catalog.sqlite3'}")
    try:
        return transcribed(catalog, count)
    finally:
        catalog.close()


def never_shown(server: Server) -> None:
    """The key is in no log line and on no command line of serve or its workers."""
    assert KEY not in server.log()
    for proc in [psutil.Process(server.proc.pid),
                 *psutil.Process(server.proc.pid).children(recursive=True)]:
        assert KEY not in " ".join(proc.cmdline())


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES)
def test_each_servers_shape_through_serve(tmp_path: Path, shape: str) -> None:
    root = tmp_path / "rec"
    with transcription_server(shape, key=KEY) as engine, \
            openai_serve(tmp_path, engine) as server:
        upload(server, "stereo", ss.conversation().read())
        wait(root, 1)
        never_shown(server)
    assert engine.problems == []
    doc = rows(root)["stereo"]
    assert doc["transcript"]["state"] == "done", doc["transcript"]
    assert (doc["transcript"]["engine"], doc["transcript"]["model"]) == ("openai", MODEL)
    # One request per channel (each a piece: the conversation is short), field by field.
    assert len(engine.seen) == 2
    for seen in engine.seen:
        assert seen.path == "/v1/audio/transcriptions"
        assert seen.headers["authorization"] == f"Bearer {KEY}"
        assert seen.form == {"model": [MODEL], "response_format": ["verbose_json"],
                             "timestamp_granularities[]": ["segment", "word"],
                             "language": ["en"]}
        assert seen.file_type == "audio/wav" and seen.filename
    assert sorted(engine.calls.values()) == [1, 1]
    stored = beside(doc, TRANSCRIPT_SUFFIX)
    assert stored["segments"], stored
    assert {s["speaker"] for s in stored["segments"]} == {"caller", "callee"}
    assert all(set(s["text"].split()) == {"hello", "world"} for s in stored["segments"])
    if shape in ("openai", "speaches", "whisper.cpp"):
        assert [w["word"] for w in stored["words"][:2]] == ["hello", "world"]
    else:  # LocalAI sends no segments (one per piece), vLLM no words
        assert stored["words"] == []
    duration = doc["audio"]["duration_ms"] / 1000
    assert all(0 <= s["start"] < s["end"] <= duration for s in stored["segments"])


@pytest.mark.slow
def test_failures_through_serve(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    body = ss.monologue().read()
    with transcription_server("openai", key=KEY) as engine, \
            openai_serve(tmp_path, engine, "--transcribe-timeout", "2s",
                         "--metrics") as server:
        # A 500, then success on the retry.
        engine.then("500")
        upload(server, "five-hundred", variant(body, 1))
        wait(root, 1)
        # No answer within the timeout, then success.
        engine.then("hang")
        upload(server, "hang", variant(body, 2))
        wait(root, 2)
        # A redirect is not followed, and not retried.
        engine.then("redirect")
        upload(server, "redirect", variant(body, 3))
        wait(root, 3)
        # A 401 fails at once, saying so.
        engine.then("401")
        upload(server, "unauthorized", variant(body, 4))
        wait(root, 4)
        metrics = _metrics(server)
        never_shown(server)
    docs = rows(root)
    got = {name: docs[name]["transcript"] for name in docs}
    assert (got["five-hundred"]["state"], got["five-hundred"]["attempts"]) == ("done", 2)
    assert (got["hang"]["state"], got["hang"]["attempts"]) == ("done", 2)
    assert (got["redirect"]["state"], got["redirect"]["attempts"]) == ("failed", 1)
    assert "redirect" in got["redirect"]["error"]
    assert engine.followed_redirects == 0
    assert (got["unauthorized"]["state"], got["unauthorized"]["attempts"]) == ("failed", 1)
    assert "401" in got["unauthorized"]["error"]
    assert engine.problems == []
    for outcome, count in (("ok", 2), ("error", 2), ("timeout", 1), ("unauthorized", 1),
                           ("refused", 0)):
        assert f'kzr_transcribe_requests_total{{outcome="{outcome}"}} {count}.0' in metrics
    assert 'kzr_jobs{job="transcribe",state="failed"} 2.0' in metrics
    assert 'kzr_jobs{job="transcribe",state="done"} 2.0' in metrics
    assert 'kzr_job_seconds_count{job="transcribe"} 2.0' in metrics
    # Two monologues answered ok, each one piece of about 15 s: the audio transcribed.
    [seconds] = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                 if line.startswith("kzr_transcribe_audio_seconds_total ")]
    assert 2 * 12 < seconds < 2 * 17


def _metrics(server: Server) -> str:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


@pytest.mark.slow
def test_a_refused_connection_is_retried_then_failed_and_uploads_go_on(
        tmp_path: Path) -> None:
    root = tmp_path / "rec"
    closed = f"http://127.0.0.1:{free_port()}/v1"
    with openai_serve(tmp_path, None, url=closed) as server:
        upload(server, "refused", ss.monologue().read())
        [row] = wait(root, 1)
        upload(server, "after", variant(ss.monologue().read(), 9))
    assert row.transcript is not None
    assert (row.transcript.state, row.transcript.attempts) == ("failed", 2)
    assert "refused" in (row.transcript.error or "").lower() or "connect" in (
        row.transcript.error or "").lower()
    # Failed ones are queued again on request.
    out = kzr("worker", "--root", str(root), "--retry-failed", "--transcribe", "openai",
              "--transcribe-url", closed, "--transcribe-model", MODEL, "--once",
              "--no-idle", env={"KZR_TRANSCRIBE_KEY": KEY})
    assert "queued 1 failed transcription(s) again" in out
    assert KEY not in out


@pytest.mark.slow
def test_a_25_minute_recording_goes_in_pieces(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    source = ss.workdir() / "conversation-25.wav"
    ss.conversation()
    wav = ss.workdir() / "conversation.wav"
    if not source.exists():
        repeats = round(25 * 60 / ss.seconds_of(wav))
        ss.run("sox", str(wav), str(source), "repeat", str(repeats - 1))
    mp3 = source.with_suffix(".mp3")
    if not mp3.exists():
        subprocess.run(["lame", "--quiet", "-b", "32", str(source), str(mp3)], check=True,
                       timeout=600)
    with transcription_server("openai", key=KEY) as engine, \
            openai_serve(tmp_path, engine) as server:
        upload(server, "long", mp3.read_bytes())
        wait(root, 1)
    doc = rows(root)["long"]
    assert doc["transcript"]["state"] == "done", doc["transcript"]
    duration = doc["audio"]["duration_ms"] / 1000
    assert duration > 24 * 60
    assert engine.problems == []
    lengths = []
    for seen in engine.seen:
        runs = sound_runs(seen.audio)
        assert runs
        lengths.append((len(seen.audio) - 44) / 32000)
    assert all(n <= 600 for n in lengths)
    assert len(engine.seen) >= 2 * 3  # each channel in three pieces at least
    stored = beside(doc, TRANSCRIPT_SUFFIX)
    starts = [s["start"] for s in stored["segments"]]
    assert max(starts) > duration - 60  # times offset back to the end of the call
    assert all(0 <= s["start"] < s["end"] <= duration for s in stored["segments"])
