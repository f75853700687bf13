"""What the analysis costs: seconds of audio analysed per CPU-second, and its peak memory.

    python benchmarks/analysis_bench.py            # 10 min of each shape, 3 rounds, a 6 h file
    python benchmarks/analysis_bench.py --quick    # 2 min, 1 round, a 1 h file

Throughput, side by side in one run, for the two shapes FreeSWITCH writes for Kazoo
(8 kHz mono 16 kbit/s, 16 kHz stereo 64 kbit/s MP3), of a conversation by espeak-ng
(the two sides taking turns; the mono shape is their mix):

* ``decode``: libsndfile's decoding into float32 blocks alone (the analysis's decoder);
* ``decode+vad``: that, plus webrtcvad on every 30 ms frame of every channel at the
  file's own rate: "decoding and a voice detector", the baseline;
* ``analysis``: :func:`kzr_wsgi.analysis.analyse`, everything it does.

Each figure is the median of the rounds, in CPU seconds of this process
(``time.process_time``), printed with ``os.getloadavg()``: the machine is shared.

Peak memory: a child process imports the analysis, analyses a short file (so the
libraries are loaded), resets its peak RSS (``/proc/self/clear_refs``), notes its RSS
(idle), analyses a 6-hour 16 kHz stereo MP3 and writes both JSON documents the way a
worker would, then reports its peak RSS (``VmHWM``): the script prints the peak above
idle. The long files are made by repeating LAME's frames behind one ID3v2 tag, as
``audio_cost.py`` does. Everything goes under a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import webrtcvad

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests")]

import audio_samples  # noqa: E402
import speech_samples as ss  # noqa: E402
from audio_cost import ID3_PADDED  # noqa: E402

from kzr_wsgi.analysis import DEFAULTS, Analysed, analyse, open_audio  # noqa: E402

#: What the analysis is asked to do at least, in seconds of audio per CPU-second.
TARGETS = {"8 kHz mono": 1000.0, "16 kHz stereo": 300.0}
#: Peak memory above idle allowed for a 6-hour stereo file.
MEMORY_TARGET_MB = 64


def frames_of(wav: Path, rate: int, channels: int) -> bytes:
    """LAME's frames for ``wav`` at FreeSWITCH's bitrate: no tag, no Info frame."""
    return audio_samples.lame_mp3(ss.pcm16(wav), rate=rate, channels=channels, id3=False,
                                  info=False)


def long_mp3(frames: bytes, frame_bytes: int, seconds_of_frames: float, seconds: float,
             path: Path) -> Path:
    """``frames`` repeated behind one ID3v2 tag up to ``seconds`` of audio."""
    frames = frames[: len(frames) // frame_bytes * frame_bytes]
    copies = max(1, round(seconds / seconds_of_frames))
    with path.open("wb") as out:
        out.write(ID3_PADDED)
        for _ in range(copies):
            out.write(frames)
    return path


def shapes(seconds: float) -> dict[str, tuple[Path, bytes, int, float]]:
    """name -> (an MP3 of about ``seconds``, its frames, frame size, frames' duration)."""
    stereo = ss.workdir() / "conversation.wav"
    ss.conversation()  # makes conversation.wav
    mono = ss.workdir() / "conversation-8k.wav"
    ss.run("sox", str(stereo), "-r", "8000", str(mono), "remix", "1,2")
    out = {}
    for name, wav, rate, channels, frame_bytes in (
            ("8 kHz mono", mono, 8000, 1, 144), ("16 kHz stereo", stereo, 16000, 2, 288)):
        frames = frames_of(wav, rate, channels)
        length = len(frames) // frame_bytes * 576 / rate
        path = long_mp3(frames, frame_bytes, length, seconds,
                        ss.workdir() / f"bench-{rate}-{channels}.mp3")
        out[name] = (path, frames, frame_bytes, length)
    return out


def decode_only(path: Path) -> int:
    decoder = open_audio(path)
    assert not isinstance(decoder, type(None)) and hasattr(decoder, "blocks")
    with decoder:  # type: ignore[union-attr]
        for _ in decoder.blocks():  # type: ignore[union-attr]
            pass
        return decoder.frames  # type: ignore[union-attr]


def decode_and_vad(path: Path) -> int:
    """The baseline: every 30 ms frame of every channel to webrtcvad, at the file's rate."""
    decoder = open_audio(path)
    with decoder:  # type: ignore[union-attr]
        rate, channels = decoder.info.sample_rate, decoder.info.channels  # type: ignore[union-attr]
        size = rate * 30 // 1000
        vads = [webrtcvad.Vad(DEFAULTS.vad_mode) for _ in range(channels)]
        carry = np.zeros((0, channels), dtype=np.float32)
        for block in decoder.blocks():  # type: ignore[union-attr]
            data = np.concatenate((carry, block))
            whole = len(data) // size * size
            pcm = (data[:whole].T * 32767).astype(np.int16)
            for vad, row in zip(vads, pcm, strict=True):
                view = memoryview(row.tobytes())
                for at in range(0, whole * 2, size * 2):
                    vad.is_speech(view[at : at + size * 2], rate)
            carry = data[whole:].copy()
        return decoder.frames  # type: ignore[union-attr]


def analysis(path: Path) -> int:
    found = analyse(path)
    assert isinstance(found, Analysed)
    return found.result.duration_ms * found.result.sample_rate // 1000


def throughput(work: Callable[[Path], int], path: Path, rate: int, rounds: int) -> float:
    """Median seconds of audio per CPU-second of ``work`` over ``rounds``."""
    speeds = []
    for _ in range(rounds):
        start = time.process_time()
        frames = work(path)
        speeds.append(frames / rate / (time.process_time() - start))
    return statistics.median(speeds)


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


#: Run in a child process: what analysing one long file costs in memory.
CHILD = textwrap.dedent("""
    import json, sys, time
    from kzr_wsgi.analysis import analyse

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    analyse(sys.argv[1])                      # warm-up: every library loaded
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                          # reset the peak RSS to the current RSS
    idle = status("VmRSS")
    start = time.process_time()
    found = analyse(sys.argv[2])
    text = json.dumps(found.result.to_json()), json.dumps(found.peaks.to_json())
    cpu = time.process_time() - start
    print(json.dumps({"idle": idle, "peak": status("VmHWM"), "cpu": cpu,
                      "audio": found.result.duration_ms / 1000,
                      "json_bytes": sum(map(len, text))}))
""")


def memory(short: Path, long: Path) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(short), str(long)],
                          capture_output=True, text=True, check=True, timeout=3600,
                          env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    """Print throughput beside its baselines, and peak memory; 1 if a target is missed."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 min files, 1 round, 1 h file")
    args = ap.parse_args(argv)
    seconds, rounds, hours = (120.0, 1, 1.0) if args.quick else (600.0, 3, 6.0)
    made = shapes(seconds)
    missed = []
    print(f"{'shape':16s} {'decode':>9s} {'decode+vad':>11s} {'analysis':>9s} "
          f"{'analysis/(decode+vad)':>22s}  target  load average")
    for name, (path, _, _, _) in made.items():
        rate = 8000 if name.startswith("8") else 16000
        analysis(path)  # warm-up
        speeds = [throughput(work, path, rate, rounds)
                  for work in (decode_only, decode_and_vad, analysis)]
        target = TARGETS[name]
        if speeds[2] < target:
            missed.append(name)
        print(f"{name:16s} {speeds[0]:8.0f}x {speeds[1]:10.0f}x {speeds[2]:8.0f}x "
              f"{speeds[2] / speeds[1]:22.2f}  {target:5.0f}x  {load()}")
    path, frames, frame_bytes, length = made["16 kHz stereo"]
    long = long_mp3(frames, frame_bytes, length, hours * 3600, ss.workdir() / "long.mp3")
    found = memory(path, long)
    above = (found["peak"] - found["idle"]) / 2**20
    print(f"memory: {found['audio'] / 3600:.2f} h of 16 kHz stereo MP3 "
          f"({long.stat().st_size / 1e6:.0f} MB): idle RSS {found['idle'] / 2**20:.1f} MB, "
          f"peak {found['peak'] / 2**20:.1f} MB, {above:.1f} MB above idle "
          f"(target {MEMORY_TARGET_MB} MB); {found['audio'] / found['cpu']:.0f}x realtime; "
          f"JSON {found['json_bytes'] / 1e6:.1f} MB  load average {load()}")
    if above > MEMORY_TARGET_MB:
        missed.append("memory")
    if missed:
        print("missed:", ", ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
