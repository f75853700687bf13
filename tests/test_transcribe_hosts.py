"""Transcription effectively once: two ``serve`` hosts on one bucket (moto) and one
PostgreSQL catalog, both transcribing through the OpenAI-compatible test server; Kazoo
retrying on the other host; the same audio under another name; ``reindex`` into a new
catalog asking no engine; card numbers redacted before anything is stored or indexed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import speech_samples as ss
import test_s3_serve
from openai_server import transcription_server
from servers import request
from test_pipeline_serve import config, kzr, upload
from test_s3_serve import S3_URL, serve_s3
from test_transcribe_openai_serve import KEY, MODEL
from test_transcribe_serve import transcribed

from kzr_wsgi.catalog import open_catalog
from kzr_wsgi.naming import TRANSCRIPT_SUFFIX

pytest_plugins = ["pgserver", "s3server"]
rec = test_s3_serve.rec

#: What the engine says for each run of sound (three in each channel of both calls): a
#: card number whole, one split across two segments and one in words (all three pass the
#: Luhn check), and one that fails it.
SAID = [
    "my card is 4111 1111 1111 1111 the old one was 4111 1111 1111 1112 sorry",
    "the new one is 5500 0000",
    "0000 0004 and then four one one one one one one one one one one one one one one one",
]


def ls(moto: str, catalog: str, *args: str) -> dict[str, dict[str, Any]]:
    out = kzr("ls", "--s3", S3_URL, "--s3-endpoint", moto, "--catalog", catalog, "--json",
              *args)
    docs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {d["call_id"]: d for d in docs}


@pytest.mark.slow
def test_two_hosts_one_call_per_piece_reindex_none_cards_never_stored(
        tmp_path: Path, rec: Any, moto_endpoint: str, pg_url: str,
        pg_server: Any) -> None:
    toml = config(tmp_path, '[analysis]\nbackoff = "1s"\n')
    args = ("--catalog", pg_url, "--config", str(toml), "--transcribe", "openai",
            "--transcribe-model", MODEL)
    bodies = {"conversation": ss.conversation().read(), "monologue": ss.monologue().read(),
              "same-audio": ss.monologue().read()}
    with transcription_server("openai", key=KEY) as engine:
        engine.say = SAID
        env = {"KZR_TRANSCRIBE_KEY": KEY, "KZR_TRANSCRIBE_URL": engine.url}
        with serve_s3(tmp_path, moto_endpoint, *args, name="a", env=env) as first, \
                serve_s3(tmp_path, moto_endpoint, *args, name="b", env=env) as second:
            for i, (name, body) in enumerate(bodies.items()):
                upload((first, second)[i % 2], name, body)
                # Kazoo retries on the other host: the same recording. (The same audio
                # under another name is another recording, sent to the other host first.)
                again = request((second, first)[i % 2].port, "PUT",
                                f"/call_recording_{name}.mp3", body)
                assert again.status == 200
            catalog = open_catalog(pg_url)
            try:
                transcribed(catalog, len(bodies))
            finally:
                catalog.close()
        assert engine.problems == []
        # One call per piece of each distinct audio, whichever host took it.
        assert engine.calls and set(engine.calls.values()) == {1}
        calls = len(engine.seen)
        assert calls == 2 + 1  # the conversation's two channels, the monologue's one
        before = ls(moto_endpoint, pg_url)
        assert {d["transcript"]["state"] for d in before.values()} == {"done"}
        found = ls(moto_endpoint, pg_url, "--text", "sorry")
        # Reindex into a new catalog: the transcripts and their search rows come back,
        # and no engine is asked.
        fresh = pg_server.create_database()
        try:
            out = kzr("reindex", "--s3", S3_URL, "--s3-endpoint", moto_endpoint, "--catalog",
                      fresh)
            assert "3 transcript(s) put back" in out, out
            after = ls(moto_endpoint, fresh)
            assert len(engine.seen) == calls
            assert {k: d["transcript"] for k, d in after.items()} == {
                k: {**d["transcript"], "attempts": 0} for k, d in before.items()}
            again = ls(moto_endpoint, fresh, "--text", "sorry")
            assert {k: d["matches"] for k, d in again.items()} == {
                k: d["matches"] for k, d in found.items()}
            _check_cards(moto_endpoint, fresh)
        finally:
            pg_server.drop_database(fresh.rsplit("/", 1)[1])
        _check_cards(moto_endpoint, pg_url)


def _check_cards(moto: str, catalog: str) -> None:
    """The Luhn-valid numbers are nowhere: not in a stored transcript, not searchable;
    the invalid one is kept."""
    from kzr_wsgi.stores.s3 import S3Store

    store = S3Store.from_url(S3_URL, endpoint_url=moto)
    texts = []
    for record in store.records():
        texts.append(store.get_companion(record, TRANSCRIPT_SUFFIX).decode())
    assert texts
    joined = "\n".join(texts)
    assert "[card]" in joined
    assert "4111 1111 1111 1111 " not in joined
    assert "5500" not in joined and "0004" not in joined
    assert "four one one one" not in joined
    assert "4111 1111 1111 1112" in joined
    for word in ("5500", "0004", "four"):
        assert ls(moto, catalog, "--text", word) == {}, word
    assert ls(moto, catalog, "--text", "1112")
