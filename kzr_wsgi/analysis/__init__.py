"""Inside the audio: decode a stored recording once and find what it holds.

The I/O is at the edge (:mod:`~kzr_wsgi.analysis.decode`: libsndfile through
:mod:`soundfile`, in blocks, in bounded memory); everything else is pure computation on
blocks of samples, done by steps (:mod:`~kzr_wsgi.analysis.steps`) that one decoding
feeds: :mod:`~kzr_wsgi.analysis.levels` (silence, clipping, the waveform) and
:mod:`~kzr_wsgi.analysis.speech` (gates for tones, :mod:`~kzr_wsgi.analysis.tones`, and
music, :mod:`~kzr_wsgi.analysis.music`, around webrtcvad).
:mod:`~kzr_wsgi.analysis.result` turns what they found into the result, its flags and the
waveform; :mod:`~kzr_wsgi.analysis.settings` holds every threshold, and
:mod:`~kzr_wsgi.analysis.channels` the vocabulary a reader of results needs.

>>> import io
>>> from kzr_wsgi.analysis import analyse
>>> analyse(io.BytesIO(b""))
Skipped(reason='empty')

``analyse(path)`` gives an :class:`Analysed` (``.result``: an :class:`AnalysisResult`,
``.peaks``: :class:`Peaks`) or a :class:`Skipped`; it raises :class:`DecodeError` when
the audio cannot be decoded.

The names are loaded when first used: ``import kzr_wsgi.analysis.settings`` or
``…channels`` (what a config reader or a catalog needs) does not load numpy, libsndfile
and webrtcvad.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .analyse import Analysed, analyse
    from .channels import DEFECTS, FLAGS, channel_names, speakers
    from .decode import REASONS, Block, DecodeError, Decoder, Skipped, StreamInfo, open_audio
    from .levels import PEAK_RATE, Levels, LevelStep
    from .resample import Resampler
    from .result import AnalysisResult, Peaks, build_result, decide_flags
    from .settings import DEFAULTS, KEYS, VERSION, AnalysisSettings, SettingsError
    from .speech import Speech, SpeechStep
    from .steps import Step, run_steps

#: Each public name, and the module that defines it.
_WHERE = {
    "Analysed": "analyse", "analyse": "analyse",
    "DEFECTS": "channels", "FLAGS": "channels", "channel_names": "channels",
    "speakers": "channels",
    "REASONS": "decode", "Block": "decode", "DecodeError": "decode", "Decoder": "decode",
    "Skipped": "decode", "StreamInfo": "decode", "open_audio": "decode",
    "PEAK_RATE": "levels", "Levels": "levels", "LevelStep": "levels",
    "Resampler": "resample",
    "AnalysisResult": "result", "Peaks": "result", "build_result": "result",
    "decide_flags": "result",
    "DEFAULTS": "settings", "KEYS": "settings", "VERSION": "settings",
    "AnalysisSettings": "settings", "SettingsError": "settings",
    "Speech": "speech", "SpeechStep": "speech",
    "Step": "steps", "run_steps": "steps",
}

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


def __getattr__(name: str) -> Any:
    """Load the module that defines ``name`` on first use (and bind all it defines)."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f".{where}", __name__)
    for each, home in _WHERE.items():
        if home == where:
            globals()[each] = getattr(module, each)
    return globals()[name]


class _Package(types.ModuleType):
    """This package: the submodule ``analyse`` never hides the function ``analyse``.

    Importing a submodule binds it on its package under its name; for ``analyse`` that
    would replace the function the package exports (which an eager ``from .analyse import
    analyse`` used to bind again right after).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "analyse" and isinstance(value, types.ModuleType):
            value = value.analyse
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
