"""Real recordings for the analysis tests: speech by espeak-ng, mixed by sox, encoded by LAME.

Every helper returns a :class:`Sample`: a file in a temporary directory of this test
session (made once, removed at exit) and the speech that was put into each channel,
measured independently of the code under test: each sentence from its first sound to its
last, as sox's ``silence`` effect trims it (:func:`speech_ms`). The MP3s have FreeSWITCH's
shapes (kazoo-contract §8), through :func:`audio_samples.lame_mp3`::

    conversation()           # 16 kHz stereo MP3, different sentences left and right
    monologue()              # 8 kHz mono MP3
    one_way()                # 16 kHz stereo MP3, speech left, digital silence right
    dead_air()               # 8 kHz mono MP3, 40 s of silence between two sentences
    silent("mp3"), silent("wav")
    tone("tone440" | "dtmf" | "fax" | "ringback")   # 8 kHz mono MP3, no speech
    music("melody" | "chords")                       # 8 kHz mono MP3, no speech
    on_hold()                # 16 kHz stereo MP3, 36 s of music on hold between sentences
    clipped()                # speech driven 20 dB into the rails
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import audio_samples

#: What the speakers say: different sentences for each side of a call.
SENTENCES = (
    "Hello, thank you for calling the support line. How can I help you today?",
    "Hi, I would like to check the status of an order I placed last week, please.",
    "Of course. Could you give me the order number and the name on the account?",
    "Sure, the order number is four five six seven eight, under the name Morgan.",
    "Thank you. One moment while I look that up for you in our system.",
    "Your order shipped yesterday, and it should arrive on Friday afternoon.",
)
#: A male voice on the left, a female one on the right.
VOICES = ("en-us", "en+f3")
#: Speech is put in at half of full scale (-6 dB): no sample near the rails.
GAIN = 0.5
TONES = ("tone440", "dtmf", "fax", "ringback")


@dataclass(frozen=True)
class Sample:
    """A recording file and the speech (ms) put into each of its channels."""

    path: Path
    talk_ms: dict[str, int] = field(default_factory=dict)

    def read(self) -> bytes:
        return self.path.read_bytes()


@functools.cache
def workdir() -> Path:
    """This session's directory for the files (removed when the interpreter exits)."""
    path = Path(tempfile.mkdtemp(prefix="kzr-speech-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def run(*argv: str) -> str:
    """Run a tool (sox, espeak-ng); its stdout."""
    proc = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "LC_ALL": "C"})
    return proc.stdout


@functools.cache
def sentence(index: int, voice: str, rate: int) -> Path:
    """Sentence ``index`` spoken by ``voice``, mono at ``rate``, at :data:`GAIN`."""
    raw = workdir() / f"say{index}-{voice}.wav"
    if not raw.exists():
        run("espeak-ng", "-v", voice, "-w", str(raw), SENTENCES[index])
    out = workdir() / f"say{index}-{voice}-{rate}.wav"
    run("sox", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(out), "vol", str(GAIN))
    return out


@functools.cache
def speech_ms(path: Path) -> int:
    """A sentence's speech as sox measures it: from its first sound to its last.

    sox's ``silence`` effect trims what lies below 1 % of full scale (-40 dBFS) from
    the start, and (reversed) from the end; ``soxi`` gives the length of what is left.
    """
    trimmed = path.with_suffix(".trimmed.wav")
    run("sox", str(path), str(trimmed), "silence", "1", "0.01", "1%", "reverse",
        "silence", "1", "0.01", "1%", "reverse")
    return round(float(run("soxi", "-D", str(trimmed))) * 1000)


def gap(seconds: float, rate: int) -> Path:
    """Digital silence."""
    out = workdir() / f"gap{seconds:.6f}-{rate}.wav"
    if not out.exists():
        run("sox", "-n", "-r", str(rate), "-c", "1", "-b", "16", str(out), "trim", "0",
            f"{seconds:.6f}")
    return out


def track(parts: list[tuple[int, str] | float], rate: int, name: str) -> tuple[Path, int]:
    """One channel: sentences ``(index, voice)`` and gaps (seconds) in order; its speech."""
    files = [gap(p, rate) if isinstance(p, float) else sentence(p[0], p[1], rate)
             for p in parts]
    talk = sum(speech_ms(sentence(p[0], p[1], rate)) for p in parts if not isinstance(p, float))
    out = workdir() / f"{name}.wav"
    run("sox", *map(str, files), str(out))
    return out, talk


def seconds_of(path: Path) -> float:
    return float(run("soxi", "-D", str(path)))


def stereo(left: Path, right: Path, name: str) -> Path:
    """Two mono tracks as left and right, the shorter padded with silence."""
    length = max(seconds_of(left), seconds_of(right))
    padded = []
    for side, path in (("l", left), ("r", right)):
        out = workdir() / f"{name}-{side}.wav"
        run("sox", str(path), str(out), "pad", "0", f"{length - seconds_of(path):.6f}")
        padded.append(str(out))
    out = workdir() / f"{name}.wav"
    run("sox", "-M", *padded, str(out))
    return out


def pcm16(path: Path) -> bytes:
    """A WAV's samples as 16-bit little-endian interleaved PCM (read by sox)."""
    out = path.with_suffix(".raw")
    run("sox", str(path), "-t", "raw", "-e", "signed-integer", "-b", "16", "-L", str(out))
    return out.read_bytes()


def freeswitch_mp3(wav: Path, rate: int, channels: int) -> Path:
    """``wav`` as mod_shout writes it: LAME CBR at its default bitrate, ID3v2, Info."""
    out = wav.with_suffix(".mp3")
    out.write_bytes(audio_samples.lame_mp3(pcm16(wav), rate=rate, channels=channels))
    return out


@functools.cache
def conversation() -> Sample:
    """16 kHz stereo: the caller (left) and the callee (right) take turns, 0.6 s apart.

    Sentences 0, 2, 4 on the left, 1, 3, 5 on the right; each side is silent while the
    other speaks.
    """
    sides: tuple[list[tuple[int, str] | float], list[tuple[int, str] | float]] = ([], [])
    for index in range(len(SENTENCES)):
        side = index % 2
        said = (index, VOICES[side])
        sides[side].append(said)
        sides[1 - side].append(seconds_of(sentence(index, VOICES[side], 16000)))
        for parts in sides:
            parts.append(0.6)
    left, talk_l = track(sides[0], 16000, "conv-left")
    right, talk_r = track(sides[1], 16000, "conv-right")
    path = freeswitch_mp3(stereo(left, right, "conversation"), 16000, 2)
    return Sample(path, {"left": talk_l, "right": talk_r})


@functools.cache
def monologue() -> Sample:
    """8 kHz mono: three sentences with pauses."""
    wav, talk = track([0.5, (0, VOICES[0]), 1.0, (1, VOICES[0]), 1.0, (2, VOICES[0]), 0.5],
                      8000, "monologue")
    return Sample(freeswitch_mp3(wav, 8000, 1), {"mono": talk})


@functools.cache
def one_way() -> Sample:
    """16 kHz stereo: the left side talks (well over 5 s), the right is digital silence."""
    left, talk = track([(0, VOICES[0]), 1.0, (2, VOICES[0]), 1.0, (4, VOICES[0])], 16000,
                       "oneway-left")
    right = gap(seconds_of(left), 16000)
    path = freeswitch_mp3(stereo(left, right, "one-way"), 16000, 2)
    return Sample(path, {"left": talk, "right": 0})


@functools.cache
def dead_air() -> Sample:
    """8 kHz mono: a sentence, 40 s of digital silence, another sentence."""
    wav, talk = track([(0, VOICES[0]), 40.0, (5, VOICES[0])], 8000, "dead-air")
    return Sample(freeswitch_mp3(wav, 8000, 1), {"mono": talk})


@functools.cache
def silent(fmt: str) -> Sample:
    """All-zero samples: a 16 kHz stereo MP3, or an 8 kHz mono 16-bit WAV (sox's)."""
    if fmt == "wav":
        return Sample(gap(20.0, 8000), {"mono": 0})
    wav = stereo(gap(20.0, 16000), gap(20.0, 16000), "silent")
    return Sample(freeswitch_mp3(wav, 16000, 2), {"left": 0, "right": 0})


#: sox ``synth`` arguments of the tones, 8 kHz, repeated to fill 20 s.
_TONE_SYNTH = {
    "tone440": [["0.5", "sine", "440"]],
    "fax": [["0.5", "sine", "2100"]],  # CED, the answering fax
    "ringback": [["2", "sine", "440", "sine", "480", "remix", "1,2"], ["4"]],  # 2 s on, 4 off
    "dtmf": [["0.1", "sine", low, "sine", high, "remix", "1,2"] for low, high in (
        ("697", "1209"), ("697", "1336"), ("770", "1477"), ("852", "1209"), ("941", "1336"),
        ("852", "1477"), ("770", "1209"), ("697", "1477"))],
}


@functools.cache
def tone(kind: str) -> Sample:
    """About 20 s of a tone and nothing else, 8 kHz mono MP3."""
    pieces = []
    for i, spec in enumerate(_TONE_SYNTH[kind]):
        out = workdir() / f"{kind}-{i}.wav"
        if len(spec) == 1:
            pieces.append(gap(float(spec[0]), 8000))
            continue
        run("sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(out), "synth", *spec,
            "vol", "0.35" if "remix" in spec else "0.5")
        pieces.append(out)
        if kind == "dtmf":
            pieces.append(gap(0.1, 8000))  # 100 ms between digits
    once = workdir() / f"{kind}-once.wav"
    run("sox", *map(str, pieces), str(once))
    wav = workdir() / f"{kind}.wav"
    repeats = max(1, round(20.0 / seconds_of(once)) - 1)
    run("sox", str(once), str(wav), "repeat", str(repeats))
    return Sample(freeswitch_mp3(wav, 8000, 1), {"mono": 0})


#: sox ``synth`` notes of the music: a plucked melody, and chords of triangle waves.
_MUSIC_SYNTH = {
    "melody": [["0.4", "pluck", note] for note in ("C4", "E4", "G4", "C5", "A4", "F4", "D4",
                                                   "G4")],
    "chords": [["1", "triangle", a, "triangle", b, "triangle", c, "remix", "1,2,3"]
               for a, b, c in (("C4", "E4", "G4"), ("F4", "A4", "C5"), ("G4", "B4", "D5"))],
}
MUSIC = tuple(_MUSIC_SYNTH)


@functools.cache
def music_track(kind: str, seconds: float, rate: int) -> Path:
    """About ``seconds`` of synthetic music (sox), mono at ``rate``."""
    notes = []
    for i, spec in enumerate(_MUSIC_SYNTH[kind]):
        out = workdir() / f"{kind}-{rate}-{i}.wav"
        run("sox", "-n", "-r", str(rate), "-c", "1", "-b", "16", str(out), "synth", *spec,
            "vol", "0.3")
        notes.append(str(out))
    once = workdir() / f"{kind}-{rate}-once.wav"
    run("sox", *notes, str(once))
    out = workdir() / f"{kind}-{rate}-{seconds:g}.wav"
    repeats = max(1, round(seconds / seconds_of(once)) - 1)
    run("sox", str(once), str(out), "repeat", str(repeats))
    return out


@functools.cache
def music(kind: str) -> Sample:
    """About 20 s of music and nothing else, 8 kHz mono MP3."""
    return Sample(freeswitch_mp3(music_track(kind, 20.0, 8000), 8000, 1), {"mono": 0})


@functools.cache
def on_hold() -> Sample:
    """16 kHz stereo: both sides talk, the caller hears 36 s of music on hold, both talk.

    The music is on the right (what the recorded leg hears), between the callee's two
    sentences.
    """
    hold = music_track("melody", 36.0, 16000)
    held = seconds_of(hold)
    s0, s1 = (seconds_of(sentence(i, VOICES[i % 2], 16000)) for i in (0, 1))
    s3 = seconds_of(sentence(3, VOICES[1], 16000))
    left, talk_l = track([(0, VOICES[0]), 0.5 + s1 + held + 0.5 + s3 + 0.5, (4, VOICES[0])],
                         16000, "hold-left")
    right_parts: list[tuple[int, str] | float] = [s0 + 0.5, (1, VOICES[1])]
    right_speech, talk_r = track(right_parts, 16000, "hold-right-1")
    after, talk_after = track([0.5, (3, VOICES[1])], 16000, "hold-right-2")
    right = workdir() / "hold-right.wav"
    run("sox", str(right_speech), str(hold), str(after), str(right))
    path = freeswitch_mp3(stereo(left, right, "on-hold"), 16000, 2)
    return Sample(path, {"left": talk_l, "right": talk_r + talk_after})


@functools.cache
def clipped() -> Sample:
    """8 kHz mono speech driven 20 dB beyond full scale (sox clips it)."""
    wav, talk = track([(1, VOICES[0]), 0.5, (3, VOICES[0])], 8000, "loud")
    hot = workdir() / "clipped.wav"
    run("sox", str(wav), str(hot), "gain", "20")
    return Sample(freeswitch_mp3(hot, 8000, 1), {"mono": talk})


@functools.cache
def multichannel() -> Sample:
    """A 3-channel 8 kHz WAV: speech on the first, silence on the others."""
    first, talk = track([(0, VOICES[0]), 0.5, (1, VOICES[0])], 8000, "multi-1")
    quiet = gap(seconds_of(first), 8000)
    out = workdir() / "multichannel.wav"
    run("sox", "-M", str(first), str(quiet), str(quiet), str(out))
    return Sample(out, {"ch1": talk, "ch2": 0, "ch3": 0})
