"""Decoding a stored recording into blocks of samples: the I/O edge of the analysis.

:func:`open_audio` looks at the first bytes (the same sniffing the upload's inspection
does, :func:`kzr_wsgi.audio.sniff_format`) and gives either a :class:`Decoder` or a
:class:`Skipped` with its reason. A :class:`Decoder` reads through libsndfile
(:mod:`soundfile`: MP3 through mpg123, WAV) into one reused float32 buffer, so memory
stays the same whatever the length::

    with open_audio("call.mp3") as decoder:       # doctest: +SKIP
        for block in decoder.blocks():            # (frames, channels) float32, -1..1
            ...

Decoded MP3 can overshoot full scale: every block is clamped to -1..1 before anyone
sees it. A cut-short MP3 or WAV ends where its bytes end. A file libsndfile cannot
decode raises :class:`DecodeError` with libsndfile's message (mpg123 writes its own
detail to the process's stderr, fd 2; a worker that wants it in its log points fd 2
there).
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import soundfile

from ..audio import REPORTED_SLACK_MS, SNIFF_BYTES, inspect_audio, sniff_format
from ..audio.wav import UNSET_SIZES, WavParser
from ..errors import KzrError

#: A block of decoded samples: float32, shape ``(frames, channels)``, clamped to -1..1.
Block = npt.NDArray[np.float32]

#: Why a recording is not analysed. ``self_test`` is the caller's to decide (by call id).
REASONS = ("empty", "not_audio", "unsupported_format", "self_test")

#: Frames per block: 4 s at 16 kHz (256 KiB for stereo), few enough Python steps per
#: hour of audio, small enough to stay in the CPU's cache.
BLOCK_FRAMES = 1 << 16

#: First bytes of audio containers that are not MP3 or WAV (``unsupported_format``).
_OTHER_AUDIO = (b"OggS", b"fLaC", b"RF64", b"BW64", b"caff", b"wvpk", b"#!AMR", b".snd",
                b"MAC ", b"\x30\x26\xb2\x75\x8e\x66\xcf\x11")
#: How far into a WAV its ``data`` chunk is looked for (libsndfile puts LIST/INFO first).
_WAV_HEAD = 64 << 10


class DecodeError(KzrError):
    """libsndfile could not open or decode the audio; the message says what it reported."""


@dataclass(frozen=True)
class Skipped:
    """A recording that is not analysed, and why (one of :data:`REASONS`)."""

    reason: str

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown reason {self.reason!r}")


@dataclass(frozen=True)
class StreamInfo:
    """What is being decoded: ``"mp3"`` or ``"wav"``, its rate and its channel count."""

    format: str
    sample_rate: int
    channels: int


def other_audio(head: bytes) -> bool:
    """True when the first bytes are an audio container other than MP3 and WAV.

    >>> other_audio(b"OggS\\x00\\x02"), other_audio(b"\\x00\\x00\\x00\\x20ftypM4A ")
    (True, True)
    >>> other_audio(b"<html>")
    False
    """
    if head.startswith(_OTHER_AUDIO) or head[4:8] == b"ftyp":
        return True
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return True
    # ADTS AAC: a 12-bit sync and layer bits 00 (MP3's Layer III has 01).
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0


class Decoder:
    """An open recording, decoded block by block. Use it as a context manager.

    Made by :func:`open_audio`. :attr:`frames` counts the frames decoded so far.
    """

    def __init__(self, raw: BinaryIO, info: StreamInfo, sound: soundfile.SoundFile,
                 *, block_frames: int = BLOCK_FRAMES, owned: bool = False) -> None:
        self.info = info
        #: Frames decoded so far (all of them, once :meth:`blocks` is exhausted).
        self.frames = 0
        self._raw = raw
        self._sound = sound
        self._owned = owned
        self._buffer = np.empty((block_frames, info.channels), dtype=np.float32)

    def blocks(self) -> Iterator[Block]:
        """Every block in order. Each is a view of one reused buffer, valid until the next.

        Reads until libsndfile gives no more frames: a cut-short file ends where its
        bytes do (the frame count in its header is not trusted). Raises
        :class:`DecodeError` where the audio cannot be decoded, or an MP3's decoding
        ended well before its frames did.
        """
        buffer, sound = self._buffer, self._sound
        while True:
            try:
                got = sound.buffer_read_into(buffer, dtype="float32")
            except (soundfile.SoundFileError, RuntimeError) as exc:
                rate = self.info.sample_rate
                raise DecodeError(
                    f"{self.info.format.upper()} decoding failed between "
                    f"{self.frames / rate:.1f} s and {(self.frames + len(buffer)) / rate:.1f} s: "
                    f"{_message(exc)}") from exc
            if got <= 0:
                break
            self.frames += got
            block = buffer[:got]
            np.clip(block, -1.0, 1.0, out=block)
            yield block
        if self.info.format == "mp3":
            self._check_complete()

    def _check_complete(self) -> None:
        """Raise :class:`DecodeError` when mpg123 gave up before the frames ran out.

        Where it cannot resync past damage (or stops at the length a summary frame of
        the first of several appended segments states), mpg123 ends the stream as if
        the file had ended, and says so only on stderr. Then it has not read the file to
        its end, and the upload's inspection, counting the frames that are there, finds
        more audio than was decoded. (A file cut short is read to its end: no error.)
        """
        raw = self._raw
        stopped_at = raw.tell()
        if stopped_at >= raw.seek(0, io.SEEK_END):
            return
        raw.seek(0)
        found = inspect_audio(iter(lambda: raw.read(1 << 20), b""), ext="mp3")
        decoded_ms = self.frames * 1000 // self.info.sample_rate
        if found is not None and found.duration_ms is not None and (
                decoded_ms < found.duration_ms - REPORTED_SLACK_MS):
            raise DecodeError(
                f"MP3 decoding stopped at {decoded_ms / 1000:.1f} s of the "
                f"{found.duration_ms / 1000:.1f} s its frames hold (damaged data, or "
                f"segments the decoder does not continue into)")

    def close(self) -> None:
        """Close libsndfile's handle, and the file when :func:`open_audio` opened it."""
        self._sound.close()
        if self._owned:
            self._raw.close()

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def open_audio(source: str | os.PathLike[str] | BinaryIO, *,
               block_frames: int = BLOCK_FRAMES) -> Decoder | Skipped:
    """A :class:`Decoder` for an MP3 or WAV, else :class:`Skipped` with its reason.

    ``source`` is a path or a seekable binary file (read from its start, and left open:
    the caller's). The bytes
    decide, never a name: an empty file is ``empty``, another audio container
    ``unsupported_format``, anything else ``not_audio``. A file that looks like MP3 or
    WAV but that libsndfile cannot open is looked at once more by the upload's
    inspection: an MP3 of tags only is ``empty``, a WAV in a codec libsndfile lacks
    ``unsupported_format``; otherwise :class:`DecodeError`.
    """
    owned = isinstance(source, (str, os.PathLike))
    raw: BinaryIO = open(source, "rb") if isinstance(source, (str, os.PathLike)) else source  # noqa: SIM115
    try:
        decoder = _open(raw, block_frames, owned)
    except BaseException:
        if owned:
            raw.close()
        raise
    if isinstance(decoder, Skipped) and owned:
        raw.close()
    return decoder


def _open(raw: BinaryIO, block_frames: int, owned: bool) -> Decoder | Skipped:
    start = raw.seek(0)  # libsndfile sees the whole file, whoever read from it before
    head = raw.read(SNIFF_BYTES)
    raw.seek(start)
    if not head:
        return Skipped("empty")
    fmt = sniff_format(head)
    if fmt is None:
        return Skipped("unsupported_format" if other_audio(head) else "not_audio")
    view: BinaryIO | _Patched = raw
    if fmt == "wav" and (offset := _unset_data_size(raw)) is not None:
        view = _Patched(raw, offset, b"\xff\xff\xff\xff")
    try:
        sound = soundfile.SoundFile(view)
    except (soundfile.SoundFileError, RuntimeError, TypeError) as exc:
        raw.seek(start)
        reason = _why_not(raw, fmt, start)
        if reason is not None:
            return Skipped(reason)
        raise DecodeError(f"{fmt.upper()} could not be opened: {_message(exc)}") from exc
    info = StreamInfo(fmt, sound.samplerate, sound.channels)
    return Decoder(raw, info, sound, block_frames=block_frames, owned=owned)


def _why_not(raw: BinaryIO, fmt: str, start: int) -> str | None:
    """The skip reason for an MP3 or WAV libsndfile refused, or None: a decode failure."""
    if fmt == "wav":
        parser = WavParser()
        parser.feed(raw.read(_WAV_HEAD))
        found = parser.finish()
        if found.has_format and not found.corrupt and found.format_tag not in _DECODABLE:
            return "unsupported_format"
        raw.seek(start)
    info = inspect_audio(iter(lambda: raw.read(1 << 20), b""), ext=fmt)
    if info is None or info.format is None:
        return "not_audio"
    return "empty" if "empty" in info.flags else None


#: WAV format tags libsndfile decodes: PCM, MS ADPCM, IEEE float, A-law, mu-law, IMA
#: ADPCM, GSM 6.10, G.721, G.723.
_DECODABLE = {1, 2, 3, 6, 7, 0x11, 0x31, 0x40, 0x14}


def _unset_data_size(raw: BinaryIO) -> int | None:
    """Where a WAV's ``data`` size field is, when it says 0 (a writer never filled it in).

    libsndfile reads such a ``data`` chunk as holding nothing; presented as 0xFFFFFFFF
    ("to the end", which libsndfile honours) the samples that are there are read.
    """
    start = raw.tell()
    head = raw.read(_WAV_HEAD)
    raw.seek(start)
    pos = 12
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if chunk == b"data":
            return start + pos + 4 if size == UNSET_SIZES[0] else None
        if size in UNSET_SIZES:
            return None
        pos += 8 + size + (size & 1)
    return None


class _Patched(io.RawIOBase):
    """A read-only view of a seekable file with a few bytes at one offset replaced."""

    def __init__(self, raw: BinaryIO, offset: int, data: bytes) -> None:
        super().__init__()
        self._raw, self._offset, self._data = raw, offset, data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        pos = self._raw.tell()
        got = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        lo, hi = max(pos, self._offset), min(pos + got, self._offset + len(self._data))
        if lo < hi:
            buffer[lo - pos : hi - pos] = self._data[lo - self._offset : hi - self._offset]
        return int(got)


def _message(exc: BaseException) -> str:
    """libsndfile's own words, without soundfile's ``Error opening <object at 0x…>`` prefix."""
    text = getattr(exc, "error_string", None) or str(exc)
    return str(text).strip() or type(exc).__name__
