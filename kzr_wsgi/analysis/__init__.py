"""Inside the audio: decode a stored recording once and find what it holds.

The I/O is at the edge (:mod:`~kzr_wsgi.analysis.decode`: libsndfile through
:mod:`soundfile`, in blocks, in bounded memory); everything else is pure computation on
blocks of samples, done by steps (:mod:`~kzr_wsgi.analysis.steps`) that one decoding
feeds: :mod:`~kzr_wsgi.analysis.levels` (silence, clipping, the waveform) and
:mod:`~kzr_wsgi.analysis.speech` (gates for tones, :mod:`~kzr_wsgi.analysis.tones`, and
music, :mod:`~kzr_wsgi.analysis.music`, around webrtcvad).
:mod:`~kzr_wsgi.analysis.result` turns what they found into the result, its flags and the
waveform; :mod:`~kzr_wsgi.analysis.settings` holds every threshold.

>>> import io
>>> analyse(io.BytesIO(b""))
Skipped(reason='empty')

``analyse(path)`` gives an :class:`Analysed` (``.result``: an :class:`AnalysisResult`,
``.peaks``: :class:`Peaks`) or a :class:`Skipped`; it raises :class:`DecodeError` when
the audio cannot be decoded.
"""

from __future__ import annotations

from .analyse import Analysed, analyse
from .decode import REASONS, Block, DecodeError, Decoder, Skipped, StreamInfo, open_audio
from .levels import PEAK_RATE, Levels, LevelStep
from .resample import Resampler
from .result import (
    DEFECTS,
    FLAGS,
    AnalysisResult,
    Peaks,
    build_result,
    channel_names,
    decide_flags,
    speakers,
)
from .settings import DEFAULTS, KEYS, VERSION, AnalysisSettings, SettingsError
from .speech import Speech, SpeechStep
from .steps import Step, run_steps

__all__ = [
    "DEFAULTS",
    "DEFECTS",
    "FLAGS",
    "KEYS",
    "PEAK_RATE",
    "REASONS",
    "VERSION",
    "Analysed",
    "AnalysisResult",
    "AnalysisSettings",
    "Block",
    "DecodeError",
    "Decoder",
    "LevelStep",
    "Levels",
    "Peaks",
    "Resampler",
    "SettingsError",
    "Skipped",
    "Speech",
    "SpeechStep",
    "Step",
    "StreamInfo",
    "analyse",
    "build_result",
    "channel_names",
    "decide_flags",
    "open_audio",
    "run_steps",
    "speakers",
]
