"""The transcription settings, as one value every engine is constructed with. Pure.

One field per key of the configuration's ``[transcribe]`` table (see the manual's
transcripts page); reading the command line, the environment and the file into a
:class:`Settings` is the command line's business, not this module's. Times are
seconds. The API key is the key itself, read from ``key-file`` or
``KZR_TRANSCRIBE_KEY`` by the caller: it is left out of ``repr`` so that no log line
or traceback that prints the settings shows it.

>>> Settings(engine="openai", url="https://gpu1:8000/v1", model="large-v3", key="sk-x")
Settings(engine='openai', url='https://gpu1:8000/v1', model='large-v3', language=None, ...)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

#: The largest WAV one request may carry (OpenAI's own limit is 25 MB; the rest of
#: the multipart body and a margin fit under it).
MAX_WAV_BYTES = 24_000_000
#: The sample rate every piece is sent at, and pocketsphinx decodes at.
ENGINE_RATE = 16_000
#: The longest piece whose 16 kHz, 16-bit mono WAV stays under :data:`MAX_WAV_BYTES`.
MAX_PIECE_SECONDS = (MAX_WAV_BYTES - 44) // (ENGINE_RATE * 2)
#: What ``redact`` may name.
REDACTIONS: tuple[str, ...] = ("card",)


@dataclass(frozen=True)
class Settings:
    """How to transcribe: the engine, where it is, and what to do with its answer.

    Construction checks the values (``ValueError`` naming the key); an engine checks
    what only it knows (the ``openai`` engine: ``url``, ``model``, ``insecure``).
    """

    #: ``openai``, ``pocketsphinx`` or a plug-in's name.
    engine: str
    #: The engine's base URL (``openai``: the part before ``/audio/transcriptions``).
    url: str | None = None
    #: The model name the engine expects.
    model: str | None = None
    #: e.g. ``en``; None lets the engine detect it.
    language: str | None = None
    #: The API key itself (never the file name); kept out of ``repr``.
    key: str | None = field(default=None, repr=False)
    #: Seconds one request may take.
    timeout: float = 300.0
    #: Requests at once per worker.
    concurrency: int = 2
    #: A PEM file of CAs to trust for the engine's certificate (None: the system's).
    ca_file: str | None = None
    #: Allow plain ``http://`` to a host that is not loopback.
    insecure: bool = False
    #: The longest piece of audio sent in one request, in seconds.
    piece: float = 600.0
    #: Tries before a job is ``failed``.
    attempts: int = 5
    #: Which recordings are transcribed (empty: all). Applied by the queue, not here.
    accounts: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    min_duration: float = 1.0
    max_duration: float | None = None
    #: What to redact (:data:`REDACTIONS`); empty turns redaction off.
    redact: tuple[str, ...] = ("card",)
    #: Extra regular expressions whose matches are redacted.
    redact_patterns: tuple[str, ...] = ()
    #: Settings of a plug-in engine that the table does not name, as given.
    extra: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not self.engine or not isinstance(self.engine, str):
            raise ValueError("transcribe engine: a name (openai, pocketsphinx or a plug-in's)")
        _positive("timeout", self.timeout)
        _positive("piece", self.piece)
        if self.piece > MAX_PIECE_SECONDS:
            raise ValueError(f"transcribe piece: at most {MAX_PIECE_SECONDS}s (a 16 kHz WAV "
                             f"of one piece must stay under {MAX_WAV_BYTES // 1_000_000} MB)")
        for name in ("concurrency", "attempts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"transcribe {name}: a whole number of at least 1")
        if self.min_duration < 0 or (self.max_duration is not None
                                     and self.max_duration < self.min_duration):
            raise ValueError("transcribe min-duration/max-duration: 0 <= min <= max")
        unknown = sorted(set(self.redact) - set(REDACTIONS))
        if unknown:
            raise ValueError(f"transcribe redact: unknown {', '.join(unknown)} "
                             f"(known: {', '.join(REDACTIONS)})")
        for i, pattern in enumerate(self.redact_patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"transcribe redact-patterns[{i}]: {exc}") from None

    def option(self, name: str, default: Any = None) -> Any:
        """A plug-in's own setting from :attr:`extra` (``default`` when absent)."""
        return dict(self.extra).get(name, default)


def setting_names() -> list[str]:
    """The table's keys, spelled as in the file (``ca-file``, ``redact-patterns``…)."""
    return [f.name.replace("_", "-") for f in fields(Settings) if f.name not in ("key", "extra")]


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value) or value <= 0:
        raise ValueError(f"transcribe {name}: a number of seconds above 0")


__all__ = [
    "ENGINE_RATE",
    "MAX_PIECE_SECONDS",
    "MAX_WAV_BYTES",
    "REDACTIONS",
    "Settings",
    "setting_names",
]
