"""One channel's samples as engines take them: 16-bit PCM at 16 kHz, bare or as a WAV.

Kazoo's recordings are 8 kHz (FreeSWITCH's phone audio); whisper-class engines and
pocketsphinx's model want 16 kHz. :func:`pcm16` resamples with soxr (the SoX
resampler: band-limited, well kept, a wheel per platform; extra ``transcribe``) and
converts to ``int16``; :func:`wav_bytes` wraps that in a WAV header with the standard
library's :mod:`wave`, refusing anything over
:data:`~kzr_wsgi.transcribe.settings.MAX_WAV_BYTES`.

>>> import numpy as np
>>> data = wav_bytes(np.zeros(8000, dtype=np.float32), 8000)
>>> len(data), data[:4], data[8:12]
(32044, b'RIFF', b'WAVE')
"""

from __future__ import annotations

import io
import wave
from typing import TYPE_CHECKING, Any

from .settings import ENGINE_RATE, MAX_WAV_BYTES

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


def pcm16(samples: Any, rate: int, target: int = ENGINE_RATE) -> npt.NDArray[np.int16]:
    """``samples`` (1-D ``float32`` in -1…1, or ``int16``) as ``int16`` at ``target`` Hz.

    Floats beyond full scale are clipped, not wrapped. Raises ``ValueError`` for
    anything but a 1-D float or int16 array, or a rate that is not positive.
    """
    import numpy as np

    array = np.asarray(samples)
    if array.ndim != 1:
        raise ValueError(f"one channel's samples: a 1-D array, not {array.ndim}-D")
    if rate <= 0 or target <= 0:
        raise ValueError("sample rates must be above 0")
    if array.dtype == np.int16 and rate == target:
        return array.astype(np.int16, copy=False)
    if array.dtype == np.int16:
        floats = array.astype(np.float32) / 32768.0
    elif array.dtype.kind == "f":
        floats = array.astype(np.float32, copy=False)
    else:
        raise ValueError(f"samples: float32 or int16, not {array.dtype}")
    if rate != target and len(floats):
        import soxr

        floats = np.asarray(soxr.resample(floats, rate, target, quality="HQ"), dtype=np.float32)
    scaled = np.clip(np.nan_to_num(floats) * 32768.0, -32768, 32767)
    out: npt.NDArray[np.int16] = np.rint(scaled).astype(np.int16)
    return out


def wav_bytes(samples: Any, rate: int, *, limit: int = MAX_WAV_BYTES) -> bytes:
    """A 16-bit PCM mono WAV of ``samples`` at 16 kHz (resampled if ``rate`` differs).

    Raises ``ValueError`` when the file would be larger than ``limit`` bytes (a piece
    longer than :data:`~kzr_wsgi.transcribe.settings.MAX_PIECE_SECONDS`).
    """
    pcm = pcm16(samples, rate)
    size = 44 + 2 * len(pcm)
    if size > limit:
        raise ValueError(f"a WAV of {len(pcm) / ENGINE_RATE:.0f}s is {size} bytes, over the "
                         f"{limit} a request may carry: cut shorter pieces")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(ENGINE_RATE)
        # WAV is little-endian; "<i2" makes the bytes right on any host.
        w.writeframes(pcm.astype("<i2", copy=False).tobytes())
    return out.getvalue()


__all__ = ["pcm16", "wav_bytes"]
