"""RIFF/WAVE chunks and samples, as the bytes stream past (pure: no I/O).

A :class:`WavParser` reads the ``RIFF``/``WAVE`` header and the chunks before ``data``
(FreeSWITCH's libsndfile writes ``LIST`` there: nothing assumes byte 44), then only
counts the bytes of ``data`` that actually arrive. The header's sizes are compared
with what arrived: a ``data`` size larger than what came is ``truncated``; a RIFF or
``data`` size of 0 or 0xFFFFFFFF (a writer that never went back to fill them in) is
``header_not_final``, and then the samples run to the end of the stream.

For 16-bit PCM it also notes whether every sample lies within +-:data:`SILENCE`
(``silent``), at C speed: a sample is within +-64 exactly when its high byte is 0x00
and its low byte at most 0x40, or its high byte is 0xFF and its low byte at least 0xC0.
``bytes.translate`` maps the high and the low bytes (strided slices) each to a class
that agrees only in those cases, and one comparison checks a whole block. Once a loud
sample is seen the check stops.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ._blocks import skip_ahead

#: A 16-bit sample within +- this is silence.
SILENCE = 64
#: Sizes that mean "not filled in": libsndfile's at open, streaming writers' "to the end".
UNSET_SIZES = (0, 0xFFFFFFFF)

# High byte: 0x00 -> 1, 0xFF -> 2, anything else -> 3. Low byte: <= 0x40 -> 1 (with 0x00
# a sample 0..64), >= 0xC0 -> 2 (with 0xFF a sample -64..-1), else -> 4 (never agrees).
_HIGH = bytes(1 if b == 0 else 2 if b == 0xFF else 3 for b in range(256))
_LOW = bytes(1 if b <= SILENCE else 2 if b >= 256 - SILENCE else 4 for b in range(256))
#: Format tags whose samples are whole frames of ``block_align`` bytes.
_FRAMED = {1, 3, 6, 7}  # PCM, IEEE float, A-law, mu-law
_EXTENSIBLE = 0xFFFE
#: A `fmt ` chunk larger than this is not one.
_MAX_FMT = 1024


@dataclass
class WavResult:
    """What the parser found, before it is turned into an :class:`AudioInfo`."""

    #: The ``fmt`` chunk was read and makes sense.
    has_format: bool = False
    format_tag: int | None = None
    channels: int | None = None
    sample_rate: int | None = None
    byte_rate: int | None = None
    block_align: int | None = None
    bits: int | None = None
    riff_size: int | None = None
    #: None until the ``data`` chunk is reached.
    data_size: int | None = None
    #: Bytes of ``data`` that arrived.
    data_bytes: int = 0
    #: The chunk structure broke before ``data`` (an impossible chunk id or size).
    corrupt: bool = False
    #: No sample outside +-SILENCE so far (meaningful for 16-bit PCM only).
    quiet: bool = True

    @property
    def pcm16(self) -> bool:
        """16-bit integer PCM: the only layout the silence check reads."""
        return self.format_tag == 1 and self.bits == 16

    @property
    def sizes_final(self) -> bool:
        """Neither the RIFF nor the ``data`` size is a placeholder."""
        return self.riff_size not in UNSET_SIZES and self.data_size not in UNSET_SIZES

    @property
    def frames(self) -> int:
        """Whole sample frames that arrived (for framed formats)."""
        return self.data_bytes // self.block_align if self.block_align else 0

    @property
    def has_samples(self) -> bool:
        """At least one whole sample frame (any byte of data, for other formats) arrived."""
        return self.frames > 0 if self.format_tag in _FRAMED else self.data_bytes > 0

    @property
    def duration_ms(self) -> int:
        """The duration of the bytes that arrived, rounded down."""
        if self.format_tag in _FRAMED and self.sample_rate:
            return self.frames * 1000 // self.sample_rate
        if self.byte_rate:
            return self.data_bytes * 1000 // self.byte_rate
        return 0

    @property
    def bitrate_kbps(self) -> int | None:
        """rate x channels x bits / 1000 for PCM, else from the byte rate."""
        if self.format_tag in _FRAMED and self.sample_rate and self.channels and self.bits:
            return round(self.sample_rate * self.channels * self.bits / 1000)
        return round(self.byte_rate * 8 / 1000) if self.byte_rate else None


class WavParser:
    """Reads a RIFF/WAVE stream fed in blocks; :meth:`finish` at the end."""

    __slots__ = ("result", "_state", "_pending", "_skip", "_left", "_odd")

    def __init__(self) -> None:
        self.result = WavResult()
        #: "riff", "chunk", "data" (samples), "after" (past data), "stop" (corrupt)
        self._state = "riff"
        self._pending = b""
        self._skip = 0
        #: Bytes of ``data`` still to come when its size is final; None: to the end.
        self._left: int | None = None
        #: An odd byte of a 16-bit sample split across blocks.
        self._odd = b""

    def feed(self, block: bytes) -> None:
        """Take the next bytes of the stream."""
        state = self._state
        if state == "data":
            self._samples(block)
            return
        if state in ("after", "stop"):
            return
        if self._skip:
            block, self._skip = skip_ahead(block, self._skip)
            if not block:
                return
        data = self._pending + block if self._pending else block
        pos = self._headers(data)
        self._pending = b""
        if pos > len(data):
            self._skip = pos - len(data)
        elif self._state == "data":
            self._samples(data[pos:] if pos else data)
        elif self._state not in ("after", "stop"):
            self._pending = data[pos:]

    def finish(self) -> WavResult:
        """The stream has ended: return what was found."""
        return self.result

    def _headers(self, data: bytes) -> int:
        """Read the RIFF header and chunk headers; return where samples (or the rest) start."""
        result = self.result
        n = len(data)
        pos = 0
        if self._state == "riff":
            if n < 12:
                return 0
            if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
                self._state = "stop"
                result.corrupt = True
                return n
            result.riff_size = struct.unpack_from("<I", data, 4)[0]
            self._state = "chunk"
            pos = 12
        while pos + 8 <= n:
            chunk_id = data[pos : pos + 4]
            size = struct.unpack_from("<I", data, pos + 4)[0]
            if not all(0x20 <= c < 0x7F for c in chunk_id):
                result.corrupt = True
                self._state = "stop"
                return n
            if chunk_id == b"data":
                if not result.has_format:
                    result.corrupt = True  # samples of an unknown layout
                    self._state = "stop"
                    return n
                result.data_size = size
                self._left = None if size in UNSET_SIZES else size
                self._state = "data"
                return pos + 8
            if chunk_id == b"fmt ":
                if size > _MAX_FMT or size < 16:
                    result.corrupt = True
                    self._state = "stop"
                    return n
                if pos + 8 + size > n:
                    return pos  # wait for the whole chunk
                self._format(data[pos + 8 : pos + 8 + size])
                if not result.has_format:
                    result.corrupt = True
                    self._state = "stop"
                    return n
            elif size == 0xFFFFFFFF:
                result.corrupt = True  # a chunk before data cannot run to the end
                self._state = "stop"
                return n
            pos += 8 + size + (size & 1)  # chunks are padded to an even size
        return pos

    def _format(self, body: bytes) -> None:
        result = self.result
        tag, channels, rate, byte_rate, align, bits = struct.unpack_from("<HHIIHH", body)
        if tag == _EXTENSIBLE and len(body) >= 26:
            tag = struct.unpack_from("<H", body, 24)[0]  # the sub-format GUID's first field
        if channels == 0 or rate == 0 or align == 0:
            return
        result.has_format = True
        result.format_tag, result.channels, result.sample_rate = tag, channels, rate
        result.byte_rate, result.block_align, result.bits = byte_rate, align, bits

    def _samples(self, block: bytes) -> None:
        """Count the bytes of ``data`` in ``block``; check them for silence while quiet."""
        result = self.result
        if self._left is not None:
            if len(block) >= self._left:
                block = block[: self._left]
                self._state = "after"  # what follows data (a trailing LIST) is not audio
            self._left -= len(block)
        result.data_bytes += len(block)
        if not (result.quiet and result.pcm16) or not block:
            return
        if self._odd:
            block = self._odd + block
        even = len(block) & ~1
        self._odd = block[even:]
        if block[1:even:2].translate(_HIGH) != block[0:even:2].translate(_LOW):
            result.quiet = False
