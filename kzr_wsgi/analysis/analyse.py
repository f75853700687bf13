"""One call from a stored recording's bytes to its result: decode once, run the steps.

>>> import io
>>> analyse(io.BytesIO(b"<html>Bad Gateway</html>"))
Skipped(reason='not_audio')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from .decode import BLOCK_FRAMES, Skipped, open_audio
from .levels import LevelStep
from .result import AnalysisResult, Peaks, build_result
from .settings import DEFAULTS, AnalysisSettings
from .speech import SpeechStep
from .steps import Step, run_steps


@dataclass(frozen=True, eq=False)
class Analysed:
    """A recording that was analysed: its result and its waveform."""

    result: AnalysisResult
    peaks: Peaks


def analyse(source: str | os.PathLike[str] | BinaryIO,
            settings: AnalysisSettings = DEFAULTS, *, steps: Sequence[Step[object]] = (),
            block_frames: int = BLOCK_FRAMES) -> Analysed | Skipped:
    """Analyse an MP3 or WAV (a path or a seekable binary file) in bounded memory.

    ``steps`` are more consumers of the same decoded blocks (e.g. a transcription
    step): they are started and fed with the analysis's own, and their ``finish()`` is
    left to the caller. A recording with no samples at all is ``Skipped("empty")``.
    Raises :class:`~kzr_wsgi.analysis.decode.DecodeError` for audio that cannot be decoded
    (a cut-short file is not that: it is analysed as far as it goes).
    """
    decoder = open_audio(source, block_frames=block_frames)
    if isinstance(decoder, Skipped):
        return decoder
    levels = LevelStep(clip_level=settings.clip_level)
    speech = SpeechStep(settings)
    with decoder:
        frames = run_steps(decoder, [levels, speech, *steps])
    if not frames:
        return Skipped("empty")
    result, peaks = build_result(decoder.info, levels.finish(), speech.finish(), settings)
    return Analysed(result, peaks)
