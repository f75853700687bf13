"""The ``pocketsphinx`` engine: offline speech to text with CMU PocketSphinx 5.

Nothing leaves the machine and nothing is downloaded: the US English acoustic model,
language model and dictionary come inside the ``pocketsphinx`` wheel (extra
``transcribe``). It is the fallback where no better engine is reachable, and what the
tests use end to end. **Its accuracy on 8 kHz phone audio is poor** (see the manual's
transcripts page for measured numbers): a whisper-class engine through ``openai`` is
the production choice.

A piece is resampled to 16 kHz (the model's rate), split into utterances by
PocketSphinx's own voice activity detector (:class:`pocketsphinx.Segmenter`), and each
utterance decoded as a whole; each becomes a segment, its words timed from the
decoder's word segmentation (``Decoder.seg()``, in frames of 1/``frate`` s). Fillers
(``<s>``, ``</s>``, ``<sil>``, ``[NOISE]``…) are dropped, and alternate pronunciations
(``to(2)``) are written as the word.

One decoder per engine, used by one thread at a time (a lock): decoding is CPU-bound,
so more threads would not make it faster.
"""

from __future__ import annotations

import io
import re
import threading
from typing import Any

from .engine import Transcriber
from .errors import EngineRejected, EngineUnavailable
from .model import Segment, Transcript, Word
from .pcm import pcm16
from .settings import ENGINE_RATE, Settings

#: The model inside the wheel, and the only one this engine runs.
MODEL = "en-us"
#: The languages the model is for (``None``: not given, taken as English).
LANGUAGES = frozenset({"en", "en-us", "eng", "english"})
#: A decoder token that is not a word: ``<s>``, ``</s>``, ``<sil>``, ``[NOISE]``, ``++UH++``.
_FILLER = re.compile(r"^(<.*>|\[.*\]|\+\+.*\+\+)$")
#: An alternate pronunciation's suffix: ``to(2)``.
_ALTERNATE = re.compile(r"\(\d+\)$")


class PocketsphinxTranscriber(Transcriber):
    """Offline English transcription. Settings: ``model`` (unset or ``en-us``),
    ``language`` (unset or English).

    Raises ``ValueError`` for another model or language, and
    :class:`~kzr_wsgi.transcribe.errors.EngineUnavailable` when pocketsphinx is not
    installed.
    """

    name = "pocketsphinx"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        if settings.model not in (None, "", MODEL):
            raise ValueError(f"the pocketsphinx engine has one model, {MODEL!r}, not "
                             f"{settings.model!r}")
        if settings.language is not None and settings.language.lower() not in LANGUAGES:
            raise ValueError(f"the pocketsphinx engine's model is English, not "
                             f"{settings.language!r}")
        try:
            import pocketsphinx
        except ImportError as exc:
            raise EngineUnavailable("the pocketsphinx engine needs the 'transcribe' extra: "
                                    f"pip install 'kzr_wsgi[transcribe]' ({exc})") from exc
        self._ps = pocketsphinx
        # loglevel FATAL: the decoder's own chatter (model paths, timings) stays off stderr.
        self._decoder = pocketsphinx.Decoder(samprate=ENGINE_RATE, loglevel="FATAL")
        self._frate = int(self._decoder.config["frate"])
        self._lock = threading.Lock()
        self.prepare(self._decoder)

    def prepare(self, decoder: Any) -> None:
        """Change the decoder before first use (a subclass's hook: e.g. add and activate
        a JSGF grammar, as the phrase-spotting example plug-in does). Does nothing here."""

    @property
    def model(self) -> str:
        """``en-us``, the wheel's model."""
        return MODEL

    def transcribe(self, samples: Any, rate: int, language: str | None) -> Transcript:
        """Decode one piece (see :class:`Transcriber`); raises ``EngineRejected`` for a
        language other than English."""
        if language is not None and language.lower() not in LANGUAGES:
            raise EngineRejected(f"pocketsphinx has only an English model, not {language!r}")
        pcm = pcm16(samples, rate).astype("<i2", copy=False).tobytes()
        segments: list[Segment] = []
        words: list[Word] = []
        with self._lock:
            segmenter = self._ps.Segmenter(sample_rate=ENGINE_RATE)
            for utterance in segmenter.segment(io.BytesIO(pcm)):
                said = self._decode(utterance.pcm, float(utterance.start_time))
                if said:
                    segments.append(Segment(said[0].start, said[-1].end,
                                            " ".join(w.word for w in said)))
                    words.extend(said)
        return Transcript("en", self.name, self.model, tuple(segments), tuple(words))

    def _decode(self, pcm: bytes, offset: float) -> list[Word]:
        decoder = self._decoder
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        if decoder.hyp() is None:
            return []
        out: list[Word] = []
        for seg in decoder.seg():
            if _FILLER.match(seg.word):
                continue
            out.append(Word(offset + seg.start_frame / self._frate,
                            offset + (seg.end_frame + 1) / self._frate,  # end is inclusive
                            _ALTERNATE.sub("", seg.word)))
        return out


__all__ = ["LANGUAGES", "MODEL", "PocketsphinxTranscriber"]
