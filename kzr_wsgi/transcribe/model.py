"""The transcript of one recording: segments and words with times, per channel. Pure.

A :class:`Transcript` is what an engine returns for one piece of one channel, what
the pipeline merges per recording (:func:`merge_channels`) and what is stored beside
the recording as ``<name>.kzr.transcript.json`` (:meth:`Transcript.to_json`)::

    {"language": "en", "engine": "openai", "model": "whisper-1",
     "text": "hello I'd like to cancel",
     "segments": [{"start": 0.5, "end": 1.9, "channel": "left", "speaker": "caller",
                   "text": "hello I'd like to cancel"}],
     "words": [{"start": 0.5, "end": 0.8, "channel": "left", "speaker": "caller",
                "word": "hello"}, …]}

Times are seconds from the start of the recording (rounded to the millisecond).
``text`` is the segments' texts joined by a space, in time order: it is derived, so
redacting the segments redacts it too. ``speaker`` is never kept in memory: it is
derived from ``channel`` when written, from the mapping the caller passes (e.g.
``{"left": "caller", "right": "callee"}`` or ``{"mono": "all"}``), so a changed
mapping applies to every transcript as it is read.

>>> part = Transcript("en", "openai", "m", (Segment(0.5, 1.0, "hello"),), ())
>>> both = merge_channels({"left": part, "right": part.shifted(1.0)})
>>> [(s.start, s.channel) for s in both.segments]
[(0.5, 'left'), (1.5, 'right')]
>>> both.to_json({"left": "caller", "right": "callee"})["segments"][1]["speaker"]
'callee'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

#: The channel names the pipeline uses: a stereo recording's two sides, or its only one.
CHANNELS: tuple[str, ...] = ("left", "right", "mono")

_T = TypeVar("_T", "Segment", "Word")


@dataclass(frozen=True)
class Segment:
    """A stretch of speech on one channel: ``start``/``end`` in seconds, and its text.

    ``channel`` is empty while the segment is an engine's answer for one piece; the
    pipeline sets it when it merges the channels.
    """

    start: float
    end: float
    text: str
    channel: str = ""


@dataclass(frozen=True)
class Word:
    """One word on one channel, with its times in seconds (as the engine cut it)."""

    start: float
    end: float
    word: str
    channel: str = ""


@dataclass(frozen=True)
class Transcript:
    """What was said in a recording (or one piece of one channel of it)."""

    #: The language (as the engine or the settings named it), or None if unknown.
    language: str | None
    #: The engine's name (``openai``, ``pocketsphinx``, a plug-in's name).
    engine: str
    #: The model the engine used.
    model: str
    segments: tuple[Segment, ...] = ()
    #: Empty when the engine gives no word times.
    words: tuple[Word, ...] = ()

    @property
    def text(self) -> str:
        """The segments' texts joined by a space, in time order."""
        return " ".join(s.text for s in self.segments if s.text)

    def shifted(self, seconds: float) -> Transcript:
        """The same transcript with every time moved by ``seconds`` (a piece's offset)."""
        return replace(
            self,
            segments=tuple(replace(s, start=s.start + seconds, end=s.end + seconds)
                           for s in self.segments),
            words=tuple(replace(w, start=w.start + seconds, end=w.end + seconds)
                        for w in self.words),
        )

    def on_channel(self, channel: str) -> Transcript:
        """The same transcript with every segment and word on ``channel``."""
        return replace(
            self,
            segments=tuple(replace(s, channel=channel) for s in self.segments),
            words=tuple(replace(w, channel=channel) for w in self.words),
        )

    def to_json(self, speakers: Mapping[str, str]) -> dict[str, Any]:
        """The stored form; each ``speaker`` is ``speakers[channel]`` (else the channel).

        >>> Transcript(None, "e", "m").to_json({})
        {'language': None, 'engine': 'e', 'model': 'm', 'text': '', 'segments': [], 'words': []}
        """
        return {
            "language": self.language,
            "engine": self.engine,
            "model": self.model,
            "text": self.text,
            "segments": [
                {"start": _ms(s.start), "end": _ms(s.end), "channel": s.channel,
                 "speaker": speakers.get(s.channel, s.channel), "text": s.text}
                for s in self.segments
            ],
            "words": [
                {"start": _ms(w.start), "end": _ms(w.end), "channel": w.channel,
                 "speaker": speakers.get(w.channel, w.channel), "word": w.word}
                for w in self.words
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Transcript:
        """Read the stored form back. ``text`` and ``speaker`` are derived, so ignored.

        Raises ``ValueError`` when a field is missing or of the wrong type.
        """
        if not isinstance(data, Mapping):
            raise ValueError("a transcript is a JSON object")
        language = data.get("language")
        if language is not None and not isinstance(language, str):
            raise ValueError("transcript language: a string or null")
        return cls(
            language=language,
            engine=_string(data, "engine"),
            model=_string(data, "model"),
            segments=tuple(
                Segment(_time(s, "start"), _time(s, "end"), _string(s, "text"),
                        _string(s, "channel"))
                for s in _objects(data, "segments")
            ),
            words=tuple(
                Word(_time(w, "start"), _time(w, "end"), _string(w, "word"),
                     _string(w, "channel"))
                for w in _objects(data, "words")
            ),
        )


def merge_channels(parts: Mapping[str, Transcript], *, engine: str | None = None,
                   model: str | None = None) -> Transcript:
    """One transcript from each channel's: segments and words on their channel, in time order.

    ``parts`` maps a channel name (``left``, ``right``, ``mono``) to that channel's
    transcript; a channel with no speech may be absent. Ties in time keep the order
    of ``parts``. The language is the first one a part names; ``engine`` and ``model``
    default to the first part's (pass them when ``parts`` may be empty).
    """
    first = next(iter(parts.values()), None)
    on_channel = [t.on_channel(channel) for channel, t in parts.items()]
    return Transcript(
        language=next((t.language for t in on_channel if t.language), None),
        engine=engine if engine is not None else (first.engine if first else ""),
        model=model if model is not None else (first.model if first else ""),
        segments=_in_time_order(s for t in on_channel for s in t.segments),
        words=_in_time_order(w for t in on_channel for w in t.words),
    )


def join_pieces(pieces: Iterable[Transcript], *, language: str | None, engine: str,
                model: str) -> Transcript:
    """One channel's transcript from its pieces' (already offset to the recording)."""
    done = list(pieces)
    return Transcript(
        language=language or next((p.language for p in done if p.language), None),
        engine=engine,
        model=model,
        segments=_in_time_order(s for p in done for s in p.segments),
        words=_in_time_order(w for p in done for w in p.words),
    )


def _in_time_order(items: Iterable[_T]) -> tuple[_T, ...]:
    # sorted() is stable: equal times keep the order the channels were given in.
    return tuple(sorted(items, key=lambda item: (item.start, item.end)))


def _ms(seconds: float) -> float | int:
    value = round(seconds, 3)
    return int(value) if value == int(value) else value


def _objects(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = data.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise ValueError(f"transcript {key}: a list of objects")
    return items


def _string(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"transcript field {key!r}: a string")
    return value


def _time(data: Mapping[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"transcript field {key!r}: a number of seconds")
    return float(value)


__all__ = ["CHANNELS", "Segment", "Transcript", "Word", "join_pieces", "merge_channels"]
