"""What audio inspection costs, in process: the inspector against sha256 over the same bytes.

    python benchmarks/audio_cost.py            # 173 MB MP3 (6 h), plus VBR and WAV shapes
    python benchmarks/audio_cost.py --quick    # fewer rounds

Also the MP3 bodies ``run.py`` uploads (:func:`make_mp3`, :func:`mp3_1m`): LAME encodes
ten minutes of 16 kHz stereo at 64 kbit/s (FreeSWITCH's shape for Kazoo's default
stereo recordings) without an Info frame, and the frames are repeated behind one ID3v2
tag up to the size asked for: a valid CBR stream of that length, made in seconds
instead of the minutes LAME would take for six hours.

Every file goes under a temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator

#: 16 kHz stereo 64 kbit/s MPEG-2 Layer III: 288 bytes a frame, no padding.
FRAME = 288
SIZE_173 = 173_000_000
BLOCK = 1 << 20
#: An ID3v2.3 tag holding nothing but 128 bytes of padding, as mod_shout leaves it.
#: run.py's load writes a per-upload mark into that padding (bytes 10-26).
ID3_PADDED = b"ID3\x03\x00\x00\x00\x00\x01\x00" + bytes(128)
MARK_AT = 10


def _lame(argv: list[str], raw: bytes) -> bytes:
    with tempfile.TemporaryDirectory(prefix="kzr-bench-lame-") as tmp:
        src, dst = os.path.join(tmp, "in.raw"), os.path.join(tmp, "out.mp3")
        with open(src, "wb") as f:
            f.write(raw)
        subprocess.run(["lame", "--quiet", "-r", "--bitwidth", "16", "--signed",
                        "--little-endian", *argv, src, dst], check=True, timeout=600)
        with open(dst, "rb") as f:
            return f.read()


def _speech_like(seconds: int, rate: int, channels: int) -> bytes:
    """A warbling tone with a little noise (7 s, repeated): something an encoder works at."""
    out = array("h")
    seed = 1
    for i in range(7 * rate):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        v = int(6000 * math.sin(i * 0.07 + 3 * math.sin(i * 0.0005))) + (seed >> 20) - 1024
        out.extend([v] * channels)
    pattern = out.tobytes()
    whole = -(-seconds // 7)
    return (pattern * whole)[: seconds * rate * channels * 2]


@functools.lru_cache(maxsize=2)
def frames_10min(vbr: bool = False) -> bytes:
    """Ten minutes of 16 kHz stereo frames from LAME, no tag and no Info frame."""
    raw = _speech_like(600, 16000, 2)
    mode = ["-V", "5"] if vbr else ["--cbr", "-b", "64"]
    return _lame(["-s", "16", "-m", "s", *mode, "-t"], raw)


def make_mp3(path: str, size: int) -> str:
    """An MP3 of about ``size`` bytes (whole frames) at ``path``: ID3v2, then CBR frames."""
    frames = frames_10min()
    frames = frames[: len(frames) // FRAME * FRAME]
    want = (size - len(ID3_PADDED)) // FRAME * FRAME
    with open(path, "wb") as f:
        f.write(ID3_PADDED)
        left = want
        while left > 0:
            part = frames[:left]
            f.write(part)
            left -= len(part)
    return path


def mp3_1m() -> bytes:
    """About 1 MiB of MP3 (131 s at 64 kbit/s) for the 1 MB load, as one bytes object."""
    frames = frames_10min()
    return ID3_PADDED + frames[: ((1 << 20) - len(ID3_PADDED)) // FRAME * FRAME]


def _blocks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            yield block


def _time(work: Callable[[list[bytes]], object], blocks: list[bytes], rounds: int) -> float:
    took = []
    for _ in range(rounds):
        start = time.perf_counter()
        work(blocks)
        took.append(time.perf_counter() - start)
    return min(took)


def _sha(blocks: list[bytes]) -> object:
    h = hashlib.sha256()
    for b in blocks:
        h.update(b)
    return h.hexdigest()


def _inspect(ext: str) -> Callable[[list[bytes]], object]:
    from kzr_wsgi.audio import Inspector

    def run(blocks: list[bytes]) -> object:
        inspector = Inspector(ext=ext)
        for b in blocks:
            inspector.feed(b)
        return inspector.result()

    return run


def measure(
    name: str, blocks: list[bytes], ext: str, rounds: int, *, per_body: bool = False
) -> dict[str, object]:
    """Best-of-``rounds`` seconds for sha256 and for the inspector over ``blocks``.

    ``per_body``: each block is a whole body of its own (a new inspector and hash each),
    which is what a load of small uploads costs.
    """
    size = sum(map(len, blocks))
    if per_body:
        inspect_one = _inspect(ext)

        def each(work: Callable[[list[bytes]], object]) -> Callable[[list[bytes]], object]:
            return lambda bodies: [work([body]) for body in bodies]

        info = inspect_one(blocks[:1])
        sha = _time(each(_sha), blocks, rounds)
        ins = _time(each(inspect_one), blocks, rounds)
        return {"name": name, "MB": size / 1e6, "sha256 MB/s": size / sha / 1e6,
                "inspect MB/s": size / ins / 1e6, "inspect/sha256": ins / sha,
                "result": f"{info}; {ins / len(blocks) * 1e6:.0f} us an upload"}
    info = _inspect(ext)(blocks)
    sha = _time(_sha, blocks, rounds)
    ins = _time(_inspect(ext), blocks, rounds)
    return {"name": name, "MB": size / 1e6, "sha256 MB/s": size / sha / 1e6,
            "inspect MB/s": size / ins / 1e6, "inspect/sha256": ins / sha, "result": info}


def main(argv: list[str] | None = None) -> int:
    """Print the inspector's throughput beside sha256's for each shape."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    args = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rounds = 3 if args.quick else 5
    tmp = tempfile.mkdtemp(prefix="kzr-bench-audio-")
    rows = []
    try:
        big = make_mp3(os.path.join(tmp, "six-hours.mp3"), SIZE_173)
        blocks = list(_blocks(big))
        rows.append(measure("MP3 CBR 16k stereo 64k, 173 MB (6 h)", blocks, "mp3", rounds))
        del blocks
        one = mp3_1m()
        rows.append(measure("MP3 CBR 16k stereo 64k, 1 MB (one upload's body), x200",
                            [one] * 200, "mp3", rounds, per_body=True))
        vbr = frames_10min(vbr=True)
        rows.append(measure("MP3 VBR -V5 16k stereo, 10 min", [
            vbr[i : i + BLOCK] for i in range(0, len(vbr), BLOCK)], "mp3", rounds))
        tone = _speech_like(600, 16000, 2)
        wav = _wav_header(len(tone), 16000, 2) + tone
        rows.append(measure("WAV 16k stereo 10 min, speech (silence check ends early)", [
            wav[i : i + BLOCK] for i in range(0, len(wav), BLOCK)], "wav", rounds))
        del wav, tone
        wav_head = _wav_header(100 * BLOCK - 44, 16000, 2)
        silent = [wav_head + bytes(BLOCK - len(wav_head))] + [bytes(BLOCK)] * 99
        rows.append(measure("WAV, 100 MB of silence (worst case: every sample read)", silent,
                            "wav", rounds))
        noise = [os.urandom(BLOCK)] * 100
        rows.append(measure("noise named .mp3, 100 MB (given up after 64 KiB)", noise, "mp3",
                            rounds))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"audio inspection in process, best of {rounds}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine)\n")
    print(f"{'shape':<58} {'MB':>6} {'sha256 MB/s':>11} {'inspect MB/s':>12} {'x sha':>6}")
    for r in rows:
        print(f"{r['name']:<58} {r['MB']:>6.0f} {r['sha256 MB/s']:>11.0f} "
              f"{r['inspect MB/s']:>12.0f} {r['inspect/sha256']:>6.2f}")
        print(f"    {r['result']}")
    return 0


def _wav_header(data_size: int, rate: int, channels: int) -> bytes:
    import struct

    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + data_size) + b"WAVE" + b"fmt "
            + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data_size))


if __name__ == "__main__":
    sys.exit(main())

