"""What the audio of an upload turned out to be (pure: no I/O).

:class:`AudioInfo` is the one shape of an inspection's result, the same in the
sidecar, the handler's :class:`~kzr_wsgi.recording.Recording`, notifications and
the catalog (the ``audio`` key). :data:`FLAGS` is the whole vocabulary of flags, in
the order they are listed.

:class:`Inspector` finds it: fed the body block by block, in constant memory, it
decides from the extension, the content type or the first bytes whether the upload is
MP3 (:mod:`~kzr_wsgi.audio.mp3`) or WAV (:mod:`~kzr_wsgi.audio.wav`), and gives an
:class:`AudioInfo` at the end (``None`` for anything else: not inspected)::

    >>> inspector = Inspector(ext="mp3", reported_ms=30000)
    >>> inspector.feed(b"<html>Bad Gateway</html>")
    >>> inspector.result().flags
    ('not_audio',)

:func:`inspect_audio` does the same over an iterable of blocks (a file read back).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .mp3 import Mp3Parser, Mp3Result, header_at
from .wav import UNSET_SIZES, WavParser, WavResult

#: Every flag an inspection can set, in the order a result lists them.
FLAGS: tuple[str, ...] = (
    "empty",
    "not_audio",
    "truncated",
    "header_not_final",
    "shorter_than_reported",
    "silent",
)


@dataclass(frozen=True)
class AudioInfo:
    """The audio found in one upload's bytes.

    ``format`` is ``None`` when no MP3 or WAV container was found at all (then
    ``flags`` says why: ``empty`` or ``not_audio``).
    """

    format: str | None
    duration_ms: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    #: ``None`` when it varies (VBR) or is unknown.
    bitrate_kbps: int | None = None
    flags: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        unknown = [f for f in self.flags if f not in FLAGS]
        if unknown:
            raise ValueError(f"unknown audio flag(s): {', '.join(unknown)}")
        # One order everywhere, whatever order the inspector found them in.
        object.__setattr__(self, "flags", tuple(f for f in FLAGS if f in self.flags))

    @property
    def flagged(self) -> bool:
        """True when any flag is set."""
        return bool(self.flags)

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored under ``audio``."""
        return {
            "format": self.format,
            "duration_ms": self.duration_ms,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "bitrate_kbps": self.bitrate_kbps,
            "flags": list(self.flags),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AudioInfo:
        """The inverse of :meth:`to_json` (a sidecar's ``audio`` object)."""
        return cls(
            format=data.get("format"),
            duration_ms=data.get("duration_ms"),
            sample_rate=data.get("sample_rate"),
            channels=data.get("channels"),
            bitrate_kbps=data.get("bitrate_kbps"),
            flags=tuple(data.get("flags") or ()),
        )


#: Audio shorter than Kazoo's ``duration_ms`` by more than this is ``shorter_than_reported``.
#: LAME's flush makes an MP3 a little *longer* than what was recorded, never shorter.
REPORTED_SLACK_MS = 500

_CLAIMS = {
    "mp3": "mp3",
    "wav": "wav",
    "wave": "wav",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mpeg3": "mp3",
    "audio/x-mpeg": "mp3",
    "audio/x-mp3": "mp3",
    "audio/x-mpeg-3": "mp3",
    "audio/wav": "wav",
    "audio/wave": "wav",
    "audio/x-wav": "wav",
    "audio/vnd.wave": "wav",
    "audio/x-pn-wav": "wav",
}
#: Bytes needed to tell WAV (``RIFF....WAVE``) from MP3 by the start of the body.
SNIFF_BYTES = 12


def claimed_format(ext: str | None, content_type: str | None) -> str | None:
    """``"mp3"`` or ``"wav"`` when the extension or the content type says so, else None.

    >>> claimed_format("mp3", None), claimed_format("", "audio/x-wav; rate=8000")
    ('mp3', 'wav')
    """
    if ext and (found := _CLAIMS.get(ext.lower().lstrip("."))):
        return found
    if content_type:
        return _CLAIMS.get(content_type.split(";", 1)[0].strip().lower())
    return None


def sniff_format(head: bytes) -> str | None:
    """``"wav"`` or ``"mp3"`` when the first bytes of a file say so, else None.

    ``RIFF....WAVE`` is WAV; an ``ID3`` tag or a Layer III frame header at byte 0 is
    MP3. :data:`SNIFF_BYTES` bytes are enough.

    >>> sniff_format(b"RIFF\\x24\\x00\\x00\\x00WAVEfmt "), sniff_format(b"ID3\\x04\\x00")
    ('wav', 'mp3')
    >>> sniff_format(b"<html>") is None
    True
    """
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:3] == b"ID3" or (len(head) >= 4 and header_at(head, 0) is not None):
        return "mp3"
    return None


class Inspector:
    """Finds what audio a body holds, fed block by block in constant memory.

    :param ext: the upload's extension (``mp3``, ``wav``, ``mp4``…), if any.
    :param content_type: the type the client sent, if any.
    :param reported_ms: Kazoo's ``duration_ms`` (what FreeSWITCH wrote), if sent.

    Call :meth:`feed` with each block in order (any sizes; the result does not depend
    on how the body is split), then :meth:`result` once.
    """

    __slots__ = ("claim", "reported_ms", "size", "_head", "_parser", "_ignored")

    def __init__(
        self,
        *,
        ext: str | None = None,
        content_type: str | None = None,
        reported_ms: int | None = None,
    ) -> None:
        #: What the name or type claims: "mp3", "wav" or None.
        self.claim = claimed_format(ext, content_type)
        self.reported_ms = reported_ms
        #: Bytes fed so far.
        self.size = 0
        self._head = b""
        self._parser: Mp3Parser | WavParser | None = None
        #: Decided: neither claimed nor recognisable as audio; the rest is not looked at.
        self._ignored = False

    def feed(self, block: bytes) -> None:
        """Take the next block of the body."""
        if not block or self._ignored:
            return
        self.size += len(block)
        parser = self._parser
        if parser is None:
            if self._head or len(block) < SNIFF_BYTES:
                self._head += block
                if len(self._head) < SNIFF_BYTES:
                    return
                block, self._head = self._head, b""
            parser = self._choose(block)
            if parser is None:
                return
        parser.feed(block)

    def result(self) -> AudioInfo | None:
        """The audio found; None when the upload is neither claimed nor found to be audio."""
        if self._parser is None and not self._ignored:
            head, self._head = self._head, b""
            parser = self._choose(head)
            if parser is not None:
                parser.feed(head)
        if self._ignored:
            return None
        if self.size == 0:
            return AudioInfo(None, flags=("empty",))  # claimed, and nothing arrived
        assert self._parser is not None
        if isinstance(self._parser, WavParser):
            info = _wav_info(self._parser.finish())
        else:
            info = _mp3_info(self._parser.finish())
        if info.format is None and self.claim is None:
            return None  # the first bytes looked like audio, but it was not: not ours to flag
        if (
            self.reported_ms is not None
            and info.duration_ms is not None
            and info.duration_ms < self.reported_ms - REPORTED_SLACK_MS
        ):
            info = _with_flag(info, "shorter_than_reported")
        return info

    def _choose(self, head: bytes) -> Mp3Parser | WavParser | None:
        """Pick the parser by the first bytes, else by the claim; None: not inspected."""
        found = sniff_format(head)
        if found == "wav":
            self._parser = WavParser()
        elif found == "mp3":
            self._parser = Mp3Parser()
        elif self.claim is not None:
            # Claimed but unrecognised at byte 0: the MP3 walk searches past junk for
            # frames, and finding none makes it not_audio.
            self._parser = Mp3Parser()
        else:
            self._ignored = True
        return self._parser


def inspect_audio(
    blocks: Iterable[bytes],
    *,
    ext: str | None = None,
    content_type: str | None = None,
    reported_ms: int | None = None,
) -> AudioInfo | None:
    """Inspect a body given as blocks (e.g. a stored file read back in 1 MiB reads).

    >>> inspect_audio([b""], ext="wav").flags
    ('empty',)
    >>> inspect_audio([b"%PDF-1.4"], ext="pdf") is None
    True
    """
    inspector = Inspector(ext=ext, content_type=content_type, reported_ms=reported_ms)
    for block in blocks:
        inspector.feed(block)
    return inspector.result()


def _with_flag(info: AudioInfo, flag: str) -> AudioInfo:
    return AudioInfo(
        info.format, info.duration_ms, info.sample_rate, info.channels, info.bitrate_kbps,
        (*info.flags, flag),
    )


def _mp3_info(found: Mp3Result) -> AudioInfo:
    if found.frames == 0:
        if not found.locked and (found.junk or not found.tags):
            return AudioInfo(None, flags=("not_audio",))  # no frame anywhere: not MP3
        # Tags only, or a summary frame only: an MP3 with no audio in it.
        empty: tuple[str, ...] = ("empty", "truncated") if found.truncated else ("empty",)
        return AudioInfo("mp3", 0, found.sample_rate, found.channels, None, empty)
    flags: tuple[str, ...] = ("truncated",) if found.truncated else ()
    bitrate = next(iter(found.bitrates)) if len(found.bitrates) == 1 else None
    return AudioInfo(
        "mp3", found.duration_ms, found.sample_rate, found.channels, bitrate, flags
    )


def _wav_info(found: WavResult) -> AudioInfo:
    if not found.has_format or (found.corrupt and found.data_size is None):
        if found.corrupt:
            return AudioInfo(None, flags=("not_audio",))
        return AudioInfo("wav", 0, flags=("empty",))  # RIFF header, no chunks after it
    flags: list[str] = []
    if not found.has_samples:
        flags.append("empty")
    if found.data_size is not None and found.data_size not in UNSET_SIZES and (
        found.data_bytes < found.data_size
    ):
        flags.append("truncated")
    if found.has_samples and not found.sizes_final:
        flags.append("header_not_final")
    if found.pcm16 and found.frames and found.quiet:
        flags.append("silent")
    return AudioInfo(
        "wav", found.duration_ms, found.sample_rate, found.channels, found.bitrate_kbps,
        tuple(flags),
    )
