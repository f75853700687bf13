"""The thresholds of an analysis, and the fingerprint that says which ones made a result.

Pure: no I/O. :class:`AnalysisSettings` holds every number the analysis decides by, each
a field with its default. The config file's ``[analysis]`` table spells the same names
in kebab case (``dead_air`` is ``dead-air``); :meth:`AnalysisSettings.from_table` reads
such a table, :meth:`AnalysisSettings.table` gives it back::

    >>> settings = AnalysisSettings.from_table({"dead-air": "45s", "one-way-max-other": "250ms"})
    >>> settings.dead_air, settings.one_way_max_other
    (45.0, 0.25)
    >>> settings.fingerprint() == AnalysisSettings().fingerprint()
    False

A recording is analysed once per audio, :data:`VERSION` and :meth:`~AnalysisSettings.fingerprint`:
the fingerprint covers the version and every field, since every field can change a result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..audio.wav import SILENCE

#: The analysis's own version: raised whenever the same audio and settings would give a
#: different result (a changed detector, a fixed bug), so results are made again.
VERSION = 1

#: Fields whose values are durations in seconds (the config file may say ``"30s"`` or ``"500ms"``).
_DURATIONS = frozenset({
    "dead_air", "one_way_min_speech", "one_way_max_other", "speech_bridge", "speech_min",
})
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s)")


class SettingsError(ValueError):
    """A key or a value of an ``[analysis]`` table that is not one; the message names the key."""


@dataclass(frozen=True)
class AnalysisSettings:
    """Every threshold of the analysis, with its default.

    Durations are in seconds, levels as noted. The defaults are what the manual's
    analysis page documents and what the measurements it quotes were made with.
    """

    dead_air: float = 30.0
    """``dead_air``: no speech on any channel for at least this long (seconds) between the
    first and the last speech of the recording."""

    one_way_min_speech: float = 5.0
    """``one_way_audio`` needs one side to have at least this much speech (seconds)..."""

    one_way_max_other: float = 0.5
    """...while the other side has less than this (seconds). Stereo recordings only."""

    silent_level: int = SILENCE
    """``silent``: every sample within +-this, in 16-bit terms (64 is about -54 dBFS), in
    any format; the same level the upload's WAV inspection uses."""

    clip_level: float = 0.999
    """A sample at or beyond this fraction of full scale (after clamping) counts as clipped."""

    clip_fraction: float = 0.001
    """``clipped``: more than this fraction of all samples (every channel) are clipped."""

    speech_level: float = -50.0
    """A 30 ms frame whose RMS is below this (dBFS) is not speech; the voice detector is
    not asked about it (line noise and comfort noise lie well below)."""

    tone_residual: float = -25.0
    """A frame whose energy outside its three strongest spectral peaks lies this many dB
    (or more) below its total is a tone, not speech: sines, ringback, busy, DTMF and fax
    tones measure -42 dB or less, speech -21 dB or more in 99 % of frames (0.08 % at
    -25 dB or less). The two frames either side of a tonal frame are taken as tone too
    (a tone's edges, which LAME smears)."""

    steady_similarity: float = 0.9
    """A loud frame whose magnitude spectrum has at least this cosine similarity with the
    one 60 ms before is steady (a held note or chord); speech rarely holds that still."""

    music_fraction: float = 0.5
    """A stretch of 990 ms in which at least this fraction of the loud frames are steady is
    music, not speech: espeak-ng speech measures at most 0.22, sox's synthetic melodies
    and chords 0.69 to 0.94."""

    vad_mode: int = 3
    """webrtcvad's aggressiveness, 0 (least) to 3 (most: fewest non-speech frames taken
    for speech)."""

    speech_bridge: float = 0.3
    """Pauses inside speech shorter than this (seconds) are bridged: one interval."""

    speech_min: float = 0.09
    """Bursts of speech shorter than this (seconds), once bridged, are dropped (clicks)."""

    def __post_init__(self) -> None:
        problems = []
        for name in _DURATIONS:
            if not 0 <= getattr(self, name) < 86_400:
                problems.append(f"{_key(name)} must be a duration from 0s to 24h")
        if not 0 <= self.silent_level < 32768:
            problems.append("silent-level must be 0..32767")
        if not 0 < self.clip_level <= 1:
            problems.append("clip-level must be above 0 and at most 1")
        if not 0 <= self.clip_fraction < 1:
            problems.append("clip-fraction must be 0 or more and below 1")
        if not -120 <= self.speech_level <= 0:
            problems.append("speech-level must be -120..0 (dBFS)")
        if not -90 <= self.tone_residual <= 0:
            problems.append("tone-residual must be -90..0 (dB)")
        if not 0 < self.steady_similarity <= 1:
            problems.append("steady-similarity must be above 0 and at most 1")
        if not 0 < self.music_fraction <= 1:
            problems.append("music-fraction must be above 0 and at most 1")
        if self.vad_mode not in (0, 1, 2, 3):
            problems.append("vad-mode must be 0, 1, 2 or 3")
        if problems:
            raise SettingsError("; ".join(problems))

    def fingerprint(self) -> str:
        """A short stable hash of :data:`VERSION` and every field: equal means the same result.

        >>> AnalysisSettings().fingerprint() == AnalysisSettings().fingerprint()
        True
        >>> len(AnalysisSettings().fingerprint())
        16
        """
        values = {"version": VERSION, **dataclasses.asdict(self)}
        text = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def table(self) -> dict[str, Any]:
        """The settings as an ``[analysis]`` table: kebab-case keys, durations as text.

        >>> AnalysisSettings().table()["dead-air"]
        '30s'
        """
        return {
            _key(f.name): _format_duration(getattr(self, f.name)) if f.name in _DURATIONS
            else getattr(self, f.name)
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> AnalysisSettings:
        """Settings from an ``[analysis]`` table; keys left out keep their defaults.

        Durations may be numbers (seconds) or text: ``"30s"``, ``"1.5s"``, ``"500ms"``.
        Raises :class:`SettingsError` naming the key for anything else, and for a key
        not in :data:`KEYS`.

        >>> AnalysisSettings.from_table({"dead-air": 20}).dead_air
        20.0
        >>> AnalysisSettings.from_table({"deadair": 20})
        Traceback (most recent call last):
        ...
        kzr_wsgi.analysis.settings.SettingsError: unknown key deadair in [analysis] (known: ...)
        """
        names = {_key(f.name): f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in table.items():
            field = names.get(key)
            if field is None:
                raise SettingsError(
                    f"unknown key {key} in [analysis] (known: {', '.join(sorted(names))})")
            values[field.name] = _value(key, field.name, field.type, value)
        return cls(**values)


#: The settings every result is made with unless the config says otherwise.
DEFAULTS = AnalysisSettings()


def _key(name: str) -> str:
    return name.replace("_", "-")


def _value(key: str, name: str, kind: Any, value: Any) -> Any:
    """A table's value as the field's type (annotations are strings here)."""
    if isinstance(value, bool):
        raise SettingsError(f"{key} must be a number, not {value!r}")
    if name in _DURATIONS:
        return _parse_duration(key, value)
    if kind == "int":
        if not isinstance(value, int):
            raise SettingsError(f"{key} must be a whole number, not {value!r}")
        return value
    if not isinstance(value, (int, float)):
        raise SettingsError(f"{key} must be a number, not {value!r}")
    return float(value)


def _parse_duration(key: str, value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise SettingsError(
            f"{key} must be a duration such as 30s, 1.5s or 500ms, not {value!r}")
    number = float(match.group(1))
    return number / 1000 if match.group(2) == "ms" else number


def _format_duration(seconds: float) -> str:
    """``30.0`` -> ``"30s"``, ``0.5`` -> ``"500ms"``."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


#: The ``[analysis]`` keys that are thresholds (:meth:`AnalysisSettings.from_table` takes
#: these and no others): a config reader takes its own keys (``caller``, the queue's)
#: and sub-tables out of the table first.
KEYS = frozenset(DEFAULTS.table())
