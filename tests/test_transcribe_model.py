"""The transcript model, the settings, pieces and PCM: pure parts, no engine, no socket."""

from __future__ import annotations

import io
import json
import wave

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kzr_wsgi.transcribe import (
    MAX_PIECE_SECONDS,
    Piece,
    Segment,
    Settings,
    Transcript,
    Word,
    cut_pieces,
    merge_channels,
)
from kzr_wsgi.transcribe.pcm import pcm16, wav_bytes
from kzr_wsgi.transcribe.settings import setting_names


def part(*segments: tuple[float, float, str], words: tuple[Word, ...] = ()) -> Transcript:
    return Transcript("en", "openai", "large-v3", tuple(Segment(*s) for s in segments), words)


# -- the stored shape --------------------------------------------------------------------


def test_the_stored_json_has_exactly_the_documented_shape() -> None:
    left = part((0.5, 1.25, "hello"), words=(Word(0.5, 1.25, "hello"),))
    right = part((1.0, 2.0, "hi there"), words=(Word(1.0, 1.4, "hi"), Word(1.5, 2.0, "there")))
    doc = merge_channels({"left": left, "right": right}).to_json(
        {"left": "caller", "right": "callee"})
    assert doc == {
        "language": "en", "engine": "openai", "model": "large-v3", "text": "hello hi there",
        "segments": [
            {"start": 0.5, "end": 1.25, "channel": "left", "speaker": "caller", "text": "hello"},
            {"start": 1, "end": 2, "channel": "right", "speaker": "callee", "text": "hi there"},
        ],
        "words": [
            {"start": 0.5, "end": 1.25, "channel": "left", "speaker": "caller", "word": "hello"},
            {"start": 1, "end": 1.4, "channel": "right", "speaker": "callee", "word": "hi"},
            {"start": 1.5, "end": 2, "channel": "right", "speaker": "callee", "word": "there"},
        ],
    }
    assert list(doc) == ["language", "engine", "model", "text", "segments", "words"]
    # seconds are numbers, rounded to the millisecond
    assert json.loads(json.dumps(doc)) == doc


def test_speakers_are_derived_when_written_never_stored_in_memory() -> None:
    mono = part((0.0, 1.0, "hello")).on_channel("mono")
    assert mono.to_json({"mono": "all"})["segments"][0]["speaker"] == "all"
    stored = merge_channels({"left": part((0, 1, "a")), "right": part((2, 3, "b"))})
    doc = stored.to_json({"left": "caller", "right": "callee"})
    # read back and written with a changed mapping: the new mapping applies
    again = Transcript.from_json(doc).to_json({"left": "callee", "right": "caller"})
    assert [s["speaker"] for s in again["segments"]] == ["callee", "caller"]
    # a channel the mapping does not name is shown by its own name
    assert stored.to_json({})["segments"][0]["speaker"] == "left"


def test_from_json_round_trips_and_ignores_derived_fields() -> None:
    t = merge_channels({"left": part((0.25, 1.5, "a b"), words=(Word(0.25, 0.5, "a"),)),
                        "right": part((0.75, 2.0, "c"))})
    doc = t.to_json({"left": "caller", "right": "callee"})
    doc["text"] = "something else"  # derived: the segments are the truth
    assert Transcript.from_json(doc) == t


@pytest.mark.parametrize("doc, message", [
    ([], "a JSON object"),
    ({"engine": "e", "model": "m", "language": 3}, "language"),
    ({"model": "m"}, "'engine'"),
    ({"engine": "e", "model": "m", "segments": {}}, "segments"),
    ({"engine": "e", "model": "m", "segments": [{"start": "0", "end": 1, "text": "x",
                                                  "channel": "left"}]}, "'start'"),
    ({"engine": "e", "model": "m", "words": [{"start": 0, "end": float("nan"), "word": "x",
                                               "channel": "left"}]}, "'end'"),
    ({"engine": "e", "model": "m", "words": [{"start": 0, "end": True, "word": "x",
                                               "channel": "left"}]}, "'end'"),
], ids=["not-object", "language", "no-engine", "segments-object", "string-time", "nan", "bool"])
def test_from_json_refuses_a_malformed_document(doc: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Transcript.from_json(doc)  # type: ignore[arg-type]


def test_merging_orders_both_channels_by_time_and_keeps_engine_and_language() -> None:
    left = part((0.0, 1.0, "one"), (4.0, 5.0, "four"))
    right = Transcript(None, "openai", "large-v3", (Segment(2.0, 3.0, "two"),), ())
    merged = merge_channels({"left": left, "right": right})
    assert [(s.text, s.channel) for s in merged.segments] == [
        ("one", "left"), ("two", "right"), ("four", "left")]
    assert merged.text == "one two four"
    assert (merged.language, merged.engine, merged.model) == ("en", "openai", "large-v3")
    empty = merge_channels({}, engine="pocketsphinx", model="en-us")
    assert empty.to_json({})["segments"] == [] and empty.engine == "pocketsphinx"


# -- settings ----------------------------------------------------------------------------


def test_settings_keep_the_key_out_of_repr() -> None:
    s = Settings(engine="openai", url="https://gpu1/v1", model="m", key="sk-secret-123")
    assert "sk-secret-123" not in repr(s) and "sk-secret-123" not in str(s)
    assert s.key == "sk-secret-123"


@pytest.mark.parametrize("kwargs, message", [
    ({"engine": ""}, "engine"),
    ({"timeout": 0}, "timeout"),
    ({"piece": MAX_PIECE_SECONDS + 1}, "piece: at most"),
    ({"concurrency": 0}, "concurrency"),
    ({"attempts": 1.5}, "attempts"),
    ({"redact": ("card", "ssn")}, "unknown ssn"),
    ({"redact_patterns": ("(unclosed",)}, r"redact-patterns\[0\]"),
    ({"min_duration": 5, "max_duration": 1}, "min-duration"),
], ids=["engine", "timeout", "piece", "concurrency", "attempts", "redact", "pattern", "durations"])
def test_settings_refuse_bad_values_naming_the_key(kwargs: dict[str, object],
                                                   message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**{"engine": "openai", **kwargs})  # type: ignore[arg-type]


def test_setting_names_are_the_tables_keys() -> None:
    assert setting_names() == [
        "engine", "url", "model", "language", "timeout", "concurrency", "ca-file", "insecure",
        "piece", "attempts", "accounts", "kinds", "min-duration", "max-duration", "redact",
        "redact-patterns"]
    assert Settings(engine="x").redact == ("card",) and Settings(engine="x").piece == 600


# -- pieces ------------------------------------------------------------------------------


def test_no_speech_means_no_pieces() -> None:
    assert cut_pieces([], 60_000) == []
    assert cut_pieces([(5000, 5000)], 60_000) == []  # an empty interval is no speech


def test_a_run_longer_than_a_piece_is_cut_into_equal_parts() -> None:
    pieces = cut_pieces([(1000, 26_000)], 30_000, piece=10, pad=0.2)
    assert [(p.start_ms, p.end_ms) for p in pieces] == [
        (800, 9333), (9333, 17666), (17666, 26200)]
    assert all(p.duration <= 10 for p in pieces)


def test_pieces_are_cut_in_silences_and_padded_into_them() -> None:
    speech = [(1000, 4000), (4500, 8000), (20_000, 29_000), (29_500, 31_000)]
    pieces = cut_pieces(speech, 40_000, piece=10, pad=0.3)
    assert [(p.start_ms, p.end_ms) for p in pieces] == [(700, 8300), (19_700, 29_250),
                                                        (29_250, 31_300)]


def test_a_long_silence_ends_a_piece() -> None:
    pieces = cut_pieces([(0, 1000), (40_000, 41_000)], 60_000, piece=600, gap=30)
    assert len(pieces) == 2
    assert len(cut_pieces([(0, 1000), (20_000, 21_000)], 60_000, piece=600, gap=30)) == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200_000), st.integers(1, 90_000)), max_size=30),
       st.integers(1, 120), st.floats(0, 1), st.floats(1, 60))
def test_pieces_cover_all_speech_within_bounds(runs: list[tuple[int, int]], piece: int,
                                               pad: float, gap: float) -> None:
    duration = 300_000
    speech = [(s, min(s + n, duration)) for s, n in runs]
    pieces = cut_pieces(speech, duration, piece=piece, pad=pad, gap=gap)
    limit = piece * 1000
    for p in pieces:
        assert 0 <= p.start_ms < p.end_ms <= duration
        assert p.end_ms - p.start_ms <= limit
    for a, b in zip(pieces, pieces[1:], strict=False):
        assert a.end_ms <= b.start_ms  # never overlapping, in order
    covered = [(p.start_ms, p.end_ms) for p in pieces]
    for s, e in speech:
        for ms in range(s, e, 997):  # every second or so of speech is inside a piece
            assert any(a <= ms < b for a, b in covered), (ms, covered)
    if not any(e > s for s, e in speech):
        assert pieces == []
    # a cut inside speech only where one run of speech is longer than a piece
    merged = sorted(speech)
    for a, b in zip(pieces, pieces[1:], strict=False):
        if a.end_ms == b.start_ms:
            inside = [(s, e) for s, e in merged if s < a.end_ms < e]
            if inside:
                assert any(e - s > limit for s, e in _merged(merged))


def _merged(speech: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for s, e in sorted(speech):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def test_a_piece_places_answers_in_the_recordings_time_inside_itself() -> None:
    p = Piece(60_000, 70_000)
    answer = part((0.5, 2.0, "a"), (9.5, 12.0, "past the end"),
                  words=(Word(-0.2, 0.4, "early"), Word(9.9, 10.4, "late")))
    placed = p.place(answer)
    assert [(s.start, s.end) for s in placed.segments] == [(60.5, 62.0), (69.5, 70.0)]
    assert [(w.start, w.end) for w in placed.words] == [(60.0, 60.4), (69.9, 70.0)]
    samples = np.arange(100 * 8000, dtype=np.float32)
    assert p.cut(samples, 8000)[0] == 60 * 8000 and len(p.cut(samples, 8000)) == 10 * 8000


# -- PCM and WAV -------------------------------------------------------------------------


def test_a_wav_is_16_bit_mono_16_khz_resampled_from_8_khz() -> None:
    t = np.arange(8000) / 8000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    data = wav_bytes(tone, 8000)
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        assert w.getnframes() == 16000
        pcm = np.frombuffer(w.readframes(16000), dtype="<i2")
    # the tone survives: its level (0.5 full scale, RMS 0.354) and its pitch
    assert abs(np.sqrt(np.mean((pcm[1000:-1000] / 32768.0) ** 2)) - 0.354) < 0.01
    spectrum = np.abs(np.fft.rfft(pcm))
    assert abs(np.argmax(spectrum) * 16000 / len(pcm) - 440) < 2


def test_pcm16_passes_int16_through_and_clips_floats() -> None:
    ints = np.array([1, -2, 32767], dtype=np.int16)
    assert pcm16(ints, 16000) is ints or np.array_equal(pcm16(ints, 16000), ints)
    assert pcm16(np.array([2.0, -2.0, 0.5], dtype=np.float32), 16000).tolist() == [
        32767, -32768, 16384]
    assert len(pcm16(ints.repeat(800), 8000)) == 4800


@pytest.mark.parametrize("samples, message", [
    (np.zeros((2, 10), dtype=np.float32), "1-D"),
    (np.zeros(10, dtype=np.int32), "float32 or int16"),
], ids=["2-D", "int32"])
def test_pcm16_refuses_what_is_not_one_channel(samples: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pcm16(samples, 8000)


def test_a_wav_over_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="cut shorter pieces"):
        wav_bytes(np.zeros(16000 * 10, dtype=np.int16), 16000, limit=100_000)
    longest = np.zeros(16000 * MAX_PIECE_SECONDS, dtype=np.int16)
    assert len(wav_bytes(longest, 16000)) <= 24_000_000
