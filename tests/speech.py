"""Real speech for the tests: espeak-ng's voice, as phone audio (8 kHz, float32).

espeak-ng (Debian package ``espeak-ng``, installed by tests/install-tools.sh) speaks
a sentence into a WAV; soxr brings it to the rate asked for. The same text, voice and
speed always give the same samples, so what an engine makes of them is repeatable.
"""

from __future__ import annotations

import io
import subprocess

import numpy as np
import soundfile
import soxr

#: A clear female US voice, a little slower than espeak-ng's default.
VOICE = "en-us+f2"
SPEED = 140


def speak(text: str, rate: int = 8000, *, voice: str = VOICE,
          speed: int = SPEED) -> np.ndarray:
    """``text`` spoken by espeak-ng, mono ``float32`` at ``rate`` Hz."""
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
                         check=True, capture_output=True, timeout=60).stdout
    samples, native = soundfile.read(io.BytesIO(wav), dtype="float32")
    return np.asarray(soxr.resample(samples, native, rate), dtype=np.float32)


def placed(parts: list[tuple[float, np.ndarray]], duration: float,
           rate: int = 8000) -> np.ndarray:
    """Silence ``duration`` seconds long with each ``(start, samples)`` part laid in."""
    out = np.zeros(int(duration * rate), dtype=np.float32)
    for start, samples in parts:
        a = int(start * rate)
        out[a:a + len(samples)] = samples[:len(out) - a]
    return out


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """Word-level edit distance (substitutions, insertions, deletions) and the
    reference's length: WER is their quotient."""
    ref, hyp = reference.lower().split(), hypothesis.lower().split()
    row = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        previous, row[0] = row[0], i
        for j in range(1, len(hyp) + 1):
            current = min(row[j] + 1, row[j - 1] + 1, previous + (ref[i - 1] != hyp[j - 1]))
            previous, row[j] = row[j], current
    return row[len(hyp)], len(ref)
