"""What the ``pocketsphinx`` engine does with phone audio: its speed and its accuracy.

    python benchmarks/transcribe_bench.py            # 12 sentences x 3 voices, 8 and 16 kHz
    python benchmarks/transcribe_bench.py --quick    # 4 sentences x 1 voice

Speech is espeak-ng's (tests/speech.py), as a call would carry it: 8 kHz, each sentence
with half a second of silence either side, through the engine exactly as the pipeline
calls it (resampled to 16 kHz by soxr, cut into utterances, decoded). The same speech
sampled at 16 kHz, never band-limited to the phone's 4 kHz, runs beside it.

* speed: seconds of audio per CPU-second of this process (``time.process_time``: the
  decoder is single-threaded and in-process, so other load on the machine does not
  count against it, though it still slows the wall clock);
* accuracy: word error rate (substitutions, insertions and deletions over the reference's
  words) and how many of the reference's words the engine wrote at all.

The load average before and after is printed with the numbers.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

SENTENCES = [
    "I would like to cancel my subscription please",
    "my account number is not working",
    "can you call me back tomorrow morning",
    "the weather today is sunny and warm",
    "please send the invoice to my office",
    "I want to speak to a manager",
    "thank you for calling how can I help you today",
    "my internet has been down since last night",
    "I need to change the address on my account",
    "the payment did not go through yesterday",
    "could you repeat that please",
    "I have been waiting on hold for twenty minutes",
]
VOICES = ["en-us+f2", "en-us+m3", "en"]


def run(sentences: list[str], voices: list[str], rate: int) -> dict[str, float]:
    """Transcribe each sentence in each voice at ``rate``; the totals."""
    import numpy as np
    from speech import placed, speak, word_errors

    from kzr_wsgi.transcribe import Settings, create

    engine = create(Settings(engine="pocketsphinx"))
    audio = cpu = errors = words = found = 0.0
    for voice in voices:
        for sentence in sentences:
            speech = speak(sentence, rate, voice=voice)
            samples = placed([(0.5, speech)], len(speech) / rate + 1.0, rate)
            started = time.process_time()
            said = engine.transcribe(samples.astype(np.float32), rate, "en").text
            cpu += time.process_time() - started
            audio += len(samples) / rate
            e, n = word_errors(sentence, said)
            errors, words = errors + e, words + n
            wanted = collections.Counter(sentence.lower().split())
            found += sum((wanted & collections.Counter(said.split())).values())
            print(f"  {rate // 1000} kHz {voice:9} {sentence!r}\n{'':18}-> {said!r}")
    return {"audio_s": audio, "cpu_s": cpu, "speed": audio / cpu, "wer": errors / words,
            "found": found, "words": words}


def main() -> None:
    """Run both rates; print each sentence's result, then the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 sentences, 1 voice")
    args = parser.parse_args()
    sentences = SENTENCES[:4] if args.quick else SENTENCES
    voices = VOICES[:1] if args.quick else VOICES
    load_before = os.getloadavg()
    results = {rate: run(sentences, voices, rate) for rate in (8000, 16000)}
    load_after = os.getloadavg()
    print(f"\npocketsphinx, {len(sentences)} sentences x {len(voices)} voices (espeak-ng)")
    print(f"{'audio':>8} {'audio s':>8} {'CPU s':>7} {'audio s/CPU s':>14} {'WER':>6} "
          f"{'words written':>14}")
    for rate, r in results.items():
        print(f"{rate // 1000:>5} kHz {r['audio_s']:8.1f} {r['cpu_s']:7.1f} {r['speed']:14.2f} "
              f"{r['wer']:6.2f} {int(r['found']):>6} of {int(r['words']):<5}")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} "
          f"({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
