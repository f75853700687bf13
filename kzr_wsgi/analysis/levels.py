"""Levels: each channel's loudest sample, clipping, and the waveform's peaks (pure numpy).

:class:`LevelStep` is a :class:`~kzr_wsgi.analysis.steps.Step`. Per block it takes the
absolute values once and from them the running maximum per channel (``silent`` is
decided from it), the count of samples at or beyond the clip level, and the maximum of
each tenth of a second (:data:`PEAK_RATE` values a second: the player's waveform)::

    >>> import numpy as np
    >>> from kzr_wsgi.analysis.decode import StreamInfo
    >>> step = LevelStep(clip_level=0.999)
    >>> step.start(StreamInfo("wav", 8000, 1))
    >>> step.feed(np.full((1200, 1), 0.5, dtype=np.float32))
    >>> found = step.finish()
    >>> found.peak, found.clipped_samples, found.peaks[0].tolist()
    ((0.5,), 0, [0.5, 0.5])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .decode import Block, StreamInfo

#: Waveform values a second, per channel.
PEAK_RATE = 10

Series = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Levels:
    """What :class:`LevelStep` found over the whole stream."""

    #: Frames seen (samples per channel).
    frames: int
    #: The largest absolute sample of each channel, 0..1 (after clamping).
    peak: tuple[float, ...]
    #: Samples (every channel) at or beyond the clip level.
    clipped_samples: int
    #: Per channel, the largest absolute sample of each tenth of a second, 0..1.
    peaks: tuple[Series, ...]


class LevelStep:
    """Finds :class:`Levels`; ``clip_level`` is a fraction of full scale."""

    def __init__(self, *, clip_level: float) -> None:
        self.clip_level = np.float32(clip_level)
        self._rate = 0
        self._pos = 0
        self._peak: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)
        self._clipped = 0
        #: The window being filled: its index and its running maximum per channel.
        self._window = 0
        self._open: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)
        self._done: list[npt.NDArray[np.float32]] = []
        self._scratch: npt.NDArray[np.float32] = np.zeros((0, 0), dtype=np.float32)

    def start(self, stream: StreamInfo) -> None:
        """Reset for a stream of ``stream.channels`` channels at ``stream.sample_rate``."""
        self._rate = stream.sample_rate
        self._pos = self._clipped = self._window = 0
        self._peak = np.zeros(stream.channels, dtype=np.float32)
        self._open = np.zeros(stream.channels, dtype=np.float32)
        self._done = []

    def feed(self, block: Block) -> None:
        """Take the next block."""
        n = len(block)
        if not n:
            return
        # Channel by channel, in rows: numpy reduces along a contiguous row many times
        # faster than down the columns of an interleaved block.
        if self._scratch.shape[1] < n:
            self._scratch = np.empty((block.shape[1], n), dtype=np.float32)
        mag = self._scratch[:, :n]
        np.abs(block.T, out=mag)
        np.maximum(self._peak, mag.max(axis=1), out=self._peak)
        self._clipped += int(np.count_nonzero(mag >= self.clip_level))
        self._windows(mag)
        self._pos += n

    def finish(self) -> Levels:
        """The levels of everything fed."""
        done = list(self._done)
        if self._pos > _start(self._window, self._rate):
            done.append(self._open[:, np.newaxis])
        channels = len(self._peak)
        table = (np.concatenate(done, axis=1) if done
                 else np.zeros((channels, 0), dtype=np.float32))
        return Levels(
            frames=self._pos,
            peak=tuple(float(p) for p in self._peak),
            clipped_samples=self._clipped,
            peaks=tuple(np.ascontiguousarray(row) for row in table),
        )

    def _windows(self, mag: npt.NDArray[np.float32]) -> None:
        """Fold ``mag`` (the block's absolute values, a row per channel) into the maxima
        of each tenth of a second."""
        rate, pos, end = self._rate, self._pos, self._pos + mag.shape[1]
        last = _window_of(end - 1, rate)
        first = self._window
        # Offsets in this block where windows first+1 .. last begin.
        starts = np.arange(first + 1, last + 1, dtype=np.int64) * rate // PEAK_RATE - pos
        cuts = np.concatenate((np.zeros(1, dtype=np.int64), starts))
        maxima = np.maximum.reduceat(mag, cuts, axis=1)
        np.maximum(maxima[:, 0], self._open, out=maxima[:, 0])
        if maxima.shape[1] > 1:
            self._done.append(maxima[:, :-1].copy())
        self._open = maxima[:, -1].copy()
        self._window = last
        if end == _start(last + 1, rate):
            # The block ended exactly on a boundary: the open window is complete.
            self._done.append(self._open[:, np.newaxis])
            self._open = np.zeros_like(self._open)
            self._window = last + 1


def _start(window: int, rate: int) -> int:
    """The first sample of the tenth of a second number ``window``."""
    return window * rate // PEAK_RATE


def _window_of(sample: int, rate: int) -> int:
    """The tenth of a second that sample number ``sample`` falls in.

    >>> [_window_of(s, 11025) for s in (0, 1101, 1102, 2205)]
    [0, 0, 1, 2]
    """
    window = sample * PEAK_RATE // rate
    while _start(window + 1, rate) <= sample:
        window += 1
    while _start(window, rate) > sample:
        window -= 1
    return window
