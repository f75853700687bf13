"""The gate in front of the voice detector: quiet frames and tones are not speech (pure numpy).

webrtcvad alone takes a 440 Hz test tone, ringback, DTMF and melodies for speech. A tone
puts nearly all of its energy into one, two or three narrow spectral peaks; a voice
spreads it over many harmonics and formants. So each 30 ms frame (Hann window, 256-point
FFT at 8 kHz: 31.25 Hz a bin) is measured by its **residual**: the energy left outside
its three strongest peaks (+-3 bins each), relative to its total, in dB.

Measured per frame (``benchmarks/tone_gate.py`` and the synthetic set it was designed
on): sines, ringback (US, UK), busy, DTMF and fax tones, pure or through LAME at 8 kHz,
lie at -42 dB or below inside the tone; espeak-ng speech (eight voices, LAME 8 kHz)
never below -33 dB, at -25 dB or below in 0.08 % of frames and above -21 dB in 99 %.
A threshold of -25 dB separates them. A tone's first and last frames (half tone, half
silence, and smeared by LAME over its 72 ms frames) are not as clean, so the two frames
either side of a tonal frame are taken as tone too (:func:`widen`)::

    >>> import numpy as np
    >>> t = np.arange(2400) / 8000
    >>> frames = np.sin(2 * np.pi * 440 * t).astype(np.float32).reshape(10, 240) / 2
    >>> bool((residual_db(frames) < -25).all()), bool((frame_db(frames) > -10).all())
    (True, True)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: The rate the gate and the detector work at (webrtcvad works at 8 kHz inside anyway).
RATE = 8000
#: One frame: 30 ms, the longest webrtcvad takes (fewest calls).
FRAME = 240
FRAME_MS = FRAME * 1000 // RATE
_FFT = 256
#: Half the width of a peak region, in bins: a Hann window's main lobe (+-2 bins) and
#: one more, so two tones closer than that (ringback's 440 + 480 Hz) share a region.
_HALF = 3
#: Peaks taken out: a tone pair, and room for the beat between close tones to spread.
_PEAKS = 3
_WINDOW = np.hanning(FRAME).astype(np.float32)
#: Bins of a frame's spectrum.
SPECTRUM = _FFT // 2 + 1
_BINS = np.arange(SPECTRUM)
#: Frames either side of a tonal frame that are taken as tone too: an MP3 frame at 8 kHz
#: is 72 ms, and LAME smears a tone's edges over about that much.
REACH = 2
#: Below this the residual is not worth telling apart (-120 dB).
_FLOOR = 1e-12

Frames = npt.NDArray[np.float32]
#: Magnitude spectra, a row per frame.
Spectra = npt.NDArray[np.float32]
Values = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


def frame_db(frames: Frames) -> Values:
    """Each frame's RMS in dBFS (its mean taken out first: a DC offset is not sound)."""
    centred = frames - frames.mean(axis=1, keepdims=True)
    power = np.einsum("ij,ij->i", centred, centred, dtype=np.float64) / frames.shape[1]
    db: Values = 10.0 * np.log10(np.maximum(power, _FLOOR))
    return db


def spectra(frames: Frames) -> Spectra:
    """Each frame's magnitude spectrum: its mean taken out, a Hann window, a 256-point FFT."""
    centred = frames - frames.mean(axis=1, keepdims=True)
    magnitude = np.abs(np.fft.rfft(centred * _WINDOW, _FFT, axis=1))
    return magnitude.astype(np.float32, copy=False)


def residual_db(frames: Frames, magnitude: Spectra | None = None) -> Values:
    """The energy outside each frame's three strongest spectral peaks, relative to its total (dB).

    A tone or a pair of tones gives -42 dB or less; speech rarely goes below -21 dB.
    ``magnitude`` is the frames' :func:`spectra`, where already computed.
    """
    if not len(frames):
        return np.zeros(0)
    power = np.square(spectra(frames) if magnitude is None else magnitude)
    total = power.sum(axis=1)
    kept = np.zeros(len(frames))
    for _ in range(_PEAKS):
        top = power.argmax(axis=1)
        region = np.abs(_BINS[np.newaxis, :] - top[:, np.newaxis]) <= _HALF
        kept += np.where(region, power, 0.0).sum(axis=1)
        power[region] = 0.0
    left = np.maximum(total - kept, 0.0) / np.maximum(total, _FLOOR)
    db: Values = 10.0 * np.log10(np.maximum(left, _FLOOR))
    return db


def widen(mask: Mask, before: Mask | None = None, after: Mask | None = None) -> Mask:
    """``mask`` with the :data:`REACH` frames either side of each set frame set too.

    ``before`` and ``after`` are the frames just outside the slice (the end of the
    previous block, the start of the next), so where a block ends changes nothing.

    >>> widen(np.array([0, 0, 0, 1, 0, 0, 0], dtype=bool)).astype(int).tolist()
    [0, 1, 1, 1, 1, 1, 0]
    >>> widen(np.zeros(3, dtype=bool), after=np.array([True, False])).astype(int).tolist()
    [0, 1, 1]
    """
    none = np.zeros(0, dtype=bool)
    head = none if before is None else before
    tail = none if after is None else after
    padded = np.concatenate((np.zeros(REACH - len(head), dtype=bool), head, mask, tail,
                             np.zeros(REACH - len(tail), dtype=bool)))
    near = np.convolve(padded.astype(np.int8), np.ones(2 * REACH + 1, dtype=np.int8), "valid")
    out: Mask = near > 0
    return out
