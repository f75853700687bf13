"""The result of an analysis, its flags, and who is who (pure: no I/O).

:class:`AnalysisResult` is what is written beside a recording as
``<name>.kzr.analysis.json`` (:meth:`~AnalysisResult.to_json`, and back with
:meth:`~AnalysisResult.from_json`); :class:`Peaks` is ``<name>.kzr.peaks.json``.
:func:`build_result` makes both from what the steps found. Results are kept by channel
(``left``/``right``, ``mono``, ``ch1``…``chN``: :func:`channel_names`); who spoke on a
channel is derived when read (:func:`speakers`), so a changed mapping needs no decoding.

The flags (:data:`~kzr_wsgi.analysis.channels.FLAGS`): ``one_way_audio``, ``silent`` and
``clipped`` are defects of the recording (:data:`~kzr_wsgi.analysis.channels.DEFECTS`);
``dead_air`` and ``no_speech`` are facts about the call.
They, :func:`channel_names` and :func:`speakers` are defined in
:mod:`~kzr_wsgi.analysis.channels` (no numpy: what reading a result needs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .channels import DEFECTS, FLAGS, channel_names, speakers
from .decode import StreamInfo
from .levels import PEAK_RATE, Levels
from .settings import VERSION, AnalysisSettings
from .speech import Speech
from .timeline import Interval, longest_pause, longest_silence, total_ms

__all__ = ["DEFECTS", "FLAGS", "AnalysisResult", "Peaks", "build_result",
           "channel_names", "decide_flags", "speakers"]

#: Decimals kept of a waveform value.
_PEAK_DECIMALS = 3


@dataclass(frozen=True)
class AnalysisResult:
    """What the analysis found in one recording. Per-channel values are keyed by name."""

    format: str
    sample_rate: int
    duration_ms: int
    channel_names: tuple[str, ...]
    #: Speech per channel, milliseconds.
    talk_ms: dict[str, int]
    #: Speech intervals per channel, ``(start_ms, end_ms)``, end exclusive.
    speech: dict[str, tuple[Interval, ...]]
    #: The longest stretch, start to end, with no speech on any channel (see timeline).
    longest_silence_ms: int
    flags: tuple[str, ...]
    #: Time the tone gate kept from the voice detector per channel, milliseconds.
    tone_ms: dict[str, int] = field(default_factory=dict)
    #: Time judged music (steady notes and chords) per channel, milliseconds.
    music_ms: dict[str, int] = field(default_factory=dict)
    #: The loudest sample per channel, 0..1.
    peak: dict[str, float] = field(default_factory=dict)
    #: Fraction of all samples at or beyond the clip level.
    clipped_fraction: float = 0.0
    version: int = VERSION
    #: :meth:`AnalysisSettings.fingerprint` of the settings it was made with.
    settings: str = ""

    @property
    def channels(self) -> int:
        """How many channels."""
        return len(self.channel_names)

    @property
    def defects(self) -> tuple[str, ...]:
        """The flags that are defects of the recording."""
        return tuple(f for f in self.flags if f in DEFECTS)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written as ``<name>.kzr.analysis.json``."""
        return {
            "version": self.version,
            "settings": self.settings,
            "format": self.format,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "duration_ms": self.duration_ms,
            "channel_names": list(self.channel_names),
            "talk_ms": dict(self.talk_ms),
            "speech": {n: [list(i) for i in self.speech[n]] for n in self.channel_names},
            "longest_silence_ms": self.longest_silence_ms,
            "flags": list(self.flags),
            "tone_ms": dict(self.tone_ms),
            "music_ms": dict(self.music_ms),
            "peak": dict(self.peak),
            "clipped_fraction": self.clipped_fraction,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AnalysisResult:
        """The inverse of :meth:`to_json`."""
        names = tuple(data["channel_names"])
        return cls(
            format=data["format"],
            sample_rate=int(data["sample_rate"]),
            duration_ms=int(data["duration_ms"]),
            channel_names=names,
            talk_ms={n: int(data["talk_ms"][n]) for n in names},
            speech={n: tuple((int(s), int(e)) for s, e in data["speech"][n]) for n in names},
            longest_silence_ms=int(data["longest_silence_ms"]),
            flags=tuple(data["flags"]),
            tone_ms={n: int(v) for n, v in (data.get("tone_ms") or {}).items()},
            music_ms={n: int(v) for n, v in (data.get("music_ms") or {}).items()},
            peak={n: float(v) for n, v in (data.get("peak") or {}).items()},
            clipped_fraction=float(data.get("clipped_fraction") or 0.0),
            version=int(data["version"]),
            settings=str(data["settings"]),
        )


@dataclass(frozen=True, eq=False)
class Peaks:
    """The waveform: per channel, the loudest sample of each tenth of a second, 0..1."""

    channels: dict[str, npt.NDArray[np.float32]]
    rate: int = PEAK_RATE

    def to_json(self) -> dict[str, Any]:
        """``{"rate": 10, "channels": {"left": [...], "right": [...]}}``, 3 decimals."""
        return {
            "rate": self.rate,
            "channels": {n: np.round(v.astype(np.float64), _PEAK_DECIMALS).tolist()
                         for n, v in self.channels.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Peaks:
        """The inverse of :meth:`to_json` (to the decimals it keeps)."""
        return cls({n: np.asarray(v, dtype=np.float32) for n, v in data["channels"].items()},
                   rate=int(data["rate"]))


def decide_flags(*, channels: int, frames: int, talk: Sequence[int], pause_ms: int,
                 silent: bool, clipped_fraction: float,
                 settings: AnalysisSettings) -> tuple[str, ...]:
    """The flags, in :data:`~kzr_wsgi.analysis.channels.FLAGS` order, from the measures
    they are defined on.

    >>> decide_flags(channels=2, frames=8000, talk=[9000, 0], pause_ms=0, silent=False,
    ...              clipped_fraction=0.0, settings=AnalysisSettings())
    ('one_way_audio',)
    """
    found = set()
    if channels == 2 and max(talk) >= settings.one_way_min_speech * 1000 and (
            min(talk) < settings.one_way_max_other * 1000):
        found.add("one_way_audio")
    if silent:
        found.add("silent")
    if clipped_fraction > settings.clip_fraction:
        found.add("clipped")
    if pause_ms >= settings.dead_air * 1000:
        found.add("dead_air")
    if frames and not silent and not any(talk):
        found.add("no_speech")
    return tuple(f for f in FLAGS if f in found)


def build_result(stream: StreamInfo, levels: Levels, speech: Speech,
                 settings: AnalysisSettings) -> tuple[AnalysisResult, Peaks]:
    """The result and the waveform from what :class:`~kzr_wsgi.analysis.levels.LevelStep`
    and :class:`~kzr_wsgi.analysis.speech.SpeechStep` found over one stream."""
    names = channel_names(stream.channels)
    duration_ms = levels.frames * 1000 // stream.sample_rate
    talk = [total_ms(i) for i in speech.intervals]
    samples = levels.frames * stream.channels
    clipped = levels.clipped_samples / samples if samples else 0.0
    # In 16-bit terms, as the upload's WAV inspection counts: 64 is 64/32768 of full scale.
    silent = levels.frames > 0 and all(p * 32768 <= settings.silent_level for p in levels.peak)
    flags = decide_flags(channels=stream.channels, frames=levels.frames, talk=talk,
                         pause_ms=longest_pause(speech.intervals), silent=silent,
                         clipped_fraction=clipped, settings=settings)
    result = AnalysisResult(
        format=stream.format,
        sample_rate=stream.sample_rate,
        duration_ms=duration_ms,
        channel_names=names,
        talk_ms=dict(zip(names, talk, strict=True)),
        speech=dict(zip(names, speech.intervals, strict=True)),
        longest_silence_ms=longest_silence(speech.intervals, duration_ms),
        flags=flags,
        tone_ms=dict(zip(names, speech.tone_ms, strict=True)),
        music_ms=dict(zip(names, speech.music_ms, strict=True)),
        peak={n: round(p, 4) for n, p in zip(names, levels.peak, strict=True)},
        clipped_fraction=round(clipped, 6),
        settings=settings.fingerprint(),
    )
    return result, Peaks(dict(zip(names, levels.peaks, strict=True)))
