"""MPEG Layer III frames, counted as the bytes stream past (pure: no I/O).

An :class:`Mp3Parser` is fed blocks of any size and keeps only what it cannot decide
yet (a few frames at most). What it does with the bytes:

* skips ID3v2 tags wherever a frame could start (the first one, stacked ones, and the
  tag each appended segment begins with), a 128-byte ID3v1 ``TAG`` likewise, and a
  trailing ``TAG`` at the very end;
* locks onto frames only when :data:`LOCK_FRAMES` consecutive headers agree (same
  MPEG version and sample rate), so a stray ``0xFFE`` in junk is never taken for audio;
  after junk it must lock again;
* counts every frame; a Xing/Info/VBRI frame (the encoder's summary, not audio) is not
  counted, wherever it stands (first, after a segment's tag, or at the end);
* a last frame cut short is ``truncated``.

Why it is fast enough for a 6-hour upload (600,000 frames): FreeSWITCH writes CBR
with padding never set, so every frame has the same 4-byte header and the same size
``S``. For a run of such frames the parser checks the sync and header bytes of all of
them with three strided slices (``data[pos::S]``) and ``bytes.lstrip``, and looks for
an Info tag with one more slice: a handful of C-speed operations per block instead of
Python work per frame. Only where a header changes (VBR, padding, a new segment) does
it step frame by frame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import NamedTuple

from ._blocks import skip_ahead

#: Consecutive agreeing headers needed before frames are believed.
LOCK_FRAMES = 4

#: Layer III bitrates (kbit/s) by index: MPEG-1, then MPEG-2 and 2.5.
_BITRATES_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_BITRATES_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
#: Sample rates by version bits (3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5) and index.
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}

#: A summary frame's tag and where it stands after the 4-byte header.
_SUMMARY_TAGS = (b"Xing", b"Info")


class Header(NamedTuple):
    """What bytes 1 and 2 of a Layer III frame header say."""

    #: Same version and sample rate: frames of one stream.
    key: int
    size: int
    samples: int
    rate: int
    bitrate: int
    mpeg1: bool


def _header_table() -> dict[int, Header]:
    """Every valid (byte 1, byte 2) pair of a Layer III header, keyed ``b1 << 8 | b2``."""
    table: dict[int, Header] = {}
    for version in (3, 2, 0):
        for protection in (0, 1):
            b1 = 0xE0 | version << 3 | 1 << 1 | protection  # layer bits 01 = Layer III
            for b2 in range(256):
                index, rate_index, padding = b2 >> 4, (b2 >> 2) & 3, (b2 >> 1) & 1
                if index in (0, 15) or rate_index == 3:
                    continue  # free format, bad bitrate, reserved rate
                mpeg1 = version == 3
                kbps = (_BITRATES_V1 if mpeg1 else _BITRATES_V2)[index]
                rate = _RATES[version][rate_index]
                samples = 1152 if mpeg1 else 576
                size = samples // 8 * kbps * 1000 // rate + padding
                table[b1 << 8 | b2] = Header(version << 2 | rate_index, size, samples, rate,
                                             kbps, mpeg1)
    return table


_HEADERS = _header_table()
#: Where a frame might start in junk: a Layer III header's first three bytes. (Tags are
#: looked for with ``bytes.find``: one regex with both alternatives is ten times slower.)
_SYNC = re.compile(
    b"\xff["
    + b"".join(re.escape(bytes((b1,))) for b1 in sorted({k >> 8 for k in _HEADERS}))
    + b"]["
    + b"".join(re.escape(bytes((b2,))) for b2 in sorted({k & 0xFF for k in _HEADERS}))
    + b"]"
)
#: Frames a run is first checked over before the rest of the block is.
_PROBE = 16
#: Junk bytes allowed before the first lock. An encoder puts frames right after its
#: tags; past this much junk the body is not MP3 and the rest is not searched, so an
#: upload of noise named .mp3 costs a few milliseconds, not a search of all of it.
MAX_JUNK = 64 << 10
_BYTE = [bytes((i,)) for i in range(256)]
#: Bytes of a new block decided together with the undecided rest of the last one: more
#: than any decision needs (a lock check spans LOCK_FRAMES frames of at most 1441 bytes).
_JOIN = 16384


def _candidate(data: bytes, start: int, stop: int) -> int:
    """Where in ``data[start:stop]`` a frame header or an ID3v2 tag may start; -1: nowhere."""
    sync = _SYNC.search(data, start, stop)
    tag = data.find(b"ID3", start, sync.start() + 3 if sync else stop)
    if sync is None:
        return tag
    return sync.start() if tag < 0 else min(tag, sync.start())


def header_at(data: bytes, pos: int) -> Header | None:
    """The Layer III header at ``data[pos:pos+4]``, or None (needs 3 bytes present)."""
    if data[pos] != 0xFF:
        return None
    return _HEADERS.get(data[pos + 1] << 8 | data[pos + 2])


def _side_info(header: Header, mode_byte: int) -> int:
    """Bytes of side information after the header: where a Xing/Info tag starts."""
    mono = mode_byte >> 6 == 3
    if header.mpeg1:
        return 17 if mono else 32
    return 9 if mono else 17


def _lead(run: bytes, byte: int) -> int:
    """How many bytes at the start of ``run`` equal ``byte`` (C speed)."""
    return len(run) - len(run.lstrip(_BYTE[byte]))


def id3v2_size(data: bytes, pos: int) -> int | None:
    """Total bytes of the ID3v2 tag at ``pos`` (10 present), or None when it is not one."""
    if data[pos : pos + 3] != b"ID3" or data[pos + 3] == 0xFF or data[pos + 4] == 0xFF:
        return None
    size_bytes = data[pos + 6 : pos + 10]
    if any(b & 0x80 for b in size_bytes):
        return None  # a syncsafe size never sets the high bit
    size = 0
    for b in size_bytes:
        size = size << 7 | b
    footer = 10 if data[pos + 5] & 0x10 else 0
    return 10 + size + footer


@dataclass
class Mp3Result:
    """What the parser found, before it is turned into an :class:`AudioInfo`."""

    #: Audio frames (summary frames not counted).
    frames: int = 0
    #: Samples per sample rate (a stream that changes rate is summed per rate).
    samples: dict[int, int] = field(default_factory=dict)
    bitrates: set[int] = field(default_factory=set)
    sample_rate: int | None = None
    channels: int | None = None
    #: ID3v2/ID3v1 tags skipped.
    tags: int = 0
    #: Xing/Info/VBRI frames skipped.
    summary_frames: int = 0
    #: Bytes that were neither tags nor frames.
    junk: int = 0
    #: True once frames were locked onto at least once.
    locked: bool = False
    truncated: bool = False

    @property
    def duration_ms(self) -> int:
        """Frames x samples per frame / rate, in whole milliseconds (rounded down)."""
        total = sum((Fraction(s * 1000, r) for r, s in self.samples.items()), Fraction(0))
        return int(total)


class Mp3Parser:
    """Counts Layer III frames in blocks fed one after another; :meth:`finish` at the end."""

    __slots__ = ("result", "_pending", "_skip", "_lock", "_gave_up")

    def __init__(self) -> None:
        self.result = Mp3Result()
        #: Bytes not decided yet (a frame, a tag header, a lock check): a few KiB at most.
        self._pending = b""
        #: Bytes of a tag still to skip in blocks not yet seen.
        self._skip = 0
        #: The key of the stream locked onto, or None while searching.
        self._lock: int | None = None
        #: MAX_JUNK was reached before any frame: the rest is not looked at.
        self._gave_up = False

    def feed(self, block: bytes) -> None:
        """Take the next bytes of the stream."""
        if self._gave_up:
            return
        if self._skip:
            block, self._skip = skip_ahead(block, self._skip)
            if not block:
                return
        data, start = block, 0
        if self._pending:
            # Decide the few undecided bytes together with the start of the block, then
            # go on in the block itself: joining a whole block to them would copy it.
            cut = len(self._pending)
            if len(block) <= _JOIN:
                data = self._pending + block
            else:
                head = self._pending + block[:_JOIN]
                start = self._walk(head, 0, final=False)
                if self._gave_up:
                    self._pending = b""
                    return
                if start < cut:  # never: no decision needs _JOIN bytes; but stay correct
                    data = self._pending + block
                else:
                    start -= cut
        pos = self._walk(data, start, final=False) if start < len(data) else start
        if pos >= len(data):
            self._skip = pos - len(data)  # a tag runs on into the next blocks
            self._pending = b""
        else:
            self._pending = data[pos:]

    def finish(self) -> Mp3Result:
        """The stream has ended: decide what is left and return the counts."""
        data, self._pending = self._pending, b""
        if self._skip or self._gave_up:
            return self.result  # the stream ended inside a tag, or was given up on
        if len(data) >= 128 and data[-128:-125] == b"TAG":
            data = data[:-128]  # ID3v1, which a cut-short last frame may stand before
            self.result.tags += 1
        self._walk(data, 0, final=True)
        return self.result

    # -- the walk -------------------------------------------------------------------------

    def _walk(self, data: bytes, pos: int, *, final: bool) -> int:
        """Consume what can be decided in ``data`` from ``pos``; return where the rest starts.

        The position returned may lie beyond ``data`` when a tag runs on past it.
        """
        n = len(data)
        result = self.result
        while pos < n:
            avail = n - pos
            first = data[pos]
            if first == 0xFF:
                if avail < 4:
                    if not final:
                        return pos
                    # 1-3 bytes after the last frame: a cut-off header at most.
                    result.truncated = result.truncated or self._lock is not None
                    return n
                header = header_at(data, pos)
                if header is not None:
                    if header.key == self._lock:
                        step = self._frames(data, pos, header, final)
                        if step == 0:
                            return pos
                        pos += step
                        continue
                    locked = self._try_lock(data, pos, header, final)
                    if locked is None:
                        return pos
                    if locked:
                        self._lock = header.key
                        if not result.locked:
                            result.locked = True
                            result.sample_rate = header.rate
                            result.channels = 1 if data[pos + 3] >> 6 == 3 else 2
                        continue
            elif first == 0x49:  # "I": an ID3v2 tag?
                if avail < 10 and not final:
                    return pos
                size = id3v2_size(data, pos) if avail >= 10 else None
                if size is not None:
                    result.tags += 1
                    pos += size
                    continue
            elif first == 0x54 and self._lock is not None:  # "T": ID3v1 between frames?
                if avail < 128 and not final:
                    return pos
                if data[pos : pos + 3] == b"TAG" and avail >= 128:
                    result.tags += 1
                    pos += 128
                    continue
            # Junk: look for the next place a frame or a tag could start, and lock again.
            self._lock = None
            stop, capped = n, False
            if not result.locked:
                # A candidate may start at most MAX_JUNK junk bytes in (+3: its length).
                cap = pos + max(MAX_JUNK - result.junk, 1) + 3
                if cap <= n:
                    stop, capped = cap, True
            found = _candidate(data, pos + 1, stop)
            if found < 0:
                if capped:
                    result.junk += stop - pos
                    self._gave_up = True
                    return n
                # Keep the last two bytes: a header or "ID3" may continue in the next block.
                end = n if final else max(pos + 1, n - 2)
                result.junk += end - pos
                return end
            result.junk += found - pos
            pos = found
        return pos

    def _try_lock(self, data: bytes, pos: int, header: Header, final: bool) -> bool | None:
        """Do :data:`LOCK_FRAMES` agreeing headers start at ``pos``? None: need more bytes."""
        n = len(data)
        q = pos
        count = 0
        while count < LOCK_FRAMES:
            if q + 4 > n:
                if q + 3 <= n and count and data[q : q + 3] in (b"ID3", b"TAG"):
                    return True
                if not final:
                    return None
                # The data ends within the chain: believe it if two headers agreed, or
                # one whole frame ends exactly at the end.
                return count >= 2 or (count == 1 and q == n)
            following = header_at(data, q)
            if following is None or following.key != header.key:
                return count >= 1 and data[q : q + 3] in (b"ID3", b"TAG")
            count += 1
            q += following.size
        return True

    def _frames(self, data: bytes, pos: int, header: Header, final: bool) -> int:
        """Count the run of identical frames at ``pos``; return the bytes consumed (0: wait)."""
        n = len(data)
        size = header.size
        whole = (n - pos) // size
        if whole == 0:
            if final:
                self.result.truncated = True
                return n - pos
            return 0
        run = 1
        # Strided slices only for a run (the next header identical), first over a few
        # frames, then over the rest: VBR and padded frames come in short runs, and
        # slicing a whole block for each would cost more than the frames are worth.
        if whole > 1 and data[pos + size : pos + size + 3] == data[pos : pos + 3]:
            run = self._run(data, pos, size, min(whole, _PROBE))
            if run == _PROBE and whole > _PROBE:
                run = self._run(data, pos, size, whole)
        # The run's frames are vouched for by the header after each; the last one's
        # follower is checked here.
        after = pos + run * size
        if after + 3 <= n:
            following = header_at(data, after)
            vouched = (following is not None and following.key == header.key) or data[
                after : after + 3
            ] in (b"ID3", b"TAG")
            # Junk after a frame: believe the frame unless the junk could be the
            # trailing ID3v1 that a cut-short last frame stands before (decided at the end).
            if not vouched and not final and after + 132 > n:
                run -= 1
        elif not final:
            run -= 1  # cannot see what follows the last one yet
        if run == 0:
            return 0
        self._count(data, pos, header, run)
        return run * size

    @staticmethod
    def _run(data: bytes, pos: int, size: int, frames: int) -> int:
        """How many of ``frames`` frames from ``pos`` start with the same 3 header bytes."""
        end = pos + frames * size
        return min(
            _lead(data[pos:end:size], 0xFF),
            _lead(data[pos + 1 : end : size], data[pos + 1]),
            _lead(data[pos + 2 : end : size], data[pos + 2]),
        )

    def _count(self, data: bytes, pos: int, header: Header, run: int) -> None:
        """Add ``run`` frames of ``header`` at ``pos``, less any summary frame among them."""
        size = header.size
        end = pos + run * size
        at = 4 + _side_info(header, data[pos + 3])
        summaries = 0
        if run == 1:  # VBR and padded frames come one at a time: no slices for them
            summaries = int(data[pos + at : pos + at + 4] in _SUMMARY_TAGS
                            or data[pos + 36 : pos + 40] == b"VBRI")
        else:
            # One byte of every frame, where a summary tag would start; only the frames
            # whose byte could begin one are looked at (real audio has a few per block).
            for offset, first, tags in ((at, b"I", _SUMMARY_TAGS), (at, b"X", _SUMMARY_TAGS),
                                        (36, b"V", (b"VBRI",))):  # Fraunhofer's is at 36
                marks = data[pos + offset : end : size]
                i = marks.find(first)
                while i >= 0:
                    start = pos + i * size + offset
                    summaries += data[start : start + 4] in tags
                    i = marks.find(first, i + 1)
        result = self.result
        result.summary_frames += summaries
        audio = run - summaries
        if audio:
            result.frames += audio
            rate = header.rate
            result.samples[rate] = result.samples.get(rate, 0) + audio * header.samples
            result.bitrates.add(header.bitrate)
