"""Resampling a stream of blocks to the rate a step needs, with :mod:`soxr`.

:class:`Resampler` keeps soxr's filter state between blocks, so the output is one
continuous signal whatever the block sizes; :meth:`Resampler.flush` gives the tail the
filter still holds. The speech step takes 8 kHz; a transcription step that wants
16 kHz mono per channel makes its own (``Resampler(rate, 16000, channels)``) and takes
the columns of what it returns::

    >>> import numpy as np
    >>> to8k = Resampler(16000, 8000, channels=2)
    >>> out = to8k(np.zeros((16000, 2), dtype=np.float32))
    >>> len(out) + len(to8k.flush())
    8000
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

Samples = npt.NDArray[np.float32]


class Resampler:
    """Blocks of ``(frames, channels)`` float32 at ``in_rate`` -> the same at ``out_rate``.

    Where the rates are equal the blocks pass through untouched (the same array: a
    caller that keeps it copies it, as with any block).
    """

    def __init__(self, in_rate: int, out_rate: int, channels: int, *,
                 quality: str = "HQ") -> None:
        self.in_rate, self.out_rate, self.channels = in_rate, out_rate, channels
        self._stream = (
            None if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, channels, dtype="float32",
                                     quality=quality)
        )

    def __call__(self, block: Samples) -> Samples:
        """The resampled samples soxr can give so far for ``block``."""
        if self._stream is None:
            return block
        out: Samples = self._stream.resample_chunk(np.ascontiguousarray(block))
        return out

    def flush(self) -> Samples:
        """The last samples, held back by the filter until the stream ended."""
        if self._stream is None:
            return np.zeros((0, self.channels), dtype=np.float32)
        empty = np.zeros((0, self.channels), dtype=np.float32)
        out: Samples = self._stream.resample_chunk(empty, last=True)
        return out
