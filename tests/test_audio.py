"""The audio inspector (kzr_wsgi.audio), on LAME's and libsndfile's own output: pure, no sockets.

Durations and rates are cross-checked against independent readers (mutagen for MP3,
soundfile/libsndfile for WAV); every shape is also fed in random splits (hypothesis),
and the result must not depend on where the blocks break.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
from collections.abc import Iterator

import audio_samples as samples
import mutagen.mp3
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kzr_wsgi.audio import FLAGS, AudioInfo, Inspector, claimed_format, inspect_audio
from kzr_wsgi.audio.mp3 import MAX_JUNK, Mp3Parser

# -- helpers ------------------------------------------------------------------------------


def whole(data: bytes, **kw: object) -> AudioInfo | None:
    return inspect_audio([data], **kw)  # type: ignore[arg-type]


def must(data: bytes, **kw: object) -> AudioInfo:
    info = whole(data, **kw)
    assert info is not None
    return info


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, any repeats)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def mutagen_ms(data: bytes) -> float:
    return float(mutagen.mp3.MP3(io.BytesIO(data)).info.length * 1000)


def soundfile_ms(data: bytes) -> int:
    info = soundfile.info(io.BytesIO(data))
    return int(info.frames * 1000 // info.samplerate)


#: LAME's encoder delay and padding plus a frame of rounding, in samples: how much
#: longer counted frames may be than the Info-frame-corrected length mutagen reports.
LAME_SLACK = 3 * 576


# -- the shapes FreeSWITCH writes ---------------------------------------------------------

MP3_SHAPES = {
    "16k-stereo-64k-mpeg2-id3-info": (
        lambda: samples.freeswitch_mp3(10.0), 16000, 2, 64),
    "8k-mono-16k-mpeg2.5-no-info": (
        lambda: samples.freeswitch_mp3(10.0, rate=8000, channels=1), 8000, 1, 16),
    "44k1-stereo-128k-mpeg1-padded": (
        lambda: samples.mp3(6.0, rate=44100, kbps=128), 44100, 2, 128),
    "32k-mono-mpeg1": (lambda: samples.mp3(6.0, rate=32000, channels=1, kbps=48), 32000, 1, 48),
    "22k05-mono-mpeg2": (lambda: samples.mp3(6.0, rate=22050, channels=1, kbps=32), 22050, 1, 32),
    "11k025-mono-mpeg2.5": (
        lambda: samples.mp3(6.0, rate=11025, channels=1, kbps=16), 11025, 1, 16),
    "16k-stereo-vbr-xing": (lambda: samples.mp3(10.0, vbr=True), 16000, 2, None),
    "44k1-stereo-vbr-xing": (lambda: samples.mp3(6.0, rate=44100, vbr=True), 44100, 2, None),
    "id3v1-at-the-end": (lambda: samples.mp3(5.0, id3v1=True), 16000, 2, 64),
    "id3v1-only": (lambda: samples.mp3(5.0, id3=False, id3v1=True), 16000, 2, 64),
}


@pytest.mark.parametrize("shape", list(MP3_SHAPES))
def test_mp3_shapes_against_mutagen(shape: str) -> None:
    make, rate, channels, kbps = MP3_SHAPES[shape]
    data = make()
    info = whole(data, ext="mp3")
    assert info is not None and info.format == "mp3"
    assert (info.sample_rate, info.channels, info.bitrate_kbps) == (rate, channels, kbps)
    assert info.flags == ()
    other = mutagen_ms(data)
    assert info.duration_ms is not None
    # Frames counted are never fewer than mutagen's length (which, from an Info frame,
    # subtracts LAME's delay and padding), and more by LAME's slack at most.
    assert other - 1 <= info.duration_ms <= other + LAME_SLACK * 1000 / rate + 1


@pytest.mark.parametrize("rate,channels", [(16000, 2), (8000, 1), (44100, 2)])
def test_cbr_without_info_frame_matches_mutagen_exactly(rate: int, channels: int) -> None:
    # No Info frame: mutagen derives the length from the size, which for CBR without
    # padding is the exact frame count; 44.1 kHz pads, so mutagen's estimate is close.
    data = samples.mp3(7.0, rate=rate, channels=channels, info=False, id3=False)
    info = whole(data, ext="mp3")
    assert info is not None and info.duration_ms is not None
    tolerance = 1 if rate != 44100 else 30
    assert abs(info.duration_ms - mutagen_ms(data)) <= tolerance


def test_info_frame_is_not_audio() -> None:
    with_info = samples.mp3(5.0)  # 16 kHz: LAME's Info frame fits and is written first
    without = samples.mp3(5.0, info=False)
    assert b"Info" in with_info[:1000] and b"Info" not in without[:1000]
    a, b = whole(with_info, ext="mp3"), whole(without, ext="mp3")
    assert a is not None and b is not None
    assert a.duration_ms == b.duration_ms
    assert len(with_info) - len(without) == 288  # one more frame, and it is not counted


def test_info_frame_at_the_end_is_not_audio() -> None:
    # mod_shout opens files for append: LAME's finished Info frame may land at the end.
    stream = samples.mp3(5.0, info=False)
    tagged = samples.mp3(5.0)
    size = (tagged[6] << 21) | (tagged[7] << 14) | (tagged[8] << 7) | tagged[9]
    tag_end = 10 + size
    info_frame = tagged[tag_end : tag_end + 288]
    assert info_frame[4 + 17 : 4 + 17 + 4] == b"Info"
    a, b = whole(stream + info_frame, ext="mp3"), whole(stream, ext="mp3")
    assert a == b and a is not None and a.flags == ()


def test_8k_mono_has_no_info_frame_and_exact_duration() -> None:
    data = samples.freeswitch_mp3(10.0, rate=8000, channels=1)
    assert b"Info" not in data and b"Xing" not in data
    info = whole(data, ext="mp3")
    assert info is not None
    tag = 10 + ((data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9])
    frames = (len(data) - tag) // 144
    assert (len(data) - tag) % 144 == 0
    assert info.duration_ms == frames * 576 * 1000 // 8000
    # A little longer than what was recorded (LAME's flush), never shorter.
    assert 10000 <= info.duration_ms <= 10400


@pytest.mark.parametrize("rate,channels", [(16000, 2), (8000, 1)])
def test_appended_segments_each_with_its_tag(rate: int, channels: int) -> None:
    parts = [4.0, 3.0, 5.0]
    data = samples.appended_mp3(parts, rate=rate, channels=channels)
    assert data.count(b"ID3") >= 3
    info = whole(data, ext="mp3")
    one_by_one = [whole(samples.freeswitch_mp3(p, rate=rate, channels=channels), ext="mp3")
                  for p in parts]
    assert info is not None and info.flags == ()
    # Each segment's frames at 1000/rate ms apiece: the sum of the parts, to rounding.
    total = sum(i.duration_ms for i in one_by_one if i and i.duration_ms)
    assert total <= info.duration_ms <= total + len(parts)  # type: ignore[operator]
    assert info.bitrate_kbps == (64 if rate == 16000 else 16)


def test_no_false_sync_in_junk_or_tag_data() -> None:
    clean = samples.mp3(4.0, info=False, id3=False)
    # Fake headers (valid on their own, disagreeing with each other) in junk before the
    # stream, and inside an ID3 tag's data: none may count as frames.
    fake = b"\xff\xf3\x88\x04" + b"\x00" * 50 + b"\xff\xfb\x90\x64" + b"junk" * 40
    tag_body = fake * 3
    size = len(tag_body)
    syncsafe = bytes((size >> 21 & 0x7F, size >> 14 & 0x7F, size >> 7 & 0x7F, size & 0x7F))
    tag = b"ID3\x03\x00\x00" + syncsafe + tag_body
    base = whole(clean, ext="mp3")
    assert whole(fake + clean, ext="mp3") == base
    assert whole(tag + clean, ext="mp3") == base
    assert whole(tag + tag + clean, ext="mp3") == base  # stacked tags


@pytest.mark.parametrize("junk,found", [
    (MAX_JUNK - 3000, True),
    (MAX_JUNK + 3000, False),
    # Given up on at the start of a 64 KiB block: the rest of that block (where, 16 KiB
    # in, a frame starts) is not searched either.
    (MAX_JUNK + 16384 - 288 * 46, False),
])
def test_junk_before_the_first_frame_is_searched_up_to_a_limit(junk: int, found: bool) -> None:
    clean = samples.mp3(3.0, info=False, id3=False)
    data = samples.random_bytes(junk).replace(b"\xff", b"\x00") + clean
    expected = whole(clean, ext="mp3") if found else AudioInfo(None, flags=("not_audio",))
    assert whole(data, ext="mp3") == expected
    for size in (1000, 4096, 65536):
        blocks = [data[i : i + size] for i in range(0, len(data), size)]
        assert inspect_audio(blocks, ext="mp3") == expected


def test_junk_between_frames_is_searched_past() -> None:
    # Once locked, a damaged stretch of any length is searched through for frames again.
    a, b = samples.mp3(3.0, info=False, id3=False), samples.freeswitch_mp3(2.0)
    junk = samples.random_bytes(1 << 20)
    info = must(a + junk + b, ext="mp3")
    first, second = must(a, ext="mp3"), must(b, ext="mp3")
    assert first.duration_ms and second.duration_ms
    assert info.duration_ms == first.duration_ms + second.duration_ms


def test_vbr_bitrate_is_null() -> None:
    info = whole(samples.mp3(10.0, vbr=True), ext="mp3")
    assert info is not None and info.bitrate_kbps is None and info.format == "mp3"


# -- WAV ----------------------------------------------------------------------------------

WAV_SHAPES = [(8000, 1), (16000, 1), (8000, 2), (16000, 2)]


@pytest.mark.parametrize("rate,channels", WAV_SHAPES, ids=lambda v: str(v))
def test_wav_shapes_against_soundfile(rate: int, channels: int) -> None:
    data = samples.wav(7.5, rate=rate, channels=channels)
    assert b"LIST" in data[: samples.chunk_offset(data, b"data")]  # not at byte 44
    info = whole(data, ext="wav")
    kbps = rate * channels * 16 // 1000
    assert info == AudioInfo("wav", soundfile_ms(data), rate, channels, kbps)
    assert info.duration_ms == 7500


def test_wav_without_list_chunk_and_other_subtypes() -> None:
    plain = samples.wav(2.0, list_chunk=False)
    assert samples.chunk_offset(plain, b"data") == 36
    assert whole(plain, ext="wav") == AudioInfo("wav", 2000, 8000, 1, 128)
    for subtype, bits in (("PCM_24", 24), ("ULAW", 8), ("ALAW", 8)):
        info = whole(samples.wav(2.0, kind="silence", subtype=subtype), ext="wav")
        # Silence is only judged on 16-bit PCM.
        assert info == AudioInfo("wav", 2000, 8000, 1, 8 * bits), subtype


def test_silent_wav() -> None:
    assert must(samples.wav(3.0, kind="silence"), ext="wav").flags == ("silent",)
    assert must(samples.wav(3.0, kind="quiet"), ext="wav").flags == ("silent",)
    assert must(samples.wav(3.0, kind="tone"), ext="wav").flags == ()


@pytest.mark.parametrize("sample,silent", [(64, True), (-64, True), (65, False), (-65, False),
                                           (0, True), (-1, True), (32767, False),
                                           (-32768, False), (256, False), (-256, False)])
def test_silence_threshold_is_64(sample: int, silent: bool) -> None:
    data = bytearray(samples.wav(1.0, kind="silence"))
    at = samples.chunk_offset(bytes(data), b"data") + 8 + 2 * 4000
    struct.pack_into("<h", data, at, sample)
    info = whole(bytes(data), ext="wav")
    assert info is not None and ("silent" in info.flags) is silent


def test_header_only_wav_is_empty() -> None:
    info = whole(samples.header_only_wav(), ext="wav")
    assert info == AudioInfo("wav", 0, 8000, 1, 128, ("empty",))


@pytest.mark.parametrize("value", [0, 0xFFFFFFFF])
@pytest.mark.parametrize("which", ["both", "riff", "data"])
def test_unfinalised_wav_sizes(value: int, which: str) -> None:
    data = samples.unfinalised(samples.wav(3.0), value, riff=which != "data",
                               data_size=which != "riff")
    info = whole(data, ext="wav")
    assert info == AudioInfo("wav", 3000, 8000, 1, 128, ("header_not_final",))


def test_unfinalised_header_with_no_samples_is_just_empty() -> None:
    info = whole(samples.unfinalised(samples.header_only_wav()), ext="wav")
    assert info is not None and info.flags == ("empty",)


def test_cut_wav_is_truncated_and_timed_by_what_arrived() -> None:
    full = samples.wav(3.0)
    start = samples.chunk_offset(full, b"data") + 8
    data = samples.cut(full, start + 16001)  # half a sample at the end, too
    info = whole(data, ext="wav")
    assert info == AudioInfo("wav", 1000, 8000, 1, 128, ("truncated",))


def test_bytes_after_data_are_not_audio() -> None:
    full = samples.wav(2.0)
    trailer = b"LIST\x10\x00\x00\x00INFOISFT\x04\x00\x00\x00abcd"
    assert whole(full + trailer, ext="wav") == whole(full, ext="wav")


# -- damaged, empty and wrong uploads -------------------------------------------------------


def test_cut_mp3_is_truncated() -> None:
    full = samples.freeswitch_mp3(3.0)
    whole_info = whole(full, ext="mp3")
    info = whole(samples.cut(full, -100), ext="mp3")
    assert info is not None and whole_info is not None
    assert info.flags == ("truncated",)
    assert info.duration_ms == whole_info.duration_ms - 36  # type: ignore[operator]  # one frame
    # Cut short before an ID3v1 tag: still truncated, the tag is not a frame.
    cut_v1 = _cut_before_tag(samples.mp3(3.0, id3v1=True), 100)
    assert must(cut_v1, ext="mp3").flags == ("truncated",)


def test_cut_in_the_middle_of_a_header_is_truncated() -> None:
    full = samples.mp3(3.0, info=False, id3=False)
    info = whole(full[: 288 * 40 + 2], ext="mp3")
    assert info is not None and info.flags == ("truncated",)
    assert info.duration_ms == 40 * 36


def test_empty_uploads() -> None:
    assert whole(b"", ext="mp3") == AudioInfo(None, flags=("empty",))
    assert whole(b"", ext="wav") == AudioInfo(None, flags=("empty",))
    assert inspect_audio([], content_type="audio/mpeg") == AudioInfo(None, flags=("empty",))
    tag_only = samples.freeswitch_mp3(1.0)[:10 + 128 + 60]
    size = 10 + ((tag_only[6] << 21) | (tag_only[7] << 14) | (tag_only[8] << 7) | tag_only[9])
    info = whole(samples.freeswitch_mp3(1.0)[:size], ext="mp3")
    assert info is not None and info.format == "mp3" and info.flags == ("empty",)
    assert info.duration_ms == 0


def test_lame_given_no_samples_writes_its_flush_frames() -> None:
    # What a recording closed at once looks like: LAME still flushes a few frames of
    # silence, so it is audio (72 ms), not "empty"; Kazoo's duration_ms=0 agrees.
    info = whole(samples.mp3(0.0), ext="mp3", reported_ms=0)
    assert info is not None and info.format == "mp3" and info.flags == ()
    assert info.duration_ms is not None and info.duration_ms < 200


@pytest.mark.parametrize("ext,content_type", [("mp3", None), ("wav", None), ("", "audio/mpeg"),
                                              ("bin", "audio/x-wav")])
def test_html_and_random_bytes_are_not_audio(ext: str, content_type: str | None) -> None:
    for data in (samples.HTML_PAGE, samples.random_bytes(300_000)):
        info = whole(data, ext=ext, content_type=content_type, reported_ms=30000)
        assert info == AudioInfo(None, flags=("not_audio",))


def test_corrupted_mp3_loses_only_the_damaged_frames() -> None:
    full = samples.freeswitch_mp3(10.0)
    good = whole(full, ext="mp3")
    info = whole(samples.corrupted(full, 40_000, 2_000), ext="mp3")
    assert good is not None and info is not None and good.duration_ms and info.duration_ms
    assert info.format == "mp3" and info.bitrate_kbps == 64
    lost = good.duration_ms - info.duration_ms
    assert 2_000 // 288 * 36 <= lost <= (2_000 // 288 + 2 * 4) * 36  # relock needs 4 frames


def test_corrupted_wav_header_is_not_audio() -> None:
    data = samples.wav(3.0)
    assert whole(samples.corrupted(data, 0, 40), ext="wav") == AudioInfo(None, flags=("not_audio",))
    # A chunk header turned to noise before data: the samples cannot be found.
    at = samples.chunk_offset(data, b"LIST")
    info = whole(samples.corrupted(data, at, 8), ext="wav")
    assert info == AudioInfo(None, flags=("not_audio",))


def test_not_claimed_and_not_audio_is_not_inspected() -> None:
    assert whole(b"\x00\x00\x00\x18ftypmp42" + bytes(5000), ext="mp4") is None
    assert whole(b"II*\x00" + bytes(3000), ext="tif", content_type="image/tiff") is None
    assert whole(b"kzr-wsgi check\n", ext="txt", content_type="text/plain") is None
    assert whole(b"", ext="mp4") is None
    assert whole(samples.HTML_PAGE, ext="html") is None
    # Looks like a frame header at byte 0, but is not audio: not ours to flag.
    assert whole(b"\xff\xf3\x88\x04" + bytes(3000), ext="bin") is None


def test_first_bytes_decide_whatever_the_name() -> None:
    mp3 = samples.freeswitch_mp3(2.0)
    wav = samples.wav(2.0)
    assert must(mp3, ext="", content_type="application/octet-stream").format == "mp3"
    assert must(wav, ext="dat").format == "wav"
    # Misnamed: a WAV sent as .mp3 is inspected as what it is.
    assert whole(wav, ext="mp3") == whole(wav, ext="wav")
    assert whole(mp3, ext="wav") == whole(mp3, ext="mp3")


def test_claims() -> None:
    assert claimed_format("MP3", None) == "mp3"
    assert claimed_format(None, "Audio/X-WAV; codec=1") == "wav"
    assert claimed_format("mp4", "video/mp4") is None
    assert claimed_format("mp4", "audio/mpeg") == "mp3"


@pytest.mark.parametrize("reported,flagged", [(30000, True), (10501, False), (10700, True),
                                              (None, False), (0, False)])
def test_shorter_than_reported(reported: int | None, flagged: bool) -> None:
    info = whole(samples.freeswitch_mp3(10.0), ext="mp3", reported_ms=reported)
    assert info is not None and info.duration_ms == 10080
    assert ("shorter_than_reported" in info.flags) is flagged
    wav = whole(samples.wav(10.0), ext="wav", reported_ms=reported)
    assert wav is not None and wav.duration_ms == 10000
    assert ("shorter_than_reported" in wav.flags) is (reported is not None and reported > 10500)


def test_flags_come_in_the_vocabulary_order() -> None:
    data = samples.cut(samples.unfinalised(samples.wav(3.0, kind="silence")), 20_000)
    info = whole(data, ext="wav", reported_ms=30_000)
    assert info is not None
    assert info.flags == ("header_not_final", "shorter_than_reported", "silent")
    assert list(info.flags) == [f for f in FLAGS if f in info.flags]
    assert AudioInfo.from_json(info.to_json()) == info


# -- block boundaries -----------------------------------------------------------------------

def _cut_before_tag(data: bytes, drop: int) -> bytes:
    """The last frame cut short by ``drop`` bytes, the trailing ID3v1 tag kept."""
    return data[: -128 - drop] + data[-128:]


SPLIT_CASES = {
    "fs16": lambda: samples.freeswitch_mp3(3.0),
    "fs8": lambda: samples.freeswitch_mp3(3.0, rate=8000, channels=1),
    "appended": lambda: samples.appended_mp3([1.0, 0.5, 1.0]),
    "vbr": lambda: samples.mp3(3.0, vbr=True),
    "mpeg1-padded": lambda: samples.mp3(2.0, rate=44100, kbps=128),
    "id3v1": lambda: samples.mp3(2.0, id3v1=True),
    "mp3-cut": lambda: samples.cut(samples.mp3(2.0, id3v1=True)[:-128], -50),
    "mp3-cut-before-id3v1": lambda: _cut_before_tag(samples.mp3(2.0, id3v1=True), 100),
    "mp3-corrupt": lambda: samples.corrupted(samples.freeswitch_mp3(3.0), 9000, 700),
    "wav": lambda: samples.wav(1.0, rate=16000, channels=2),
    "wav-silent-cut": lambda: samples.cut(samples.wav(1.0, kind="quiet"), 9001),
    "wav-not-final": lambda: samples.unfinalised(samples.wav(1.0), 0xFFFFFFFF),
    "html": lambda: samples.HTML_PAGE,
    "random": lambda: samples.random_bytes(40_000),
    "junk-at-the-limit": lambda: samples.random_bytes(MAX_JUNK - 100) + samples.mp3(1.0),
}


@pytest.mark.parametrize("case", list(SPLIT_CASES))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=40))
def test_result_does_not_depend_on_the_split(case: str, cuts: list[int]) -> None:
    data = SPLIT_CASES[case]()
    ext = "wav" if case.startswith("wav") else "mp3"
    expected = whole(data, ext=ext, reported_ms=5000)
    assert inspect_audio(split(data, cuts), ext=ext, reported_ms=5000) == expected


@pytest.mark.parametrize("case", ["fs16", "fs8", "appended", "wav-not-final", "mp3-cut",
                                  "mp3-cut-before-id3v1"])
def test_byte_by_byte_and_small_blocks(case: str) -> None:
    data = SPLIT_CASES[case]()
    ext = "wav" if case.startswith("wav") else "mp3"
    expected = whole(data, ext=ext)
    for size in (1, 3, 7, 143, 289, 4097):
        blocks = [data[i : i + size] for i in range(0, len(data), size)]
        assert inspect_audio(blocks, ext=ext) == expected, size


# -- six hours, constant memory -----------------------------------------------------------


def _six_hours() -> tuple[bytes, int]:
    """A block of whole 16 kHz stereo 64 kbit/s frames, and how often to repeat it for 6 h."""
    stream = samples.mp3(10.0, info=False, id3=False)
    frames = len(stream) // 288
    block = stream[: frames * 288]
    # Each repeat is `frames` frames; 600,000 frames is 6 hours at 576 samples / 16 kHz.
    return block, 600_000 // frames + 1


def test_six_hours_counted_exactly_in_constant_memory() -> None:
    block, repeats = _six_hours()
    tag = samples.freeswitch_mp3(1.0)[:10]  # an ID3v2 header; its body follows
    size = (tag[6] << 21) | (tag[7] << 14) | (tag[8] << 7) | tag[9]
    head = samples.freeswitch_mp3(1.0)[: 10 + size]

    def blocks() -> Iterator[bytes]:
        yield head
        for _ in range(repeats):
            yield block

    tracemalloc.start()
    try:
        inspector = Inspector(ext="mp3", reported_ms=6 * 3600 * 1000)
        for b in blocks():
            inspector.feed(b)
        info = inspector.result()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    frames = repeats * (len(block) // 288)
    assert info == AudioInfo("mp3", frames * 576 * 1000 // 16000, 16000, 2, 64)
    assert frames >= 600_000
    assert peak < 4 * len(block) + (1 << 20), peak  # a few blocks' slices, not the stream


def test_pending_bytes_stay_small() -> None:
    parser = Mp3Parser()
    data = samples.appended_mp3([2.0, 2.0])
    for i in range(0, len(data), 1000):
        parser.feed(data[i : i + 1000])
        assert len(parser._pending) < 8 * 1441  # a lock check's frames at most
    assert parser.finish().frames > 0
