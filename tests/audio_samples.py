"""Real audio for the tests: PCM made here, MP3 by Debian's LAME, WAV by libsndfile.

Every helper returns the file's bytes; the encoders run on temporary files (LAME can
only fill in its Info frame on a seekable output), and results are cached, so asking
twice for one shape costs nothing. The shapes are those FreeSWITCH writes
(kazoo-contract §8)::

    freeswitch_mp3(10.0)                         # 16 kHz stereo 64 kbit/s MPEG-2, ID3v2, Info
    freeswitch_mp3(10.0, rate=8000, channels=1)  # 8 kHz mono 16 kbit/s MPEG-2.5, no Info
    appended_mp3([4.0, 3.0, 5.0])                # RECORD_APPEND: segments, each with its tag
    mp3(10.0, vbr=True)                          # VBR, with a Xing frame
    wav(10.0, rate=8000, channels=1)             # libsndfile, LIST/INFO before data
    wav(5.0, kind="silence")

and the damaged variants: :func:`cut`, :func:`unfinalised`, :func:`corrupted`.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import soundfile

#: The kinds of signal :func:`pcm` makes.
KINDS = ("tone", "silence", "quiet", "noise")


def pcm(seconds: float, rate: int, channels: int, *, kind: str = "tone") -> bytes:
    """16-bit little-endian interleaved PCM.

    ``tone``: a 440 Hz sine (a different one per channel) at about -12 dBFS;
    ``silence``: all zero; ``quiet``: within +-40 (what a muted line looks like);
    ``noise``: uniform noise at full scale.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    frames = round(seconds * rate)
    t = np.arange(frames, dtype=np.float64) / rate
    columns = []
    rng = np.random.default_rng(frames)
    for c in range(channels):
        if kind == "tone":
            column = 8000 * np.sin(2 * np.pi * (440 + 110 * c) * t)
        elif kind == "silence":
            column = np.zeros(frames)
        elif kind == "quiet":
            column = rng.integers(-40, 41, frames).astype(np.float64)
        else:
            column = rng.integers(-32768, 32768, frames).astype(np.float64)
        columns.append(column)
    samples = np.stack(columns, axis=1).round().astype("<i2")
    return samples.tobytes()


def freeswitch_kbps(rate: int, channels: int) -> int:
    """mod_shout's default bitrate: ``16 * (rate / 8000) * channels`` kbit/s."""
    return 16 * rate // 8000 * channels


@functools.lru_cache(maxsize=64)
def mp3(
    seconds: float,
    *,
    rate: int = 16000,
    channels: int = 2,
    kbps: int | None = None,
    id3: bool = True,
    info: bool = True,
    vbr: bool = False,
    id3v1: bool = False,
    kind: str = "tone",
) -> bytes:
    """``seconds`` of ``kind`` encoded by LAME.

    CBR at ``kbps`` (default: FreeSWITCH's rule) or ``vbr`` (``-V 5``); ``id3``: an
    ID3v2 tag with 128 bytes of padding first, as mod_shout writes; ``info``: let LAME
    write its Info/Xing frame where it fits (``-t`` when False); ``id3v1``: a trailing
    ``TAG`` as well.
    """
    return lame_mp3(pcm(seconds, rate, channels, kind=kind), rate=rate, channels=channels,
                    kbps=kbps, id3=id3, info=info, vbr=vbr, id3v1=id3v1)


def lame_mp3(
    raw: bytes,
    *,
    rate: int,
    channels: int,
    kbps: int | None = None,
    id3: bool = True,
    info: bool = True,
    vbr: bool = False,
    id3v1: bool = False,
) -> bytes:
    """16-bit little-endian interleaved PCM encoded by LAME (the options of :func:`mp3`).

    LAME is given a WAV, not raw samples: Debian's LAME reads its input through
    libsndfile, which may take raw PCM for some headered format it happens to resemble
    (dithered speech did: a 20 s recording came out as 0.6 s).
    """
    argv = ["lame", "--quiet", "-m", "m" if channels == 1 else "s", "--resample", _khz(rate)]
    if vbr:
        argv += ["-V", "5"]
    else:
        argv += ["--cbr", "-b", str(kbps or freeswitch_kbps(rate, channels))]
    if not info:
        argv.append("-t")
    if id3 and id3v1:
        argv += ["--add-id3v2", "--pad-id3v2", "--tc", "FreeSWITCH"]
    elif id3:
        argv += ["--id3v2-only", "--pad-id3v2", "--tc", "FreeSWITCH"]
    elif id3v1:
        argv += ["--id3v1-only", "--tt", "kzr"]
    return _run_encoder(argv, raw, rate, channels)


def freeswitch_mp3(
    seconds: float, *, rate: int = 16000, channels: int = 2, kind: str = "tone"
) -> bytes:
    """What mod_shout writes for one recording: CBR, ID3v2 first, Info where it fits."""
    return mp3(seconds, rate=rate, channels=channels, kind=kind)


def appended_mp3(
    segments: list[float] | tuple[float, ...], *, rate: int = 16000, channels: int = 2
) -> bytes:
    """Several recordings appended to one file (``RECORD_APPEND``), each with its own tag."""
    return b"".join(freeswitch_mp3(s, rate=rate, channels=channels) for s in segments)


@functools.lru_cache(maxsize=64)
def wav(
    seconds: float,
    *,
    rate: int = 8000,
    channels: int = 1,
    kind: str = "tone",
    subtype: str = "PCM_16",
    list_chunk: bool = True,
) -> bytes:
    """A WAV written by libsndfile (what mod_sndfile uses), ``LIST/INFO`` before ``data``."""
    samples = np.frombuffer(pcm(seconds, rate, channels, kind=kind), dtype="<i2")
    out = io.BytesIO()
    with soundfile.SoundFile(out, "w", samplerate=rate, channels=channels, subtype=subtype,
                             format="WAV") as f:
        if list_chunk:
            # Strings set before the first sample go in a LIST chunk ahead of data.
            f.title = "kzr"
            f.software = "FreeSWITCH"
        f.write(samples.reshape(-1, channels))
    return out.getvalue()


def chunk_offset(data: bytes, chunk_id: bytes) -> int:
    """Where the chunk ``chunk_id`` of a RIFF file starts (its 8-byte header)."""
    pos = 12
    while pos + 8 <= len(data):
        size = struct.unpack_from("<I", data, pos + 4)[0]
        if data[pos : pos + 4] == chunk_id:
            return pos
        pos += 8 + size + (size & 1)
    raise ValueError(f"no {chunk_id!r} chunk")


def unfinalised(data: bytes, value: int = 0, *, riff: bool = True, data_size: bool = True) -> bytes:
    """A WAV whose RIFF and/or data sizes were never filled in (0 or 0xFFFFFFFF)."""
    out = bytearray(data)
    if riff:
        struct.pack_into("<I", out, 4, value)
    if data_size:
        struct.pack_into("<I", out, chunk_offset(data, b"data") + 4, value)
    return bytes(out)


def header_only_wav(*, rate: int = 8000, channels: int = 1) -> bytes:
    """What libsndfile leaves when a recording is closed with no samples."""
    return wav(0.0, rate=rate, channels=channels)


def cut(data: bytes, keep: int) -> bytes:
    """The first ``keep`` bytes (a negative ``keep`` drops that many from the end)."""
    return data[:keep]


def corrupted(data: bytes, at: int, length: int, *, seed: int = 1) -> bytes:
    """``length`` bytes from ``at`` overwritten with noise (bit rot, a bad copy)."""
    noise = np.random.default_rng(seed).integers(0, 256, length, dtype=np.uint8).tobytes()
    return data[:at] + noise + data[at + length :]


#: An error page a proxy might answer with, saved under the recording's name.
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><h1>Bad Gateway</h1><p>The upstream server did not answer.</p>"
    + b"<!-- padding -->" * 200
    + b"</body></html>\n"
)


def random_bytes(size: int, *, seed: int = 7) -> bytes:
    """Reproducible noise bytes."""
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def _khz(rate: int) -> str:
    return f"{rate / 1000:g}"


def _run_encoder(argv: list[str], raw: bytes, rate: int, channels: int) -> bytes:
    with tempfile.TemporaryDirectory(prefix="kzr-lame-") as tmp:
        src, dst = Path(tmp, "in.wav"), Path(tmp, "out.mp3")
        with wave.open(str(src), "wb") as out:
            out.setnchannels(channels)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(raw)
        subprocess.run([*argv, str(src), str(dst)], check=True, timeout=120,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       env={**os.environ, "LC_ALL": "C"})
        return dst.read_bytes()
