"""The registry, plug-ins (the example one registered two ways, nothing installed), and the
``pocketsphinx`` engine on real speech: espeak-ng's voice at 8 kHz, as phone audio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest
import soundfile
from speech import placed, speak

from kzr_wsgi.transcribe import (
    ENTRY_POINT_GROUP,
    EngineRejected,
    EngineUnavailable,
    Settings,
    Transcriber,
    create,
    engine_class,
    engine_names,
    merge_channels,
    transcribe_channel,
)
from kzr_wsgi.transcribe.engine import plugin_entry_points
from kzr_wsgi.transcribe.sphinx import PocketsphinxTranscriber

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RATE = 8000
LEFT = "can you call me back tomorrow morning"
RIGHT = "I want to speak to a manager"


@pytest.fixture(scope="module")
def sphinx() -> PocketsphinxTranscriber:
    engine = create(Settings(engine="pocketsphinx"))
    assert isinstance(engine, PocketsphinxTranscriber)
    return engine


@pytest.fixture
def examples_on_path() -> Iterator[None]:
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield
    finally:
        sys.path.remove(str(EXAMPLES))
        sys.modules.pop("transcriber_plugin", None)


def ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


# -- the registry ------------------------------------------------------------------------


def test_the_built_in_engines_are_known_by_name() -> None:
    assert engine_names([]) == ["openai", "pocketsphinx"]
    assert engine_class("pocketsphinx", []) is PocketsphinxTranscriber
    with pytest.raises(EngineUnavailable, match="no transcription engine 'whisper' "
                                                "\\(known: openai, pocketsphinx\\)"):
        engine_class("whisper", [])


def test_a_plug_in_given_as_an_entry_point(examples_on_path: None) -> None:
    plugins = [ep("phrases", "transcriber_plugin:PhraseSpotter")]
    assert engine_names(plugins) == ["openai", "pocketsphinx", "phrases"]
    cls = engine_class("phrases", plugins)
    assert issubclass(cls, Transcriber) and cls.__name__ == "PhraseSpotter"
    engine = create(Settings(engine="phrases", extra=(("phrases", ["cancel my subscription",
                                                                   "speak to an agent"]),)),
                    plugins)
    assert engine.name == "phrases" and engine.model.startswith("en-us+phrases-")


def test_a_plug_in_installed_as_a_distribution_is_found(tmp_path: Path,
                                                         examples_on_path: None) -> None:
    # What `pip install` of a plug-in leaves on sys.path: a .dist-info with entry_points.txt
    info = tmp_path / "kzr_phrases-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kzr-phrases\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nphrases = transcriber_plugin:PhraseSpotter\n")
    sys.path.insert(0, str(tmp_path))
    try:
        assert "phrases" in [p.name for p in plugin_entry_points()]
        assert "phrases" in engine_names()
        assert engine_class("phrases").__name__ == "PhraseSpotter"
    finally:
        sys.path.remove(str(tmp_path))


def test_the_example_plug_in_spots_a_phrase_in_real_speech(examples_on_path: None) -> None:
    phrases = ["cancel my subscription", "speak to an agent", "i want a refund"]
    engine = create(Settings(engine="phrases", extra=(("phrases", phrases),)),
                    [ep("phrases", "transcriber_plugin:PhraseSpotter")])
    audio = placed([(0.5, speak("I want a refund")), (4.0, speak("speak to an agent"))], 7.0)
    t = engine.transcribe(audio, RATE, "en")
    assert [s.text for s in t.segments] == ["i want a refund", "speak to an agent"]
    assert 0.3 <= t.segments[0].start < t.segments[0].end < 3.8 <= t.segments[1].start


def test_the_example_plug_in_runs_as_a_script_on_a_wav_file(tmp_path: Path) -> None:
    wav = tmp_path / "call.wav"
    soundfile.write(wav, placed([(0.5, speak("cancel my subscription"))], 3.5), RATE,
                    subtype="PCM_16")
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "transcriber_plugin.py"), str(wav),
         "cancel my subscription", "i want a refund"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(EXAMPLES.parent)})
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["engine"] == "phrases" and doc["text"] == "cancel my subscription"
    assert [w["word"] for w in doc["words"]] == ["cancel", "my", "subscription"]
    assert {s["speaker"] for s in doc["segments"]} == {"all"}


@pytest.mark.parametrize("value, message", [
    ("transcriber_plugin:nothing_here", "failed to load: AttributeError"),
    ("no_such_module_kzr:Thing", "failed to load: ModuleNotFoundError"),
    ("transcriber_plugin:DEFAULT_PHRASES", "is not a subclass"),
    ("transcriber_plugin:main", "is not a subclass"),
], ids=["no-attribute", "no-module", "not-a-class", "a-function"])
def test_a_broken_plug_in_is_refused_naming_it(examples_on_path: None, value: str,
                                               message: str) -> None:
    with pytest.raises(EngineUnavailable, match=message):
        engine_class("phrases", [ep("phrases", value)])


def test_two_plug_ins_of_one_name_and_a_built_in_name_taken(examples_on_path: None) -> None:
    twice = [ep("x", "transcriber_plugin:PhraseSpotter"), ep("x", "other:Thing")]
    with pytest.raises(EngineUnavailable, match="two plug-ins call themselves 'x'"):
        engine_class("x", twice)
    # a plug-in cannot replace a built-in: the built-in is what the name gives
    assert engine_class("openai", [ep("openai", "transcriber_plugin:PhraseSpotter")]
                        ).__name__ == "OpenAITranscriber"


def test_a_plug_ins_bad_setting_fails_at_construction(examples_on_path: None) -> None:
    plugins = [ep("phrases", "transcriber_plugin:PhraseSpotter")]
    with pytest.raises(ValueError, match="not in the dictionary: zqxwv"):
        create(Settings(engine="phrases", extra=(("phrases", ["say zqxwv"]),)), plugins)


# -- pocketsphinx on real speech ---------------------------------------------------------


def test_pocketsphinx_hears_a_sentence_with_times_inside_the_audio(
        sphinx: PocketsphinxTranscriber) -> None:
    speech = speak(LEFT)
    audio = placed([(1.0, speech)], 1.0 + len(speech) / RATE + 1.0)
    t = sphinx.transcribe(audio, RATE, None)
    assert (t.engine, t.model, t.language) == ("pocketsphinx", "en-us", "en")
    assert t.segments and t.words
    duration = len(audio) / RATE
    for s in t.segments:
        assert 0.8 <= s.start < s.end <= duration
        inside = [w for w in t.words if s.start <= w.start and w.end <= s.end]
        assert " ".join(w.word for w in inside) == s.text
    assert all(a.end <= b.start for a, b in zip(t.words, t.words[1:], strict=False))
    # the engine is poor on phone audio, but some words come through, the same each time
    assert {"call", "me", "back"} <= {w.word for w in t.words}, t.text
    again = sphinx.transcribe((audio * 32767).astype(np.int16), RATE, None)
    assert again.text == t.text


def test_pocketsphinx_finds_nothing_in_silence(sphinx: PocketsphinxTranscriber) -> None:
    t = sphinx.transcribe(np.zeros(3 * RATE, dtype=np.float32), RATE, None)
    assert t.segments == () and t.words == ()


def test_two_channels_each_with_its_own_speaker(sphinx: PocketsphinxTranscriber) -> None:
    left_speech, right_speech = speak(LEFT), speak(RIGHT)
    left = placed([(0.5, left_speech)], 9.0)
    right = placed([(5.0, right_speech)], 9.0)

    def speech_ms(start: float, samples: np.ndarray) -> list[tuple[int, int]]:
        return [(int(start * 1000), int((start + len(samples) / RATE) * 1000))]

    parts = {"left": transcribe_channel(sphinx, left, RATE, speech_ms(0.5, left_speech),
                                        language="en"),
             "right": transcribe_channel(sphinx, right, RATE, speech_ms(5.0, right_speech),
                                         language="en")}
    doc = merge_channels(parts).to_json({"left": "caller", "right": "callee"})
    assert {s["speaker"] for s in doc["segments"]} == {"caller", "callee"}
    for s in doc["segments"]:
        if s["speaker"] == "caller":
            assert 0.3 <= s["start"] < s["end"] <= 0.5 + len(left_speech) / RATE + 0.3
        else:
            assert 4.8 <= s["start"] < s["end"] <= 5.0 + len(right_speech) / RATE + 0.3
    assert "manager" in [w["word"] for w in doc["words"] if w["speaker"] == "callee"]
    assert [s["start"] for s in doc["segments"]] == sorted(s["start"] for s in doc["segments"])


def test_pocketsphinx_is_english_only(sphinx: PocketsphinxTranscriber) -> None:
    with pytest.raises(EngineRejected, match="only an English model"):
        sphinx.transcribe(np.zeros(RATE, dtype=np.float32), RATE, "de")
    with pytest.raises(ValueError, match="English"):
        create(Settings(engine="pocketsphinx", language="fr"))
    with pytest.raises(ValueError, match="one model"):
        create(Settings(engine="pocketsphinx", model="large-v3"))


def test_threads_share_one_decoder_safely(sphinx: PocketsphinxTranscriber) -> None:
    audio = placed([(0.3, speak(RIGHT))], 3.5)
    alone = sphinx.transcribe(audio, RATE, None).text
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(
        sphinx.transcribe(audio, RATE, None).text)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == [alone] * 3
