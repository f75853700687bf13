"""Transcription end to end through ``kzr-wsgi serve --transcribe pocketsphinx``: real
speech by espeak-ng as Kazoo's MP3s (tests/speech_samples.py), transcribed offline by
the background worker, read back through ``ls``, the page's API, ``kzr-wsgi transcript``
and the file beside each recording, and found by the words the engine recognised.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import speech_samples as ss
from servers import Server, serve
from test_pipeline_serve import VIEWER, kzr, rows, upload, viewer_get

from kzr_wsgi.catalog import Catalog, Query, open_catalog
from kzr_wsgi.naming import ANALYSIS_SUFFIX, TRANSCRIPT_SUFFIX

#: How long a test waits for the background worker to transcribe its uploads.
PATIENCE = 300.0


def transcribed(catalog: Catalog, count: int, timeout: float = PATIENCE) -> list[Any]:
    """Wait until ``count`` rows have a transcription that is no longer pending."""
    deadline = time.monotonic() + timeout
    while True:
        found = list(catalog.iter_search(Query(self_test=True, limit=500)))
        if len(found) >= count and all(
                r.transcript is not None and r.transcript.state != "pending" for r in found):
            return found
        assert time.monotonic() < deadline, [(r.call_id, r.analysis, r.transcript)
                                             for r in found]
        time.sleep(0.5)


def beside(doc: dict[str, Any], suffix: str) -> dict[str, Any]:
    location = Path(doc["location"])
    return json.loads((location.parent / (location.name + suffix)).read_bytes())


def inside(t: float, intervals: list[list[int]], slack_ms: int = 400) -> bool:
    ms = t * 1000
    return any(a - slack_ms <= ms <= b + slack_ms for a, b in intervals)


def recognised(text: str) -> str:
    """A word of the transcript long enough to be a real one."""
    words = [w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 5]
    assert words, text
    return max(words, key=len)


@pytest.mark.slow
def test_serve_transcribes_mono_and_stereo_calls_offline(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    with serve(tmp_path, "--transcribe", "pocketsphinx", "--ui", "--viewer",
               ":".join(VIEWER), root=root) as server:
        assert "transcription: pocketsphinx" in server.log()
        upload(server, "stereo", ss.conversation().read())
        upload(server, "mono", ss.monologue().read())
        upload(server, "silent", ss.silent("mp3").read())
        catalog = open_catalog(f"sqlite:///{root / '.kzr' / 'catalog.sqlite3'}")
        try:
            transcribed(catalog, 3)
        finally:
            catalog.close()
        docs = rows(root)
        _check_transcripts(docs)
        _check_reading(server, root, docs)
        _check_search(server, root, docs)
    assert "ended with status" not in server.log()


def _check_transcripts(docs: dict[str, dict[str, Any]]) -> None:
    silent = docs["silent"]["transcript"]
    assert (silent["state"], silent["reason"], silent["chars"]) == ("skipped", "silent", None)
    expected = {"stereo": {"left": "caller", "right": "callee"}, "mono": {"mono": "all"}}
    for name, speakers in expected.items():
        state = docs[name]["transcript"]
        assert (state["state"], state["attempts"], state["engine"], state["model"],
                state["language"], state["error"]) == ("done", 1, "pocketsphinx", "en-us",
                                                       "en", None), name
        stored = beside(docs[name], TRANSCRIPT_SUFFIX)
        assert state["chars"] == len(stored["text"]) > 20, name
        analysis = beside(docs[name], ANALYSIS_SUFFIX)
        duration = analysis["duration_ms"] / 1000
        assert stored["segments"] and stored["words"], name
        channels = set()
        for segment in stored["segments"]:
            assert 0 <= segment["start"] < segment["end"] <= duration, (name, segment)
            assert segment["speaker"] == speakers[segment["channel"]], (name, segment)
            # Each segment lies where its own channel had speech.
            middle = (segment["start"] + segment["end"]) / 2
            assert inside(middle, analysis["speech"][segment["channel"]]), (name, segment)
            channels.add(segment["channel"])
        assert channels == set(speakers), name
        for word in stored["words"]:
            assert 0 <= word["start"] <= word["end"] <= duration, (name, word)


def _check_reading(server: Server, root: Path, docs: dict[str, dict[str, Any]]) -> None:
    stereo = docs["stereo"]
    stored = beside(stereo, TRANSCRIPT_SUFFIX)
    status, body = viewer_get(server, f"/ui/api/recordings/{stereo['id']}/transcript")
    assert status == 200
    got = json.loads(body)
    assert (got["engine"], got["model"], got["language"]) == ("pocketsphinx", "en-us", "en")
    assert [(s["start"], s["end"], s["channel"], s["speaker"], s["text"])
            for s in got["segments"]] == [
        (s["start"], s["end"], s["channel"], s["speaker"], s["text"])
        for s in stored["segments"]]
    status, body = viewer_get(server, f"/ui/api/recordings/{stereo['id']}/transcript"
                                      "?format=vtt")
    assert status == 200 and body.startswith(b"WEBVTT\n")
    assert body.count(b" --> ") == len(stored["segments"])
    assert b"<v caller>" in body and b"<v callee>" in body
    status, _ = viewer_get(server, f"/ui/api/recordings/{stereo['id']}/transcript?format=x")
    assert status == 400
    # No transcript: 404, as for a recording that does not exist.
    status, _ = viewer_get(server, f"/ui/api/recordings/{docs['silent']['id']}/transcript")
    assert status == 404
    text = kzr("transcript", stereo["id"], "--root", str(root), "--format", "txt")
    assert text.count("\n") == len(stored["segments"])
    assert "caller]" in text and "callee]" in text


def _check_search(server: Server, root: Path, docs: dict[str, dict[str, Any]]) -> None:
    for name in ("stereo", "mono"):
        stored = beside(docs[name], TRANSCRIPT_SUFFIX)
        word = recognised(stored["text"])
        holding = [s for s in stored["segments"] if word in s["text"].lower().split()]
        found = rows(root, "--text", word)
        assert docs[name]["id"] in {d["id"] for d in found.values()}, (name, word)
        matches = found[name]["matches"]
        assert matches and matches[0]["start"] == holding[0]["start"], (name, word)
        assert matches[0]["speaker"] == holding[0]["speaker"]
        status, body = viewer_get(server, f"/ui/api/recordings?text={word}")
        assert status == 200
        items = {i["id"]: i for i in json.loads(body)["items"]}
        assert items[docs[name]["id"]]["matches"][0]["start"] == holding[0]["start"]
        assert items[docs[name]["id"]]["transcript"]["state"] == "done"
