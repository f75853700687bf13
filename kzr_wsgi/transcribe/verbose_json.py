"""Reading an OpenAI-compatible ``verbose_json`` answer into a transcript. Pure.

Servers that speak the API differ in what they send back, so only ``text`` is
required and everything else is used when it is there:

* ``segments`` (``start``, ``end``, ``text``): OpenAI, speaches, whisper.cpp, vLLM.
  LocalAI leaves them out when its backend gives none. Without segments, or when one
  has no usable times, the piece becomes one segment holding ``text``.
* ``words`` (``word``, ``start``, ``end``) at the top level (OpenAI, speaches), or
  inside each segment (whisper.cpp; LocalAI spells the word ``text``). vLLM and
  speaches without word timestamps send ``null``. whisper.cpp's "words" are its
  tokens (`` can`` + ``cel``): in a list where some entries start with a space, an
  entry without one continues the word before it.
* Numbers may be JSON numbers or numeric strings (vLLM sends ``duration`` as a
  string); unknown fields are ignored; times are kept inside the piece.

>>> t = parse_answer(b'{"text": " Hi there.", "segments": [{"start": 0.0, "end": 1.2,'
...                  b' "text": " Hi there.", "words": [{"word": " Hi", "start": 0.0,'
...                  b' "end": 0.4}, {"word": " the", "start": 0.5, "end": 0.8},'
...                  b' {"word": "re.", "start": 0.8, "end": 1.1}]}]}', duration=2.0,
...                  engine="openai", model="m", language="en")
>>> [s.text for s in t.segments], [w.word for w in t.words]
(['Hi there.'], ['Hi', 'there.'])
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .errors import EngineRejected
from .model import Segment, Transcript, Word


def parse_answer(body: bytes | str | Mapping[str, Any], *, duration: float, engine: str,
                 model: str, language: str | None) -> Transcript:
    """The transcript in an answer ``body`` for a piece ``duration`` seconds long.

    ``language`` is the one asked for; when None, the answer's ``language`` (if any)
    is recorded. Raises :class:`~kzr_wsgi.transcribe.errors.EngineRejected` when the
    body is not a JSON object with a string ``text``.
    """
    data = _json_object(body)
    text = data.get("text")
    if not isinstance(text, str):
        raise EngineRejected("the engine's answer has no 'text' (is the URL an "
                             "OpenAI-compatible /v1?)")
    said = data.get("language")
    language = language or (said.strip() if isinstance(said, str) and said.strip() else None)
    segments = _segments(data.get("segments"), duration)
    if segments is None:
        segments = (Segment(0.0, duration, text.strip()),) if text.strip() else ()
    words = _words(data.get("words"), duration)
    if not words and isinstance(data.get("segments"), list):
        words = tuple(w for s in data["segments"] if isinstance(s, Mapping)
                      for w in _words(s.get("words"), duration))
    return Transcript(language, engine, model, segments, words)


def _json_object(body: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(body, Mapping):
        return body
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise EngineRejected("the engine's answer is not JSON") from None
    if not isinstance(data, dict):
        raise EngineRejected("the engine's answer is not a JSON object")
    return data


def _segments(items: Any, duration: float) -> tuple[Segment, ...] | None:
    """The segments, or None when there are none or any lacks its times."""
    if not isinstance(items, list) or not items:
        return None
    out: list[Segment] = []
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("text"), str):
            return None
        start, end = _seconds(item.get("start")), _seconds(item.get("end"))
        if start is None or end is None:
            return None
        text = item["text"].strip()
        if text:
            out.append(Segment(*_inside(start, end, duration), text))
    return tuple(out)


def _words(items: Any, duration: float) -> tuple[Word, ...]:
    if not isinstance(items, list):
        return ()
    tokens: list[tuple[float, float, str]] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        raw = item.get("word", item.get("text"))
        start, end = _seconds(item.get("start")), _seconds(item.get("end"))
        if isinstance(raw, str) and raw and start is not None and end is not None:
            tokens.append((*_inside(start, end, duration), raw))
    # Token-style lists (whisper.cpp): some entries open with a space; those that do
    # not continue the word before them. In a plain word list none does.
    spaced = any(raw[:1].isspace() for _, _, raw in tokens)
    words: list[list[Any]] = []
    for start, end, raw in tokens:
        if spaced and words and not raw[:1].isspace():
            words[-1][1], words[-1][2] = max(words[-1][1], end), words[-1][2] + raw
        else:
            words.append([start, end, raw])
    return tuple(Word(start, end, raw.strip()) for start, end, raw in words if raw.strip())


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _inside(start: float, end: float, duration: float) -> tuple[float, float]:
    start = min(max(start, 0.0), duration)
    return start, min(max(end, start), duration)


__all__ = ["parse_answer"]
