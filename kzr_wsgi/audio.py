"""What the audio of an upload turned out to be (pure: no I/O).

:class:`AudioInfo` is the one shape of an inspection's result, the same in the
sidecar, the handler's :class:`~kzr_wsgi.recording.Recording`, notifications and
the catalog (the ``audio`` key). :data:`FLAGS` is the whole vocabulary of flags, in
the order they are listed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
