"""Speech to text for stored recordings: the transcript, the engines, pieces, redaction.

What each part is (the queue that runs them is the pipeline's):

* :mod:`~kzr_wsgi.transcribe.model`: :class:`Transcript`, :class:`Segment`,
  :class:`Word`, the stored JSON form, merging channels (pure);
* :mod:`~kzr_wsgi.transcribe.settings`: :class:`Settings`, one per ``[transcribe]``
  table (pure);
* :mod:`~kzr_wsgi.transcribe.engine`: the :class:`Transcriber` interface and the
  registry of engines, built-in and plug-in (:func:`~kzr_wsgi.transcribe.engine.create`);
* :mod:`~kzr_wsgi.transcribe.pieces`: cutting a channel at its silences, placing
  answers back in the recording's time (pure), :func:`transcribe_channel`;
* :mod:`~kzr_wsgi.transcribe.pcm`: samples as 16 kHz 16-bit PCM and WAV;
* :mod:`~kzr_wsgi.transcribe.openai_api` and :mod:`~kzr_wsgi.transcribe.sphinx`: the
  ``openai`` and ``pocketsphinx`` engines;
  :mod:`~kzr_wsgi.transcribe.verbose_json` reads the former's answers (pure);
* :mod:`~kzr_wsgi.transcribe.redact` (with :mod:`~kzr_wsgi.transcribe.spoken`): card
  numbers and the operator's patterns out of a transcript (pure);
* :mod:`~kzr_wsgi.transcribe.errors`: why a request failed, retryable or not, and the
  metrics outcome of each.

>>> from kzr_wsgi.transcribe import Settings, create, transcribe_channel, Redactor
>>> engine = create(Settings(engine="pocketsphinx"))                      # doctest: +SKIP
>>> left = transcribe_channel(engine, samples, 8000, speech_ms, language=None)  # doctest: +SKIP
>>> stored = Redactor()(merge_channels({"left": left, "right": right}))    # doctest: +SKIP
>>> stored.to_json({"left": "caller", "right": "callee"})                  # doctest: +SKIP
"""

from __future__ import annotations

from .engine import ENTRY_POINT_GROUP, Transcriber, create, engine_class, engine_names
from .errors import (
    OUTCOMES,
    EngineBusy,
    EngineRefused,
    EngineRejected,
    EngineTimeout,
    EngineUnauthorized,
    EngineUnavailable,
    TranscribeError,
    outcome_of,
)
from .model import CHANNELS, Segment, Transcript, Word, join_pieces, merge_channels
from .pieces import Piece, cut_pieces, transcribe_channel
from .redact import Redactor, redact
from .settings import MAX_PIECE_SECONDS, MAX_WAV_BYTES, Settings

__all__ = [
    "CHANNELS",
    "ENTRY_POINT_GROUP",
    "MAX_PIECE_SECONDS",
    "MAX_WAV_BYTES",
    "OUTCOMES",
    "EngineBusy",
    "EngineRefused",
    "EngineRejected",
    "EngineTimeout",
    "EngineUnauthorized",
    "EngineUnavailable",
    "Piece",
    "Redactor",
    "Segment",
    "Settings",
    "TranscribeError",
    "Transcriber",
    "Transcript",
    "Word",
    "create",
    "cut_pieces",
    "engine_class",
    "engine_names",
    "join_pieces",
    "merge_channels",
    "outcome_of",
    "redact",
    "transcribe_channel",
]
