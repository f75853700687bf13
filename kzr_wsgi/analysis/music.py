"""Music: sound that holds still, which webrtcvad takes for speech (pure numpy).

Notes and chords keep one spectrum for hundreds of milliseconds; a voice's spectrum moves
all the time (its pitch glides, its formants change from sound to sound). So each loud
frame that is not a tone (tones are the tone gate's) has its magnitude spectrum compared
with the one :data:`LAG` frames (60 ms) before (cosine similarity, :func:`similarity`;
noise measures about 0.79): a **steady** frame is one at or above the
``steady-similarity`` setting (0.9). The recording is judged in stretches of
:data:`WINDOW` frames (990 ms), counted from its start: a stretch with enough loud frames
(a quarter) of which at least ``music-fraction`` (half) are steady is music, and nothing
in it is speech; so is a stretch too quiet to judge next to music.

Measured on LAME 8 kHz mono (``benchmarks/tone_gate.py`` and the espeak-ng voices the
tone gate was designed on): in a second of espeak-ng speech at most 22 % of loud frames
were steady; in sox's synthetic melodies (plucked, sine, square-wave notes) and chords,
69 to 94 %.

>>> import numpy as np
>>> a = np.array([[1.0, 2.0, 0.0]])
>>> similarity(a, a).round(3).tolist(), similarity(a, np.array([[0.0, 0.0, 3.0]])).tolist()
([1.0], [0.0])
>>> music_windows(np.array([20, 33, 5]), np.array([19, 3, 5]), fraction=0.5)
[0]
>>> music_windows(np.array([33, 20, 5]), np.array([3, 19, 0]), fraction=0.5)
[1, 2]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

#: A frame's spectrum is compared with the one this many frames before (60 ms).
LAG = 2
#: Frames in a judged stretch: 990 ms.
WINDOW = 33
#: A stretch is judged only when at least this many of its frames are loud (a quarter).
MIN_JUDGED = WINDOW // 4

Values = npt.NDArray[np.float64]
#: Magnitude spectra, a row per frame (:func:`~kzr_wsgi.analysis.tones.spectra`).
Spectra = npt.NDArray[np.floating[Any]]
Counts = npt.NDArray[np.int64]


def similarity(before: Spectra, after: Spectra) -> Values:
    """Cosine similarity of two rows of magnitude spectra, 0..1 (0 where one is silent)."""
    dot = np.einsum("ij,ij->i", before, after)
    norms = np.sqrt(np.einsum("ij,ij->i", before, before) * np.einsum("ij,ij->i", after, after))
    out: Values = np.where(norms > 0, dot / np.maximum(norms, 1e-30), 0.0)
    return out


def music_windows(judged: Counts, steady: Counts, *, fraction: float) -> list[int]:
    """The stretches that are music: enough judged frames, enough of them steady.

    A stretch with too few loud frames to judge, next to music, goes with it: the tail
    of the last note, or the few loud frames of the recording's last, short stretch.
    """
    enough = judged >= MIN_JUDGED
    found = enough & (steady >= fraction * np.maximum(judged, 1))
    beside = np.zeros_like(found)
    beside[1:] |= found[:-1]
    beside[:-1] |= found[1:]
    return [int(w) for w in np.flatnonzero(found | (beside & ~enough))]
