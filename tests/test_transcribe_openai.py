"""The ``openai`` engine against a real HTTP server on loopback (tests/openai_server.py).

The server checks the request as OpenAI documents it and answers in the shape of
whisper.cpp, speaches, LocalAI, vLLM or OpenAI; the audio carries tones where a test
wants "speech", so the times that come back can be checked against where they are.
"""

from __future__ import annotations

import io
import logging
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from openai_server import SHAPES, TranscriptionServer, transcription_server
from servers import free_port

from kzr_wsgi.transcribe import (
    EngineBusy,
    EngineRefused,
    EngineRejected,
    EngineTimeout,
    EngineUnauthorized,
    Settings,
    TranscribeError,
    Transcript,
    create,
    outcome_of,
    transcribe_channel,
)
from kzr_wsgi.transcribe.openai_api import OpenAITranscriber, endpoint_url

RATE = 8000
KEY = "sk-test-0123456789abcdef"


def tones(duration: float, bursts: list[tuple[float, float]], rate: int = RATE) -> np.ndarray:
    """Silence with a 440 Hz tone (half scale) in each (start, end) burst, in seconds."""
    samples = np.zeros(int(duration * rate), dtype=np.float32)
    for start, end in bursts:
        a, b = int(start * rate), int(end * rate)
        t = np.arange(b - a) / rate
        samples[a:b] = 0.5 * np.sin(2 * np.pi * 440 * t)
    return samples


def engine(server: TranscriptionServer | str, **kwargs: object) -> OpenAITranscriber:
    url = server if isinstance(server, str) else server.url
    made = create(Settings(**{"engine": "openai", "url": url, "model": "large-v3",
                              **kwargs}))  # type: ignore[arg-type]
    assert isinstance(made, OpenAITranscriber)
    return made


BURSTS = [(0.5, 1.5), (2.5, 4.0)]


# -- the request -------------------------------------------------------------------------


def test_the_request_is_the_documented_multipart_field_by_field() -> None:
    with transcription_server("openai", key=KEY) as server:
        engine(server, key=KEY).transcribe(tones(5, BURSTS), RATE, "en")
    assert server.problems == []
    (seen,) = server.seen
    assert seen.path == "/v1/audio/transcriptions"
    assert seen.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.form == {"model": ["large-v3"], "response_format": ["verbose_json"],
                         "timestamp_granularities[]": ["segment", "word"], "language": ["en"]}
    assert (seen.filename, seen.file_type) == ("audio.wav", "audio/wav")
    with wave.open(io.BytesIO(seen.audio)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        assert w.getnframes() == 5 * 16000


def test_no_key_no_authorization_and_no_language_no_field() -> None:
    with transcription_server("openai") as server:
        engine(server).transcribe(tones(2, [(0.5, 1.0)]), RATE, None)
    (seen,) = server.seen
    assert "authorization" not in seen.headers
    assert "language" not in seen.form
    assert server.problems == []


# -- the answers of each real server -----------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_each_servers_answer_becomes_the_same_transcript(shape: str) -> None:
    with transcription_server(shape) as server:
        t = engine(server).transcribe(tones(5, BURSTS), RATE, None)
    assert server.problems == []
    assert (t.engine, t.model) == ("openai", "large-v3")
    if shape == "localai":  # no segments: one for the piece, holding all the text
        assert [(s.start, s.end, s.text) for s in t.segments] == [
            (0.0, 5.0, "hello world hello world")]
    else:
        assert [s.text for s in t.segments] == ["hello world", "hello world"]
        for s, (a, b) in zip(t.segments, BURSTS, strict=True):
            assert abs(s.start - a) <= 0.03 and abs(s.end - b) <= 0.03
    if shape in ("localai", "vllm"):  # neither sends word times
        assert t.words == ()
    else:  # whisper.cpp's tokens (" hel", "lo", " world") are joined into words
        assert [w.word for w in t.words] == ["hello", "world", "hello", "world"]
        assert abs(t.words[0].start - 0.5) <= 0.03 and abs(t.words[-1].end - 4.0) <= 0.03
    languages = {"openai": "english", "whisper.cpp": "english", "speaches": "en",
                 "localai": None, "vllm": None}
    assert t.language == languages[shape]


def test_the_language_asked_for_is_the_one_recorded() -> None:
    with transcription_server("whisper.cpp") as server:
        t = engine(server).transcribe(tones(2, [(0.5, 1.0)]), RATE, "en")
    assert t.language == "en"


# -- a 25-minute recording ---------------------------------------------------------------


def test_a_25_minute_recording_goes_in_pieces_with_times_offset_back() -> None:
    # a second or so of "speech" every 20 s, each a little longer than the one before
    # (so no two pieces hold the same audio)
    bursts = [(5.0 + 20 * k, 6.0 + 20 * k + 0.01 * k) for k in range(75)]
    samples = tones(25 * 60, bursts)
    speech_ms = [(int(a * 1000), int(b * 1000)) for a, b in bursts]
    placed: list[tuple[float, float]] = []
    with transcription_server("speaches") as server:
        t = transcribe_channel(engine(server), samples, RATE, speech_ms, language=None,
                               piece=600, on_piece=lambda p, _: placed.append((p.start, p.end)))
    assert server.problems == []
    assert len(server.calls) == 3 and set(server.calls.values()) == {1}  # three pieces
    assert all(b - a <= 600 for a, b in placed)
    assert [s.text for s in t.segments] == ["hello world"] * 75
    for s, (a, b) in zip(t.segments, bursts, strict=True):
        assert abs(s.start - a) <= 0.03 and abs(s.end - b) <= 0.03, (s, a, b)
    assert len(t.words) == 150 and t.words[-1].end <= 25 * 60


def test_pieces_answered_before_are_not_asked_again() -> None:
    bursts = [(1.0, 2.0), (40.0, 41.0), (80.0, 81.5)]  # three pieces (30 s silences)
    samples = tones(90, bursts)
    speech_ms = [(int(a * 1000), int(b * 1000)) for a, b in bursts]
    kept: dict[tuple[int, int], Transcript] = {}
    with transcription_server("openai") as server:
        server.then("ok", "ok", "500")
        e = engine(server)
        with pytest.raises(EngineBusy):  # the third piece fails: two are kept
            transcribe_channel(e, samples, RATE, speech_ms, language=None,
                               on_piece=lambda p, t: kept.update({(p.start_ms, p.end_ms): t}))
        assert len(kept) == 2 and sum(server.calls.values()) == 3
        t = transcribe_channel(e, samples, RATE, speech_ms, language=None,
                               known=lambda p: kept.get((p.start_ms, p.end_ms)))
    assert sum(server.calls.values()) == 4  # only the missing piece was asked again
    for s, (a, b) in zip(t.segments, bursts, strict=True):
        assert abs(s.start - a) <= 0.03 and abs(s.end - b) <= 0.03


def test_a_channel_without_speech_is_never_sent() -> None:
    # nothing listens on this port: any request would raise
    quiet = engine(f"http://127.0.0.1:{free_port()}/v1")
    t = transcribe_channel(quiet, tones(30, []), RATE, [], language="en")
    assert t.segments == () and t.words == () and t.engine == "openai"


# -- errors, each of its kind ------------------------------------------------------------


def test_a_500_is_retryable_and_the_next_try_succeeds() -> None:
    with transcription_server("openai") as server:
        server.then("500")
        e = engine(server)
        with pytest.raises(EngineBusy) as failed:
            e.transcribe(tones(2, [(0.5, 1.0)]), RATE, None)
        again = e.transcribe(tones(2, [(0.5, 1.0)]), RATE, None)
    assert failed.value.retryable and outcome_of(failed.value) == "error"
    assert "500" in str(failed.value) and "had an error" in str(failed.value)
    assert [s.text for s in again.segments] == ["hello world"]
    assert list(server.calls.values()) == [2]  # the same audio, asked twice


def test_a_server_that_never_answers_is_a_timeout() -> None:
    with transcription_server("openai") as server:
        server.then("hang")
        with pytest.raises(EngineTimeout) as failed:
            engine(server, timeout=1).transcribe(tones(1, [(0.2, 0.6)]), RATE, None)
    assert failed.value.retryable and outcome_of(failed.value) == "timeout"


def test_a_refused_connection_is_retryable() -> None:
    with pytest.raises(EngineRefused) as failed:
        engine(f"http://127.0.0.1:{free_port()}/v1").transcribe(tones(1, []), RATE, None)
    assert failed.value.retryable and outcome_of(failed.value) == "refused"
    assert "Connection refused" in str(failed.value)


@pytest.mark.parametrize("status", ["401", "403"])
def test_unauthorized_fails_at_once(status: str) -> None:
    with transcription_server("openai") as server:
        server.then(status)
        with pytest.raises(EngineUnauthorized) as failed:
            engine(server, key=KEY).transcribe(tones(1, []), RATE, None)
    assert not failed.value.retryable and outcome_of(failed.value) == "unauthorized"
    assert f"answered {status}: the key is wrong" in str(failed.value)


def test_a_missing_key_says_so() -> None:
    with transcription_server("openai", key=KEY) as server, \
            pytest.raises(EngineUnauthorized, match="the key is missing"):
        engine(server).transcribe(tones(1, []), RATE, None)


def test_a_redirect_is_not_followed() -> None:
    with transcription_server("openai") as server:
        server.then("redirect")
        with pytest.raises(EngineRejected, match="307, a redirect, which is not followed"):
            engine(server).transcribe(tones(1, []), RATE, None)
    assert server.followed_redirects == 0


@pytest.mark.parametrize("action, kind, retryable", [
    ("400", EngineRejected, False), ("404", EngineRejected, False),
    ("429", EngineBusy, True), ("not-json", EngineRejected, False),
    ("huge", EngineRejected, False),
], ids=["400", "404", "429", "not-json", "huge"])
def test_other_answers_are_classified(action: str, kind: type[TranscribeError],
                                      retryable: bool) -> None:
    with transcription_server("openai") as server:
        server.then(action)
        with pytest.raises(kind) as failed:
            engine(server).transcribe(tones(1, []), RATE, None)
    assert failed.value.retryable is retryable
    assert outcome_of(failed.value) == "error"


def test_outcomes_cover_every_label() -> None:
    from kzr_wsgi.transcribe import OUTCOMES

    assert OUTCOMES == ("ok", "error", "timeout", "refused", "unauthorized")
    assert outcome_of(None) == "ok" and outcome_of(RuntimeError("bug")) == "error"


# -- the key -----------------------------------------------------------------------------


def test_the_key_is_sent_and_never_logged_shown_or_raised(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3's own debug lines included
    errors: list[BaseException] = []
    with transcription_server("openai", key=KEY, echo_key=True) as server:
        e = engine(server, key=KEY)
        e.transcribe(tones(1, [(0.2, 0.6)]), RATE, None)
        server.then("401", "500", "400")
        for _ in range(3):
            try:
                e.transcribe(tones(1, []), RATE, None)
            except TranscribeError as exc:
                errors.append(exc)
    assert server.seen[0].headers["authorization"] == f"Bearer {KEY}"
    assert len(errors) == 3 and "Incorrect API key: Bearer [key]" in str(errors[0])
    assert caplog.records, "the engine logs its requests"
    shown = [caplog.text, repr(e), str(e), repr(e.settings),
             *(f"{x!s} {x!r}" for x in errors)]
    assert not [s for s in shown if KEY in s]


# -- where audio may go ------------------------------------------------------------------


@pytest.mark.parametrize("url, insecure, ok", [
    ("https://gpu1.example:8000/v1", False, True),
    ("http://127.0.0.1:8000/v1", False, True),
    ("http://localhost:8000/v1", False, True),
    ("http://[::1]:8000/v1", False, True),
    ("http://10.0.0.5:8000/v1", False, False),
    ("http://gpu1.example/v1", False, False),
    ("http://gpu1.example/v1", True, True),
    ("https://user:pw@gpu1.example/v1", True, False),
    ("ftp://gpu1.example/v1", True, False),
    ("https://gpu1.example/v1#x", False, False),
    ("", False, False),
], ids=["https", "loopback", "localhost", "ipv6-loopback", "lan", "name", "insecure",
        "credentials", "ftp", "fragment", "none"])
def test_plain_http_leaves_loopback_only_when_insecure(url: str, insecure: bool,
                                                       ok: bool) -> None:
    if ok:
        assert endpoint_url(url, insecure=insecure).endswith("/v1/audio/transcriptions")
        engine(url, insecure=insecure)  # the engine builds
    else:
        with pytest.raises(ValueError):
            engine(url, insecure=insecure)


def test_a_query_string_is_kept_and_a_model_is_required() -> None:
    assert endpoint_url("https://x.example/openai/v1?api-version=2024-06-01") == (
        "https://x.example/openai/v1/audio/transcriptions?api-version=2024-06-01")
    with pytest.raises(ValueError, match="needs a model"):
        create(Settings(engine="openai", url="https://x.example/v1"))


def make_certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_https_trusts_the_ca_file_and_nothing_else(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    with transcription_server("speaches", ssl_context=(str(cert), str(key))) as server:
        url = server.url.replace("http://", "https://")
        with pytest.raises(EngineRejected, match="TLS with"):
            engine(url).transcribe(tones(1, [(0.2, 0.6)]), RATE, None)
        t = engine(url, ca_file=str(cert)).transcribe(tones(1, [(0.2, 0.6)]), RATE, None)
    assert [s.text for s in t.segments] == ["hello world"]
