"""The analysis on real recordings: espeak-ng speech, sox tones, LAME's MP3s in FreeSWITCH's
shapes, libsndfile's WAVs (tests/speech_samples.py makes them once per session).

Each flag appears where it should and nowhere else; talk times are within 20 % of the
speech put in (measured by sox, not by the code under test); decoding agrees with
independent readers (sox's own MP3 decoder, mutagen); what cannot be analysed is skipped
with its reason or fails with its error.
"""

from __future__ import annotations

import io
import json
import math
import struct
import subprocess
from collections.abc import Callable

import audio_samples
import mutagen.mp3
import numpy as np
import pytest
import speech_samples as ss

from kzr_wsgi.analysis import (
    DEFAULTS,
    Analysed,
    AnalysisResult,
    DecodeError,
    Peaks,
    Resampler,
    Skipped,
    StreamInfo,
    analyse,
    open_audio,
    run_steps,
)
from kzr_wsgi.analysis.levels import LevelStep
from kzr_wsgi.audio import inspect_audio
from kzr_wsgi.audio.mp3 import header_at

#: Every recording made for these tests, and exactly the flags it must get.
CASES: dict[str, tuple[Callable[[], ss.Sample], tuple[str, ...]]] = {
    "conversation": (ss.conversation, ()),
    "monologue": (ss.monologue, ()),
    "one_way": (ss.one_way, ("one_way_audio",)),
    "dead_air": (ss.dead_air, ("dead_air",)),
    "silent_mp3": (lambda: ss.silent("mp3"), ("silent",)),
    "silent_wav": (lambda: ss.silent("wav"), ("silent",)),
    "tone440": (lambda: ss.tone("tone440"), ("no_speech",)),
    "dtmf": (lambda: ss.tone("dtmf"), ("no_speech",)),
    "fax": (lambda: ss.tone("fax"), ("no_speech",)),
    "ringback": (lambda: ss.tone("ringback"), ("no_speech",)),
    "melody": (lambda: ss.music("melody"), ("no_speech",)),
    "chords": (lambda: ss.music("chords"), ("no_speech",)),
    "on_hold": (ss.on_hold, ("dead_air",)),
    "clipped": (ss.clipped, ("clipped",)),
    "multichannel": (ss.multichannel, ()),
}


def analysed(sample: ss.Sample) -> Analysed:
    found = analyse(sample.path)
    assert isinstance(found, Analysed), found
    return found


@pytest.fixture(scope="module")
def results() -> dict[str, tuple[ss.Sample, Analysed]]:
    out = {}
    for name, (make, _) in CASES.items():
        sample = make()
        out[name] = (sample, analysed(sample))
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_each_recording_gets_exactly_its_flags(
        name: str, results: dict[str, tuple[ss.Sample, Analysed]]) -> None:
    _, found = results[name]
    assert found.result.flags == CASES[name][1]


@pytest.mark.parametrize("name", list(CASES))
def test_talk_time_is_within_a_fifth_of_the_speech_put_in(
        name: str, results: dict[str, tuple[ss.Sample, Analysed]]) -> None:
    sample, found = results[name]
    assert set(found.result.talk_ms) == set(sample.talk_ms)
    for channel, put_in in sample.talk_ms.items():
        talk = found.result.talk_ms[channel]
        if put_in == 0:
            assert talk == 0, channel
        else:
            assert abs(talk - put_in) <= 0.2 * put_in, (channel, talk, put_in)
        assert talk == sum(e - s for s, e in found.result.speech[channel])


def test_tones_are_kept_from_the_detector(
        results: dict[str, tuple[ss.Sample, Analysed]]) -> None:
    for name in ss.TONES:
        result = results[name][1].result
        # Most of the sound was a tone, and none of it speech.
        assert result.tone_ms["mono"] >= 0.3 * result.duration_ms, name
        assert result.speech["mono"] == ()
    # Speech is rarely taken for tone: a few frames of the most tonal vowels.
    conversation = results["conversation"][1].result
    for channel, talk in conversation.talk_ms.items():
        assert conversation.tone_ms[channel] <= 0.05 * talk


def test_music_is_not_speech(results: dict[str, tuple[ss.Sample, Analysed]]) -> None:
    for name in ss.MUSIC:
        result = results[name][1].result
        assert result.music_ms["mono"] >= 0.9 * result.duration_ms, name
        assert result.tone_ms["mono"] <= 0.1 * result.duration_ms, name
    # Music on hold, heard on the right between the callee's sentences: not talk, and the
    # 36 s without speech between them is dead air.
    held = results["on_hold"][1].result
    assert held.music_ms["right"] >= 33000 and held.music_ms["left"] == 0
    assert held.longest_silence_ms >= 33000
    for name in ("conversation", "monologue", "one_way", "dead_air", "clipped"):
        assert set(results[name][1].result.music_ms.values()) == {0}, name


def test_the_sides_of_a_conversation_take_turns(
        results: dict[str, tuple[ss.Sample, Analysed]]) -> None:
    result = results["conversation"][1].result
    assert result.channel_names == ("left", "right") and result.channels == 2
    left, right = result.speech["left"], result.speech["right"]
    assert len(left) >= 3 and len(right) >= 3
    overlap = sum(max(0, min(a[1], b[1]) - max(a[0], b[0])) for a in left for b in right)
    assert overlap <= 0.1 * min(result.talk_ms.values())
    # The left side speaks first, the right one last (as the sentences were laid out).
    assert left[0][0] < 500 and right[0][0] > 2500 and right[-1][1] > left[-1][1]
    assert result.longest_silence_ms < 1500


def test_dead_air_is_the_forty_seconds_between_the_sentences(
        results: dict[str, tuple[ss.Sample, Analysed]]) -> None:
    result = results["dead_air"][1].result
    assert abs(result.longest_silence_ms - 40000) <= 1000
    spoken = result.speech["mono"]
    assert spoken[0][0] < 500 and spoken[-1][1] > 43000
    # One second of the gap less and it is no longer dead air by the default rule.
    shorter = analyse(results["dead_air"][0].path,
                      DEFAULTS.__class__(dead_air=result.longest_silence_ms / 1000 + 1))
    assert isinstance(shorter, Analysed) and shorter.result.flags == ()


def test_silent_wav_agrees_with_the_upload_inspection() -> None:
    for kind, silent in (("silence", True), ("quiet", True), ("tone", False), ("noise", False)):
        data = audio_samples.wav(3.0, kind=kind)
        info = inspect_audio([data], ext="wav")
        assert info is not None and ("silent" in info.flags) is silent, kind
        found = analyse(io.BytesIO(data))
        assert isinstance(found, Analysed)
        assert ("silent" in found.result.flags) is silent, kind


# -- decoding, checked by independent readers ---------------------------------------------


def sox_stats(path: object) -> tuple[float, list[float]]:
    """Length in seconds and per-channel peak (dBFS) from ``sox FILE -n stats``."""
    proc = subprocess.run(["sox", str(path), "-n", "stats"], capture_output=True, text=True,
                          check=True, timeout=120)
    lines = {line[:13].strip(): line[13:].split() for line in proc.stderr.splitlines()}
    length = float(lines["Length s"][0])
    peaks = lines["Pk lev dB"]
    per_channel = peaks[1:] if len(peaks) > 1 else peaks
    return length, [float(v) for v in per_channel]


@pytest.mark.parametrize("name", ["conversation", "monologue", "one_way", "dead_air",
                                  "clipped", "tone440", "on_hold"])
def test_mp3_decoding_agrees_with_sox_and_mutagen(
        name: str, results: dict[str, tuple[ss.Sample, Analysed]]) -> None:
    sample, found = results[name]
    result = found.result
    assert result.format == "mp3"
    assert result.sample_rate == int(ss.run("soxi", "-r", str(sample.path)))
    assert result.channels == int(ss.run("soxi", "-c", str(sample.path)))
    info = mutagen.mp3.MP3(str(sample.path)).info
    assert (info.sample_rate, info.channels) == (result.sample_rate, result.channels)
    # The readers differ by LAME's encoder delay and padding at most (mpg123 drops them
    # where an Info frame says how much; at 8 kHz there is none): 2048 + 576 samples.
    slack = (2048 + 576) * 1000 / result.sample_rate
    assert abs(result.duration_ms - info.length * 1000) <= slack
    length, peaks_db = sox_stats(sample.path)
    assert abs(result.duration_ms - length * 1000) <= slack
    for channel, db in zip(result.channel_names, peaks_db, strict=True):
        ours = result.peak[channel]
        if db == -math.inf or ours < 1e-3:
            assert ours < 1e-3 and (db == -math.inf or db < -60), (channel, db)
        else:
            # Two decoders agree on the loudest sample to a fraction of a dB (clamped at 0).
            assert abs(20 * math.log10(ours) - min(db, 0.0)) <= 0.5, (channel, ours, db)


def test_wav_decoding_agrees_with_sox(results: dict[str, tuple[ss.Sample, Analysed]]) -> None:
    for name in ("silent_wav", "multichannel"):
        sample, found = results[name]
        assert found.result.format == "wav"
        assert found.result.duration_ms == round(float(ss.run("soxi", "-D", str(sample.path)))
                                                 * 1000)
        assert found.result.channels == int(ss.run("soxi", "-c", str(sample.path)))
    assert results["multichannel"][1].result.channel_names == ("ch1", "ch2", "ch3")


def test_peaks_are_ten_a_second_and_follow_the_sound(
        results: dict[str, tuple[ss.Sample, Analysed]]) -> None:
    for name, (_, found) in results.items():
        result, peaks = found.result, found.peaks
        shown = json.loads(json.dumps(peaks.to_json()))
        assert shown["rate"] == 10 and list(shown["channels"]) == list(result.channel_names)
        for channel, values in shown["channels"].items():
            assert abs(len(values) - result.duration_ms / 100) <= 1, name
            assert all(0 <= v <= 1 for v in values)
            assert max(values, default=0) == pytest.approx(result.peak[channel], abs=6e-4)
    values = results["dead_air"][1].peaks.channels["mono"]
    gap = values[60:420]  # 6 s .. 42 s: inside the forty seconds of digital silence
    assert gap.max() < 0.002 and values[:40].max() > 0.1 and values[-40:].max() > 0.1


def test_a_result_comes_back_from_its_json(
        results: dict[str, tuple[ss.Sample, Analysed]]) -> None:
    for _, found in results.values():
        text = json.dumps(found.result.to_json())
        assert AnalysisResult.from_json(json.loads(text)) == found.result
        assert found.result.settings == DEFAULTS.fingerprint()
        peaks = Peaks.from_json(json.loads(json.dumps(found.peaks.to_json())))
        assert peaks.to_json() == found.peaks.to_json()


def test_block_size_changes_nothing(results: dict[str, tuple[ss.Sample, Analysed]]) -> None:
    for name in ("conversation", "dtmf", "dead_air"):
        sample, found = results[name]
        small = analyse(sample.path, block_frames=4099)
        assert isinstance(small, Analysed)
        assert small.result == found.result, name
        assert small.peaks.to_json() == found.peaks.to_json(), name


# -- damaged and foreign bodies ------------------------------------------------------------


def test_a_cut_short_mp3_is_analysed_as_far_as_it_goes() -> None:
    whole = ss.conversation().read()
    cut = ss.workdir() / "cut.mp3"
    cut.write_bytes(whole[: len(whole) // 2])
    found = analyse(cut)
    assert isinstance(found, Analysed)
    length, _ = sox_stats(cut)  # sox decodes what is there
    assert abs(found.result.duration_ms - length * 1000) <= 150
    whole_length, _ = sox_stats(ss.conversation().path)
    assert 0.45 <= found.result.duration_ms / (whole_length * 1000) <= 0.55
    assert found.result.talk_ms["left"] > 3000 and found.result.talk_ms["right"] > 1000
    assert found.result.flags == ()


@pytest.mark.parametrize("make", [ss.conversation, ss.monologue], ids=["stereo", "mono"])
def test_a_corrupt_mp3_fails_with_its_error(make: Callable[[], ss.Sample]) -> None:
    data = make().read()
    bad = audio_samples.corrupted(data, len(data) // 2, 4096)
    with pytest.raises(DecodeError, match=r"^MP3 decoding (failed|stopped) .* s"):
        analyse(io.BytesIO(bad))


def test_an_unfinished_wav_is_read_to_its_end() -> None:
    # A WAV copied before FreeSWITCH closed it: libsndfile's sizes are still 0.
    data = audio_samples.wav(4.0, rate=8000, channels=1)
    for unset in (0, 0xFFFFFFFF):
        found = analyse(io.BytesIO(audio_samples.unfinalised(data, unset)))
        assert isinstance(found, Analysed) and found.result.duration_ms == 4000, unset


def test_what_is_not_analysed_is_skipped_with_its_reason() -> None:
    ogg = ss.workdir() / "speech.ogg"
    ss.run("sox", str(ss.sentence(0, ss.VOICES[0], 16000)), str(ogg))
    wav = bytearray(audio_samples.wav(1.0))
    struct.pack_into("<H", wav, audio_samples.chunk_offset(bytes(wav), b"fmt ") + 8, 0x55)
    mp3 = audio_samples.mp3(1.0)
    tags_only = mp3[: next(i for i in range(len(mp3)) if header_at(mp3, i) is not None)]
    cases = {
        "empty": [b"", audio_samples.header_only_wav()],
        "not_audio": [audio_samples.HTML_PAGE, audio_samples.random_bytes(5000),
                      b"%PDF-1.4\n" + bytes(300)],
        "unsupported_format": [ogg.read_bytes(), bytes(wav)],
    }
    for reason, bodies in cases.items():
        for body in bodies:
            assert analyse(io.BytesIO(body)) == Skipped(reason), body[:16]
    assert tags_only.startswith(b"ID3") and analyse(io.BytesIO(tags_only)) == Skipped("empty")


def test_one_decoding_feeds_more_steps() -> None:
    # A later step (e.g. transcription) rides on the same decoding: here one that keeps
    # each channel at 16 kHz mono, as a transcription engine wants it.
    class Spool:
        def __init__(self) -> None:
            self.frames = 0
            self.kept: list[list[np.ndarray]] = []

        def start(self, stream: StreamInfo) -> None:
            self.resample = Resampler(stream.sample_rate, 16000, stream.channels)
            self.kept = [[] for _ in range(stream.channels)]

        def feed(self, block: np.ndarray) -> None:
            self.frames += len(block)
            for c, column in enumerate(self.resample(block).T):
                self.kept[c].append(column.copy())

        def finish(self) -> list[int]:
            tail = self.resample.flush().T
            return [sum(map(len, parts)) + len(tail[c]) for c, parts in enumerate(self.kept)]

    sample = ss.conversation()
    spool = Spool()
    found = analyse(sample.path, steps=[spool])
    assert isinstance(found, Analysed)
    assert spool.frames * 1000 // 16000 == found.result.duration_ms
    assert spool.finish() == [spool.frames, spool.frames]  # already 16 kHz: same length

    mono = ss.monologue()  # 8 kHz: doubled
    with open_audio(mono.path) as decoder:  # type: ignore[union-attr]
        levels, spool = LevelStep(clip_level=0.999), Spool()
        frames = run_steps(decoder, [levels, spool])  # type: ignore[list-item]
    assert levels.finish().frames == frames
    assert abs(spool.finish()[0] - 2 * frames) <= 2


def test_the_error_text_carries_libsndfile_words_not_object_addresses() -> None:
    data = bytearray(audio_samples.wav(1.0))
    # 16-bit PCM in its layout, but 0 bits a sample: libsndfile cannot open it.
    struct.pack_into("<H", data, audio_samples.chunk_offset(bytes(data), b"fmt ") + 22, 0)
    with pytest.raises(DecodeError) as caught:
        analyse(io.BytesIO(bytes(data)))
    assert str(caught.value) == (
        "WAV could not be opened: File contains data in an unimplemented format.")
