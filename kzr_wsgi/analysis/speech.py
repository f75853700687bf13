"""Speech per channel: a gate for quiet frames, tones and music, then webrtcvad.

:class:`SpeechStep` is a :class:`~kzr_wsgi.analysis.steps.Step`. It resamples the
stream to 8 kHz (:class:`~kzr_wsgi.analysis.resample.Resampler`; webrtcvad works at
8 kHz inside whatever it is given), cuts each channel into 30 ms frames and decides
each frame in four stages, all but the third vectorised over a whole block:

1. a frame below ``speech-level`` (RMS, dBFS) is not speech;
2. a tonal frame (:func:`~kzr_wsgi.analysis.tones.residual_db` at or below
   ``tone-residual``) and its neighbours are not speech (:mod:`~kzr_wsgi.analysis.tones`);
3. the frames left are given to webrtcvad (one call each, the only per-frame Python);
4. nothing in a stretch of music (steady notes and chords,
   :mod:`~kzr_wsgi.analysis.music`) is speech.

Speech frames become intervals, bridged across pauses shorter than ``speech-bridge``,
and bursts shorter than ``speech-min`` are dropped (:mod:`~kzr_wsgi.analysis.timeline`).
The last two whole frames of each block wait for the next block, so a tone's neighbours
are known across block boundaries and the result never depends on how blocks are cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import webrtcvad

from .decode import Block, StreamInfo
from .music import LAG, WINDOW, music_windows, similarity
from .resample import Resampler
from .settings import AnalysisSettings
from .timeline import Interval, bridge, drop_short, subtract, total_ms
from .tones import (
    FRAME,
    FRAME_MS,
    RATE,
    REACH,
    SPECTRUM,
    Spectra,
    frame_db,
    residual_db,
    spectra,
    widen,
)

Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Speech:
    """What :class:`SpeechStep` found, per channel (in the stream's channel order)."""

    #: Speech intervals in milliseconds, bridged and filtered.
    intervals: tuple[tuple[Interval, ...], ...]
    #: Time taken for tones (frames the tone gate stopped), in milliseconds.
    tone_ms: tuple[int, ...]
    #: Time of the stretches judged music, in milliseconds.
    music_ms: tuple[int, ...] = ()


class _Channel:
    """One channel's detector and what it has found so far (frame numbers)."""

    __slots__ = ("vad", "tonal", "open", "runs", "tone_frames", "tail_spectra", "tail_loud",
                 "judged", "steady")

    def __init__(self, mode: int) -> None:
        self.vad = webrtcvad.Vad(mode)
        #: Whether the last :data:`REACH` committed frames were tonal (their neighbours are tone).
        self.tonal: Mask = np.zeros(0, dtype=bool)
        #: The frame the speech run still going on started at, if one is.
        self.open: int | None = None
        self.runs: list[Interval] = []
        self.tone_frames = 0
        #: The last :data:`~kzr_wsgi.analysis.music.LAG` committed frames' spectra and
        #: loudness: the frames the next block's first frames are compared with.
        self.tail_spectra: Spectra = np.zeros((0, SPECTRUM), dtype=np.float32)
        self.tail_loud: Mask = np.zeros(0, dtype=bool)
        #: Per stretch of music's WINDOW frames: loud frames compared, and steady ones.
        self.judged: list[int] = []
        self.steady: list[int] = []

    def count_steady(self, magnitude: Spectra, loud: Mask, first: int, level: float) -> None:
        """Count the steady frames of committed frames ``first``… (their spectra)."""
        known = len(self.tail_loud)
        every = np.concatenate((self.tail_spectra, magnitude)) if known else magnitude
        loud_all = np.concatenate((self.tail_loud, loud))
        self.tail_spectra, self.tail_loud = every[-LAG:].copy(), loud_all[-LAG:].copy()
        # Rows of ``every`` compared with the row LAG before (the stream's first frames
        # have none); row i is frame first - known + i.
        now = np.arange(max(known, LAG), len(every))
        if not len(now):
            return
        judged = loud_all[now] & loud_all[now - LAG]
        steady = judged & (similarity(every[now - LAG], every[now]) >= level)
        windows = (first - known + now) // WINDOW
        base, span = int(windows[0]), int(windows[-1] - windows[0]) + 1
        for counts, mask in ((self.judged, judged), (self.steady, steady)):
            found = np.bincount(windows[mask] - base, minlength=span)
            counts.extend([0] * (base + span - len(counts)))
            for offset, value in enumerate(found.tolist()):
                counts[base + offset] += value

    def music(self, fraction: float, frames: int) -> list[Interval]:
        """The stretches judged music, as frame ranges."""
        found = music_windows(np.array(self.judged, dtype=np.int64),
                              np.array(self.steady, dtype=np.int64), fraction=fraction)
        return bridge(((w * WINDOW, min((w + 1) * WINDOW, frames)) for w in found), 1)


class SpeechStep:
    """Finds :class:`Speech` with the thresholds of ``settings``."""

    def __init__(self, settings: AnalysisSettings) -> None:
        self.settings = settings
        self._channels: list[_Channel] = []
        self._resample = Resampler(RATE, RATE, 1)
        self._carry: npt.NDArray[np.float32] = np.zeros((0, 1), dtype=np.float32)
        #: Frames committed so far (the number of the next one).
        self._done = 0

    def start(self, stream: StreamInfo) -> None:
        """Reset for ``stream``: one detector per channel, a resampler to 8 kHz."""
        self._channels = [_Channel(self.settings.vad_mode) for _ in range(stream.channels)]
        self._resample = Resampler(stream.sample_rate, RATE, stream.channels)
        self._carry = np.zeros((0, stream.channels), dtype=np.float32)
        self._done = 0

    def feed(self, block: Block) -> None:
        """Take the next block."""
        self._frames(self._resample(block), final=False)

    def finish(self) -> Speech:
        """The speech of everything fed."""
        self._frames(self._resample.flush(), final=True)
        gap = round(self.settings.speech_bridge * 1000)
        shortest = round(self.settings.speech_min * 1000)
        found: list[tuple[Interval, ...]] = []
        music_ms: list[int] = []
        for channel in self._channels:
            if channel.open is not None:
                channel.runs.append((channel.open, self._done))
                channel.open = None
            music = channel.music(self.settings.music_fraction, self._done)
            music_ms.append(total_ms(music) * FRAME_MS)
            spoken = subtract(channel.runs, music)
            in_ms = ((s * FRAME_MS, e * FRAME_MS) for s, e in spoken)
            found.append(tuple(drop_short(bridge(in_ms, gap), shortest)))
        return Speech(tuple(found), tuple(c.tone_frames * FRAME_MS for c in self._channels),
                      tuple(music_ms))

    def _frames(self, samples: npt.NDArray[np.float32], *, final: bool) -> None:
        """Decide the whole frames of carry + ``samples``; keep the rest (and, unless
        ``final``, the last :data:`REACH` whole frames: their tonality decides their
        neighbours') for the next call."""
        data = np.concatenate((self._carry, samples)) if len(self._carry) else samples
        whole = len(data) // FRAME
        commit = whole if final else whole - REACH
        if commit <= 0:
            self._carry = data.copy() if not final else data[:0].copy()
            return
        # A row per channel (contiguous: fast reductions); soxr may overshoot full scale
        # a little, and the detector takes 16-bit samples.
        rows = np.clip(data[: whole * FRAME].T, -1.0, 1.0, order="C")
        for c, channel in enumerate(self._channels):
            self._channel(channel, rows[c].reshape(whole, FRAME), commit)
        self._carry = data[commit * FRAME :].copy()
        self._done += commit

    def _channel(self, channel: _Channel, frames: npt.NDArray[np.float32], commit: int) -> None:
        settings = self.settings
        loud = frame_db(frames) > settings.speech_level
        # Spectra of the loud frames only: nothing looks at a quiet frame's.
        magnitude = np.zeros((len(frames), SPECTRUM), dtype=np.float32)
        magnitude[loud] = spectra(frames[loud])
        tonal = np.zeros(len(frames), dtype=bool)
        tonal[loud] = residual_db(frames[loud], magnitude[loud]) <= settings.tone_residual
        tone = widen(tonal[:commit], before=channel.tonal, after=tonal[commit:]) & loud[:commit]
        channel.tonal = np.concatenate((channel.tonal, tonal[:commit]))[-REACH:]
        channel.tone_frames += int(np.count_nonzero(tone))
        # Music is judged on what is neither quiet nor tone: a tone is steady too, but it
        # is counted as tone.
        channel.count_steady(magnitude[:commit], loud[:commit] & ~tone, self._done,
                             settings.steady_similarity)
        asked = np.flatnonzero(loud[:commit] & ~tone)
        speech = np.zeros(commit, dtype=bool)
        if len(asked):
            pcm = memoryview((frames[asked] * 32767.0).astype(np.int16).tobytes())
            size = FRAME * 2
            is_speech = channel.vad.is_speech
            speech[asked] = [is_speech(pcm[i * size : (i + 1) * size], RATE)
                             for i in range(len(asked))]
        self._runs(channel, speech)

    def _runs(self, channel: _Channel, speech: Mask) -> None:
        """Turn this block's speech frames into runs, continuing the one left open."""
        base = self._done
        if channel.open is not None and not (len(speech) and speech[0]):
            channel.runs.append((channel.open, base))  # it ended with the previous block
            channel.open = None
        edges = np.flatnonzero(np.diff(speech.astype(np.int8), prepend=np.int8(0),
                                       append=np.int8(0)))
        for start, end in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
            begin = base + start if channel.open is None else channel.open
            channel.open = None
            if end == len(speech):
                channel.open = begin  # it may go on in the next block
            else:
                channel.runs.append((begin, base + end))
