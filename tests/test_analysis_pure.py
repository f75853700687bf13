"""The analysis's pure parts on arrays made here: no files, no decoder.

Settings and their fingerprint, the timeline (bridging, silences, pauses), the flags'
definitions, who is who, the level step (peaks, clipping) and the speech step (tone
gate, block boundaries) fed numpy blocks, and the result's JSON both ways.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kzr_wsgi.analysis import (
    DEFAULTS,
    DEFECTS,
    FLAGS,
    KEYS,
    VERSION,
    AnalysisResult,
    AnalysisSettings,
    LevelStep,
    Peaks,
    Resampler,
    SettingsError,
    Skipped,
    SpeechStep,
    StreamInfo,
    channel_names,
    decide_flags,
    speakers,
)
from kzr_wsgi.analysis.decode import other_audio
from kzr_wsgi.analysis.music import LAG, music_windows, similarity
from kzr_wsgi.analysis.timeline import (
    bridge,
    drop_short,
    longest_pause,
    longest_silence,
    subtract,
    total_ms,
    union,
)
from kzr_wsgi.analysis.tones import frame_db, residual_db, spectra, widen
from kzr_wsgi.audio.wav import SILENCE

# -- settings -----------------------------------------------------------------------------


def test_defaults_are_the_documented_thresholds() -> None:
    table = DEFAULTS.table()
    assert table == {
        "dead-air": "30s", "one-way-min-speech": "5s", "one-way-max-other": "500ms",
        "silent-level": 64, "clip-level": 0.999, "clip-fraction": 0.001,
        "speech-level": -50.0, "tone-residual": -25.0, "steady-similarity": 0.9,
        "music-fraction": 0.5, "vad-mode": 3,
        "speech-bridge": "300ms", "speech-min": "90ms",
    }
    # The silence level is the upload inspection's: silent means one thing.
    assert DEFAULTS.silent_level == SILENCE
    # Every field has its docstring (the manual lists them).
    source = inspect.getsource(sys.modules[AnalysisSettings.__module__])
    for f in dataclasses.fields(AnalysisSettings):
        assert f'    {f.name}: ' in source
        after = source.split(f"    {f.name}: ", 1)[1].split("\n", 2)[1]
        assert after.strip().startswith('"""'), f.name


def test_a_table_round_trips_and_takes_durations_as_text_or_seconds() -> None:
    assert AnalysisSettings.from_table(DEFAULTS.table()) == DEFAULTS
    got = AnalysisSettings.from_table({"dead-air": "1.5s", "speech-min": "120ms",
                                       "one-way-min-speech": 7, "clip-level": 1})
    assert (got.dead_air, got.speech_min, got.one_way_min_speech, got.clip_level) == (
        1.5, 0.12, 7.0, 1.0)
    assert AnalysisSettings.from_table({}) == DEFAULTS
    assert set(DEFAULTS.table()) == KEYS and "caller" not in KEYS


@pytest.mark.parametrize("table, words", [
    ({"dead_air": "30s"}, "unknown key dead_air"),
    ({"dead-air": "30"}, "dead-air must be a duration"),
    ({"dead-air": "-1s"}, "dead-air must be a duration"),
    ({"dead-air": True}, "dead-air must be a number"),
    ({"vad-mode": 4}, "vad-mode must be 0, 1, 2 or 3"),
    ({"vad-mode": 2.5}, "vad-mode must be a whole number"),
    ({"clip-level": 0}, "clip-level must be above 0"),
    ({"silent-level": "64"}, "silent-level must be a whole number"),
    ({"speech-level": 3}, "speech-level must be -120..0"),
], ids=lambda v: str(v))
def test_a_bad_table_is_refused_naming_the_key(table: dict[str, object], words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        AnalysisSettings.from_table(table)


def test_the_fingerprint_follows_every_value_and_the_version() -> None:
    base = DEFAULTS.fingerprint()
    assert base == AnalysisSettings().fingerprint() == AnalysisSettings.from_table(
        DEFAULTS.table()).fingerprint()
    changed = {
        dataclasses.replace(DEFAULTS, **{f.name: _other(getattr(DEFAULTS, f.name))}).fingerprint()
        for f in dataclasses.fields(AnalysisSettings)
    }
    assert base not in changed and len(changed) == len(dataclasses.fields(AnalysisSettings))
    assert VERSION >= 1


def _other(value: object) -> object:
    if isinstance(value, int):
        return 1 if value != 1 else 2
    assert isinstance(value, float)
    return value / 2 if value else 0.5


# -- timeline -------------------------------------------------------------------------------


def test_bridging_and_dropping() -> None:
    runs = [(0, 60), (90, 300), (550, 900), (1300, 1330), (3000, 3600)]
    assert bridge(runs, 300) == [(0, 900), (1300, 1330), (3000, 3600)]
    assert drop_short(bridge(runs, 300), 90) == [(0, 900), (3000, 3600)]
    assert total_ms([(0, 900), (3000, 3600)]) == 1500


def test_silence_and_pause_are_measured_over_all_channels() -> None:
    left = [(1000, 3000), (45000, 46000)]
    right = [(2000, 5000)]
    assert union([left, right]) == [(1000, 5000), (45000, 46000)]
    # Longest stretch with nobody speaking: 5 s .. 45 s.
    assert longest_silence([left, right], 60000) == 40000
    assert longest_pause([left, right]) == 40000
    # Before the first and after the last speech count for silence, not for pauses.
    assert longest_silence([[(50000, 51000)]], 60000) == 50000
    assert longest_pause([[(50000, 51000)]]) == 0
    assert longest_silence([[], []], 7000) == 7000


# -- flags and names ---------------------------------------------------------------------


def flags(**kw: object) -> tuple[str, ...]:
    args: dict[str, object] = dict(channels=2, frames=80000, talk=[20000, 15000], pause_ms=0,
                                   silent=False, clipped_fraction=0.0, settings=DEFAULTS)
    args.update(kw)
    return decide_flags(**args)  # type: ignore[arg-type]


def test_each_flag_is_set_at_its_threshold_and_not_below() -> None:
    assert flags() == ()
    assert flags(talk=[5000, 499]) == ("one_way_audio",)
    assert flags(talk=[4999, 0]) == ()  # too little speech to tell
    assert flags(talk=[5000, 500]) == ()
    assert flags(talk=[0, 9000]) == ("one_way_audio",)
    assert flags(channels=1, talk=[9000]) == ()  # mono cannot show one-way audio
    assert flags(channels=3, talk=[9000, 0, 0]) == ()
    assert flags(clipped_fraction=0.001) == ()
    assert flags(clipped_fraction=0.0011) == ("clipped",)
    assert flags(pause_ms=29999) == ()
    assert flags(pause_ms=30000) == ("dead_air",)
    assert flags(talk=[0, 0]) == ("no_speech",)
    assert flags(talk=[0, 0], silent=True) == ("silent",)
    assert flags(talk=[0, 0], frames=0) == ()
    assert flags(talk=[9000, 0], clipped_fraction=0.5, pause_ms=40000) == (
        "one_way_audio", "clipped", "dead_air")
    assert set(DEFECTS) < set(FLAGS)


def test_channel_names_and_speakers() -> None:
    assert channel_names(1) == ("mono",)
    assert channel_names(2) == ("left", "right")
    assert channel_names(4) == ("ch1", "ch2", "ch3", "ch4")
    assert speakers(channel_names(2)) == {"left": "caller", "right": "callee"}
    assert speakers(channel_names(2), "right") == {"left": "callee", "right": "caller"}
    assert speakers(channel_names(1), "right") == {"mono": "all"}
    assert speakers(channel_names(4)) == {}
    with pytest.raises(ValueError, match="caller must be"):
        speakers(channel_names(2), "callee")


def test_other_audio_containers_are_told_from_junk() -> None:
    for head in (b"OggS\x00\x02", b"fLaC\x00\x00", b"\x00\x00\x00\x18ftypmp42",
                 b"FORM\x00\x00\x00\x10AIFF", b"#!AMR\n", b"\xff\xf1\x50\x80"):
        assert other_audio(head), head
    for head in (b"<html>", b"%PDF-1.4", b"\x00" * 12, b"RIFF\x00\x00\x00\x00AVI "):
        assert not other_audio(head), head
    with pytest.raises(ValueError):
        Skipped("bored")


# -- levels ------------------------------------------------------------------------------


def levels_of(data: np.ndarray, rate: int, cuts: list[int]) -> tuple[object, ...]:
    step = LevelStep(clip_level=0.999)
    step.start(StreamInfo("wav", rate, data.shape[1]))
    edges = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        step.feed(data[a:b])
    found = step.finish()
    return found.frames, found.peak, found.clipped_samples, [p.tolist() for p in found.peaks]


@settings(max_examples=60, deadline=None)
@given(rate=st.sampled_from([8000, 11025, 16000, 22050, 44100]),
       seconds=st.floats(0.01, 2.0), cuts=st.lists(st.integers(0, 10**6), max_size=8))
def test_levels_do_not_depend_on_where_blocks_break(rate: int, seconds: float,
                                                     cuts: list[int]) -> None:
    n = max(1, round(rate * seconds))
    data = np.random.default_rng(n).uniform(-1, 1, (n, 2)).astype(np.float32)
    whole = levels_of(data, rate, [])
    assert levels_of(data, rate, cuts) == whole
    frames, peak, _, peaks = whole
    # One value per started tenth of a second, each the maximum of its samples.
    starts = [k * rate // 10 for k in range(len(peaks[0]) + 1)]
    assert starts[-2] < n <= starts[-1]
    for c in range(2):
        expected = [float(np.abs(data[a:b, c]).max()) for a, b in zip(starts[:-1], starts[1:],
                                                                      strict=True)]
        assert peaks[c] == pytest.approx(expected)
        assert peak[c] == pytest.approx(max(expected))  # type: ignore[index]


def test_clipping_counts_samples_at_the_level_on_every_channel() -> None:
    data = np.zeros((10000, 2), dtype=np.float32)
    data[:7, 0] = 1.0
    data[7:11, 1] = -0.9995
    data[11:20, 1] = 0.998  # below 0.999: not clipped
    assert levels_of(data, 8000, [])[2] == 11


# -- the tone gate ------------------------------------------------------------------------


def synth(rate: int, seconds: float, *freqs: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    wave = sum(np.sin(2 * np.pi * f * t) for f in freqs)
    return (level * wave / max(len(freqs), 1)).astype(np.float32)


def test_tones_have_a_low_residual_and_noise_a_high_one() -> None:
    for freqs in ((440.0,), (2100.0,), (440.0, 480.0), (697.0, 1209.0), (941.0, 1633.0)):
        frames = synth(8000, 1.0, *freqs)[:7920].reshape(-1, 240)
        assert (residual_db(frames) < -30).all(), freqs
    noise = np.random.default_rng(1).normal(0, 0.1, (40, 240)).astype(np.float32)
    assert (residual_db(noise) > -3).all()
    # A harmonic-rich buzz (a crude voiced sound) is not a tone either.
    buzz = sum(synth(8000, 1.0, 130.0 * k, level=0.3 / k) for k in range(1, 25))
    assert (residual_db(buzz[:7920].reshape(-1, 240)) > -20).all()
    assert frame_db(np.zeros((2, 240), dtype=np.float32)).tolist() == [-120.0, -120.0]
    assert frame_db(np.full((1, 240), 0.5, dtype=np.float32))[0] == -120.0  # DC only


def test_held_notes_are_steady_and_a_voice_is_not() -> None:
    chord = synth(8000, 1.0, 261.6, 329.6, 392.0)[:7920].reshape(-1, 240)
    power = spectra(chord)
    assert (similarity(power[:-LAG], power[LAG:]) > 0.95).all()
    t = np.arange(7920) / 8000
    # A buzz whose pitch moves as a voice's does from syllable to syllable (4 a second).
    pitch = 2 * np.pi * np.cumsum(130 + 50 * np.sin(2 * np.pi * 4 * t)) / 8000
    voice = (sum(np.sin(k * pitch) / k for k in range(1, 30)) * 0.2).astype(np.float32)
    power = spectra(voice.reshape(-1, 240))
    assert np.median(similarity(power[:-LAG], power[LAG:])) < 0.8
    noise = np.random.default_rng(1).normal(0, 0.1, (33, 240)).astype(np.float32)
    power = spectra(noise)
    assert np.median(similarity(power[:-LAG], power[LAG:])) < 0.85
    assert similarity(np.zeros((1, 4)), np.ones((1, 4))).tolist() == [0.0]
    # A stretch too quiet to judge goes with the music next to it, not otherwise.
    judged, steady = np.array([33, 33, 2, 30]), np.array([30, 0, 2, 0])
    assert music_windows(judged, steady, fraction=0.5) == [0]
    assert music_windows(np.array([33, 2]), np.array([30, 0]), fraction=0.5) == [0, 1]
    assert music_windows(np.array([33, 33]), np.array([16, 17]), fraction=0.5) == [1]


def test_subtracting_holes_from_intervals() -> None:
    assert subtract([(0, 1000)], []) == [(0, 1000)]
    assert subtract([(0, 1000)], [(0, 1000)]) == []
    assert subtract([(0, 100), (200, 300), (400, 500)], [(50, 250), (450, 600)]) == [
        (0, 50), (250, 300), (400, 450)]
    assert subtract([(100, 200)], [(0, 50), (300, 400)]) == [(100, 200)]


def test_widening_reaches_across_block_edges() -> None:
    mask = np.zeros(6, dtype=bool)
    assert widen(mask, before=np.array([True, False])).tolist() == [True] + [False] * 5
    assert widen(mask, after=np.array([False, True])).tolist() == [False] * 5 + [True]
    assert widen(mask, after=np.array([True, False])).tolist() == [False] * 4 + [True] * 2


# -- the speech step on signals made here -------------------------------------------------


def speech_of(data: np.ndarray, rate: int, block: int) -> tuple[object, ...]:
    step = SpeechStep(DEFAULTS)
    step.start(StreamInfo("wav", rate, data.shape[1]))
    for a in range(0, len(data), block):
        step.feed(data[a : a + block])
    found = step.finish()
    return found.intervals, found.tone_ms, found.music_ms


def test_tones_are_kept_from_the_detector_and_blocks_do_not_matter() -> None:
    rate = 16000
    tone = synth(rate, 3.0, 440.0, 480.0)
    quiet = np.zeros(rate, dtype=np.float32)
    # A vowel-like buzz with a moving pitch, which webrtcvad takes for speech.
    t = np.arange(2 * rate) / rate
    pitch = 120 + 40 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    buzz = sum(np.sin(k * phase) / k for k in range(1, 30)) * 0.2
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    left = np.concatenate((tone, quiet, (buzz * envelope).astype(np.float32), quiet))
    right = np.concatenate((quiet, quiet, tone, quiet, np.zeros(rate, dtype=np.float32)))
    data = np.stack((left, right[: len(left)]), axis=1)
    whole = speech_of(data, rate, len(data))
    intervals, tone_ms, music_ms = whole
    assert music_ms == (0, 0)
    assert intervals[1] == ()  # only a tone on the right: no speech  # type: ignore[index]
    assert tone_ms[1] >= 2900  # type: ignore[index]
    assert tone_ms[0] >= 2900  # type: ignore[index]
    spoken = intervals[0]  # type: ignore[index]
    # The buzz lies at 4..6 s; a frame either side at most.
    assert spoken and all(s >= 3940 and e <= 6060 for s, e in spoken)
    assert total_ms(spoken) > 1500
    for block in (241, 480, 1000, 4097):
        assert speech_of(data, rate, block) == whole, block


def test_the_resampler_keeps_the_signal() -> None:
    to8k = Resampler(16000, 8000, channels=2)
    data = np.stack([synth(16000, 1.0, 440.0), synth(16000, 1.0, 1000.0)], axis=1)
    out = np.concatenate([to8k(data[a : a + 3000]) for a in range(0, 16000, 3000)]
                         + [to8k.flush()])
    assert out.shape == (8000, 2)
    # The same tones, an octave of samples fewer: 440 Hz is 440 cycles in one second.
    spectrum = np.abs(np.fft.rfft(out[:, 0]))
    assert abs(int(spectrum.argmax()) - 440) <= 1
    same = Resampler(8000, 8000, channels=1)
    block = np.zeros((5, 1), dtype=np.float32)
    assert same(block) is block and same.flush().shape == (0, 1)


# -- the result's JSON --------------------------------------------------------------------


def test_result_and_peaks_round_trip_through_json() -> None:
    result = AnalysisResult(
        format="mp3", sample_rate=16000, duration_ms=61234, channel_names=("left", "right"),
        talk_ms={"left": 9000, "right": 0}, speech={"left": ((0, 4000), (5000, 10000)),
                                                   "right": ()},
        longest_silence_ms=51234, flags=("one_way_audio",), tone_ms={"left": 0, "right": 0},
        peak={"left": 0.5, "right": 0.0}, clipped_fraction=0.0, settings="abc")
    data = json.loads(json.dumps(result.to_json()))
    assert data["channels"] == 2 and data["speech"]["left"] == [[0, 4000], [5000, 10000]]
    assert data["version"] == VERSION
    assert AnalysisResult.from_json(data) == result
    assert result.defects == ("one_way_audio",)
    peaks = Peaks({"mono": np.array([0.0, 0.12345, 1.0], dtype=np.float32)})
    shown = json.loads(json.dumps(peaks.to_json()))
    assert shown == {"rate": 10, "channels": {"mono": [0.0, 0.123, 1.0]}}
    assert Peaks.from_json(shown).to_json() == shown
