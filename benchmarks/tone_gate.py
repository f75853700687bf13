"""How the analysis treats tones, music and speech: the numbers the manual quotes.

    python benchmarks/tone_gate.py

Every signal is made here (sox ``synth``, espeak-ng), encoded as FreeSWITCH writes it
(LAME, 8 kHz mono 16 kbit/s) and analysed by :func:`kzr_wsgi.analysis.analyse`. For each
it prints how much of the loud audio (30 ms frames above ``speech-level``) the analysis
counted as speech, against what webrtcvad alone (the same mode, every loud frame) says,
the speech put in (sentences from first sound to last, as sox trims them), the time the
tone gate took for tone and the time judged music, and the per-frame tone residual
(:func:`kzr_wsgi.analysis.tones.residual_db`) at the 1st, 50th and 99th percentile.
Files go under a temporary folder removed at the end.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import soundfile
import webrtcvad

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests")]

import speech_samples as ss  # noqa: E402

from kzr_wsgi.analysis import DEFAULTS, analyse  # noqa: E402
from kzr_wsgi.analysis.tones import FRAME, frame_db, residual_db  # noqa: E402

#: name -> sox ``synth`` effect chains (each a note; ``:`` joins them), 8 kHz mono.
SIGNALS: dict[str, list[list[str]]] = {
    "440 Hz test tone": [["10", "sine", "440"]],
    "fax CED 2100 Hz": [["10", "sine", "2100"]],
    "ringback 440+480 Hz (US)": [["2", "sine", "440", "sine", "480", "remix", "1,2"]],
    "ringback 400+450 Hz (UK)": [["2", "sine", "400", "sine", "450", "remix", "1,2"]],
    "busy 480+620 Hz": [["0.5", "sine", "480", "sine", "620", "remix", "1,2"]],
    "DTMF, 100 ms digits": [["0.1", "sine", lo, "sine", hi, "remix", "1,2"]
                            for lo, hi in (("697", "1209"), ("770", "1336"), ("852", "1477"),
                                           ("941", "1633"))],
    "DTMF, 50 ms digits": [["0.05", "sine", lo, "sine", hi, "remix", "1,2"]
                           for lo, hi in (("697", "1336"), ("852", "1209"), ("770", "1477"))],
    "melody, sine notes": [["0.3", "sine", n] for n in ("C4", "E4", "G4", "C5", "A4", "F4")],
    "melody, plucked notes": [["0.4", "pluck", n] for n in ("C4", "E4", "G4", "C5", "A4", "F4")],
    "melody, square-wave notes": [["0.3", "square", n] for n in ("C4", "E4", "G4", "C5")],
    "chords, triangle waves": [["1", "triangle", a, "triangle", b, "triangle", c, "remix",
                                "1,2,3"] for a, b, c in (("C4", "E4", "G4"), ("F4", "A4", "C5"),
                                                         ("G4", "B4", "D5"))],
}
SIGNALS["melody, plucked, reverb + chorus"] = SIGNALS["melody, plucked notes"]
SIGNALS["chords, tremolo + reverb"] = SIGNALS["chords, triangle waves"]
SIGNALS["chords with noise at -20 dB"] = SIGNALS["chords, triangle waves"]
#: sox effects applied to the whole signal: closer to recorded music than bare synthesis.
EFFECTS = {
    "melody, plucked, reverb + chorus": ["reverb", "50", "chorus", "0.7", "0.9", "55", "0.4",
                                         "0.25", "2", "-t"],
    "chords, tremolo + reverb": ["tremolo", "5", "40", "reverb", "40"],
}
#: Silence between repeats of a signal (ringback's cadence; gaps between digits).
GAPS = {"ringback 440+480 Hz (US)": 4.0, "ringback 400+450 Hz (UK)": 0.4,
        "busy 480+620 Hz": 0.5, "DTMF, 100 ms digits": 0.1, "DTMF, 50 ms digits": 0.05}


def make(name: str) -> Path:
    """The signal, repeated to about 20 s, as an 8 kHz mono MP3."""
    pieces = []
    for i, spec in enumerate(SIGNALS[name]):
        out = ss.workdir() / f"sig-{abs(hash(name))}-{i}.wav"
        ss.run("sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(out), "synth", *spec,
               "vol", "0.35")
        pieces.append(str(out))
        if name in GAPS:
            pieces.append(str(ss.gap(GAPS[name], 8000)))
    once = ss.workdir() / f"sig-{abs(hash(name))}.wav"
    ss.run("sox", *pieces, str(once), *EFFECTS.get(name, []))
    if "noise" in name:
        noise = ss.workdir() / f"sig-{abs(hash(name))}-noise.wav"
        ss.run("sox", str(once), str(noise), "synth", "whitenoise", "vol", "0.03")
        mixed = ss.workdir() / f"sig-{abs(hash(name))}-mixed.wav"
        ss.run("sox", "-m", str(once), str(noise), str(mixed))
        once = mixed
    repeats = max(1, round(20.0 / ss.seconds_of(once)) - 1)
    wav = ss.workdir() / f"sig-{abs(hash(name))}-x.wav"
    ss.run("sox", str(once), str(wav), "repeat", str(repeats))
    return ss.freeswitch_mp3(wav, 8000, 1)


def measure(name: str, path: Path, reference_ms: int | None = None) -> None:
    found = analyse(path)
    assert not isinstance(found, type(None)) and hasattr(found, "result")
    result = found.result  # type: ignore[union-attr]
    samples, rate = soundfile.read(str(path), dtype="float32")
    assert rate == 8000
    frames = np.clip(samples[: len(samples) // FRAME * FRAME], -1, 1).reshape(-1, FRAME)
    loud = frames[frame_db(frames) > DEFAULTS.speech_level]
    vad = webrtcvad.Vad(DEFAULTS.vad_mode)
    pcm = (loud * 32767).astype(np.int16)
    vad_ms = 30 * sum(vad.is_speech(f.tobytes(), 8000) for f in pcm)
    loud_ms = 30 * len(loud)
    talk = result.talk_ms["mono"]
    res = np.percentile(residual_db(loud), [1, 50, 99]) if len(loud) else [np.nan] * 3
    ref = f"{reference_ms / 1000:6.1f}" if reference_ms is not None else "     -"
    tone, music = result.tone_ms["mono"], result.music_ms["mono"]
    print(f"{name:30s} {loud_ms / 1000:6.1f} {vad_ms / 1000:7.1f} {talk / 1000:7.1f} {ref}  "
          f"{tone / 1000:6.1f} {music / 1000:7.1f}  {res[0]:6.1f} {res[1]:6.1f} {res[2]:6.1f}  "
          f"{','.join(result.flags) or '-'}")


def main() -> None:
    print(f"load average {os.getloadavg()}")
    print(f"{'signal (8 kHz mono MP3)':30s} {'loud s':>6s} {'vad s':>7s} {'talk s':>7s} "
          f"{'ref s':>6s}  {'tone s':>6s} {'music s':>7s}  {'res1%':>6s} {'res50':>6s} "
          f"{'res99':>6s}  flags")
    for name in SIGNALS:
        measure(name, make(name))
    for voice in ("en-us", "en+f3", "en+f2", "en-gb-scotland", "en+m3"):
        parts: list[tuple[int, str] | float] = [0.5]
        for i in range(len(ss.SENTENCES)):
            parts += [(i, voice), 0.8]
        wav, talk = ss.track(parts, 8000, f"voice-{voice}")
        measure(f"speech, espeak-ng {voice}", ss.freeswitch_mp3(wav, 8000, 1), talk)


if __name__ == "__main__":
    main()
