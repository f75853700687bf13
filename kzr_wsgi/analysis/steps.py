"""Steps: consumers of decoded blocks, so one decoding feeds every step.

A step is told what stream is coming (:meth:`Step.start`), is fed each block in order
(:meth:`Step.feed`), and gives its result when asked (:meth:`Step.finish`). The
analysis's own steps are :class:`~kzr_wsgi.analysis.levels.LevelStep` and
:class:`~kzr_wsgi.analysis.speech.SpeechStep`; a transcription step is one more, e.g.
one that spools 16 kHz mono PCM per channel through a
:class:`~kzr_wsgi.analysis.resample.Resampler`::

    with open_audio(path) as decoder:              # doctest: +SKIP
        levels, speech, spool = LevelStep(settings), SpeechStep(settings), Spooler(...)
        run_steps(decoder, [levels, speech, spool])
        found = levels.finish(), speech.finish(), spool.finish()
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

from .decode import Block, StreamInfo

R_co = TypeVar("R_co", covariant=True)


class Step(Protocol[R_co]):
    """A consumer of decoded blocks; ``R_co`` is the type of what :meth:`finish` gives."""

    def start(self, stream: StreamInfo) -> None:
        """The stream's format, rate and channels, before the first block."""

    def feed(self, block: Block) -> None:
        """The next block: float32 ``(frames, channels)``, clamped to -1..1.

        The block is a view of the decoder's reused buffer: a step copies what it keeps.
        """

    def finish(self) -> R_co:
        """The stream has ended: the step's result."""
        ...


class Source(Protocol):
    """What :func:`run_steps` decodes from: a :class:`~kzr_wsgi.analysis.decode.Decoder`."""

    info: StreamInfo
    frames: int

    def blocks(self) -> Iterable[Block]:
        """The decoded blocks in order."""
        ...


def run_steps(decoder: Source, steps: Sequence[Step[object]]) -> int:
    """Decode once, feeding every block to every step in order; returns the frames decoded.

    The steps' :meth:`~Step.finish` is the caller's to call (each gives its own type).
    A :class:`~kzr_wsgi.analysis.decode.DecodeError` raised while decoding passes
    through: the steps are then abandoned.
    """
    for step in steps:
        step.start(decoder.info)
    feeds = [step.feed for step in steps]
    for block in decoder.blocks():
        for feed in feeds:
            feed(block)
    return decoder.frames
