"""The transcript routes of the page: ``{ui}/api/recordings/{id}/transcript`` in each
format, scoped like the audio, on a share link too; an item's ``transcript``, its error
generic to a scoped viewer. Transcripts are put in the catalog as ``reindex`` puts them
back from their files (no engine here: the pipeline's tests run one)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from ui_fixtures import ACME, OPS, UIWorld, basic

from kzr_wsgi.catalog.jobs import INSERT_JOB
from kzr_wsgi.catalog.transcripts import TRANSCRIBE, queue_params, restore
from kzr_wsgi.ui import Viewer

SHARER = Viewer("sharer", "sharer-pw", None, share=True)
HOSTILE = "bye <img src=x onerror=alert(1)> & --> 00:00:09.000 --> 00:00:10.000"
DOC = {"language": "en", "engine": "openai", "model": "large-v3", "text": "",
       "segments": [
           {"start": 0.5, "end": 1.75, "channel": "left", "speaker": "x", "text": "hello"},
           {"start": 2.0, "end": 3.0, "channel": "right", "speaker": "x", "text": HOSTILE}],
       "words": []}


@pytest.fixture
def world(tmp_path: Path) -> UIWorld:
    return UIWorld(tmp_path / "rec", viewers=(OPS, ACME, SHARER))


def transcribed(world: UIWorld, call_id: str, account: str) -> str:
    row = world.upload(call_id, account_id=account)
    assert restore(world.catalog, row["id"], row["sha256"], json.dumps(DOC).encode())
    return str(row["id"])


def test_each_format_scoped_like_the_audio(world: UIWorld) -> None:
    acme = transcribed(world, "acme-1", "acct-acme")
    beta = transcribed(world, "beta-1", "acct-beta")
    bare = world.upload("acme-2", account_id="acct-acme")["id"]
    reply = world.get(f"/api/recordings/{acme}/transcript")
    assert reply.status_code == 200 and reply.headers["Cache-Control"] == "no-store"
    got = reply.json
    assert (got["engine"], got["model"], got["language"]) == ("openai", "large-v3", "en")
    # Speakers are derived when read, whatever the file said.
    assert [(s["channel"], s["speaker"], s["start"], s["end"]) for s in got["segments"]] == [
        ("left", "caller", 0.5, 1.75), ("right", "callee", 2.0, 3.0)]
    vtt = world.get(f"/api/recordings/{acme}/transcript?format=vtt")
    assert vtt.status_code == 200 and vtt.headers["Content-Type"].startswith("text/vtt")
    assert vtt.text.count(" --> ") == 2 and "<img" not in vtt.text
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; --&gt; 00:00:09.000 --&gt;" in vtt.text
    assert world.get(f"/api/recordings/{acme}/transcript?format=srt").text.count(" --> ") == 2
    assert world.get(f"/api/recordings/{acme}/transcript?format=txt").text.startswith(
        "[00:00:00.500 caller] hello\n")
    assert world.get(f"/api/recordings/{acme}/transcript?format=pdf").status_code == 400
    # A scoped viewer: its own account's, not another's (404 as for a missing one).
    assert world.get(f"/api/recordings/{acme}/transcript", ACME).status_code == 200
    assert world.get(f"/api/recordings/{beta}/transcript", ACME).status_code == 404
    assert world.get(f"/api/recordings/{beta}/transcript", None).status_code == 401
    # No transcript yet: 404.
    assert world.get(f"/api/recordings/{bare}/transcript").status_code == 404


def test_a_share_link_serves_the_transcript(world: UIWorld) -> None:
    acme = transcribed(world, "acme-1", "acct-acme")
    made = world.client.post(f"/ui/api/recordings/{acme}/shares",
                             headers=basic("sharer", "sharer-pw"), json={"expires_in": "2h"})
    assert made.status_code == 201
    link = urlsplit(made.json["url"]).path
    item = world.client.get(link + "/api").json
    assert item["parts"]["transcript"] == link + "/transcript"
    assert item["transcript"]["state"] == "done"
    reply = world.client.get(link + "/transcript?format=txt")
    assert reply.status_code == 200 and "caller] hello" in reply.text


def test_a_failed_transcription_tells_only_unscoped_viewers_why(world: UIWorld) -> None:
    row = world.upload("acme-1", account_id="acct-acme")
    params = queue_params(row["id"], row["sha256"], "upload", 0)
    world.catalog.execute(INSERT_JOB, params)
    world.catalog.execute(
        "UPDATE kzr_jobs SET state = 'failed', attempts = 5, error = :error"
        " WHERE row_id = :id AND job = :job",
        {"error": "HTTP 500 from https://gpu1:8000/v1: CUDA out of memory", "id": row["id"],
         "job": TRANSCRIBE})
    ops = world.get(f"/api/recordings/{row['id']}").json["transcript"]
    assert (ops["state"], ops["attempts"]) == ("failed", 5)
    assert "CUDA out of memory" in ops["error"]
    acme = world.get(f"/api/recordings/{row['id']}", ACME).json["transcript"]
    assert acme["error"] == "the transcription failed (see the log)"
    listed = world.list(ACME)["items"][0]["transcript"]
    assert listed["error"] == "the transcription failed (see the log)"
    assert "CUDA" in world.list(OPS)["items"][0]["transcript"]["error"]
