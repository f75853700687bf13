"""A transcription plug-in: spot a fixed list of phrases, offline, with PocketSphinx.

Open transcription of phone audio with PocketSphinx is poor; recognising which of a
few known phrases was said is far better (the decoder only has to choose between
them). This engine reports, for each utterance, the phrase of ``phrases`` it sounds
most like, with word times: enough to find the calls where someone said "cancel my
subscription". Its limit: every utterance is heard as one of the phrases, so it
finds phrases that were said, and also reports phrases for speech that was
something else. Use it to narrow a search, not as a transcript.

It is a subclass of the built-in ``pocketsphinx`` engine that loads a JSGF grammar in
:meth:`prepare`; any class deriving from :class:`kzr_wsgi.transcribe.Transcriber`
works the same way. Register it under the entry-point group
``kzr_wsgi.transcribers`` in the plug-in's ``pyproject.toml``::

    [project.entry-points."kzr_wsgi.transcribers"]
    phrases = "transcriber_plugin:PhraseSpotter"

then ``kzr-wsgi serve --transcribe phrases`` with, in the configuration file::

    [transcribe]
    engine = "phrases"
    phrases = ["cancel my subscription", "speak to an agent", "i want a refund"]

Try it on a WAV file (``pip install 'kzr_wsgi[transcribe]' soundfile``)::

    python examples/transcriber_plugin.py call.wav "cancel my subscription" "i want a refund"
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from typing import Any

from kzr_wsgi.transcribe import Settings
from kzr_wsgi.transcribe.sphinx import PocketsphinxTranscriber

#: Phrases spotted when the settings name none.
DEFAULT_PHRASES = ("cancel my subscription", "speak to an agent", "i want a refund",
                   "my card was declined")


class PhraseSpotter(PocketsphinxTranscriber):
    """Which of the ``phrases`` setting (a list of strings) each utterance is."""

    name = "phrases"

    def __init__(self, settings: Settings) -> None:
        phrases = settings.option("phrases", DEFAULT_PHRASES)
        if isinstance(phrases, str) or not phrases or not all(
                isinstance(p, str) and p.strip() for p in phrases):
            raise ValueError("phrases: a list of phrases, e.g. [\"cancel my subscription\"]")
        # Lower case, letters and apostrophes: the dictionary's spelling.
        self.phrases = [" ".join(re.findall(r"[a-z']+", p.lower())) for p in phrases]
        super().__init__(settings)

    @property
    def model(self) -> str:
        """The bundled model and which phrases: a new list is a new model."""
        digest = hashlib.sha256("\n".join(self.phrases).encode()).hexdigest()[:12]
        return f"en-us+phrases-{digest}"

    def prepare(self, decoder: Any) -> None:
        """Load the phrases as a JSGF grammar and search with it instead of the LM."""
        unknown = sorted({w for p in self.phrases for w in p.split()
                          if decoder.lookup_word(w) is None})
        if unknown:
            raise ValueError(f"phrases: words not in the dictionary: {', '.join(unknown)}")
        rule = " | ".join(self.phrases)
        decoder.add_jsgf_string("phrases", f"#JSGF V1.0;\ngrammar phrases;\n"
                                           f"public <phrase> = {rule} ;\n")
        decoder.activate_search("phrases")


def main(argv: list[str]) -> None:
    """Spot ``argv[1:]`` (or the defaults) in the WAV file ``argv[0]``; print JSON."""
    import soundfile

    samples, rate = soundfile.read(argv[0], dtype="float32", always_2d=True)
    engine = PhraseSpotter(Settings(engine="phrases",
                                    extra=(("phrases", argv[1:] or DEFAULT_PHRASES),)))
    transcript = engine.transcribe(samples[:, 0], rate, "en").on_channel("mono")
    print(json.dumps(transcript.to_json({"mono": "all"}), indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
