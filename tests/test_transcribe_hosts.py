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


@pytest.mark.slow
def test_reredact_rewrites_transcripts_deletes_earlier_versions_or_refuses(
        tmp_path: Path, rec: Any, moto_endpoint: str) -> None:
    rec.put_bucket_versioning(Bucket="rec", VersioningConfiguration={"Status": "Enabled"})
    rec.create_bucket(Bucket="locked", ObjectLockEnabledForBucket=True)
    try:
        _reredact(tmp_path, rec, moto_endpoint)
    finally:
        for bucket in ("rec", "locked"):
            _remove_versions(rec, bucket)
        rec.delete_bucket(Bucket="locked")


def _reredact(tmp_path: Path, rec: Any, moto_endpoint: str) -> None:
    catalog_url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    toml = config(tmp_path, '[transcribe]\nredact-patterns = ["(?i)swordfish"]\n')
    where = ("--s3", S3_URL, "--s3-endpoint", moto_endpoint, "--catalog", catalog_url)
    with transcription_server("openai", key=KEY) as engine:
        engine.say = ["the password is swordfish", "and my card is 4111 1111 1111 1111"]
        env = {"KZR_TRANSCRIBE_KEY": KEY, "KZR_TRANSCRIBE_URL": engine.url}
        with serve_s3(tmp_path, moto_endpoint, "--catalog", catalog_url, "--transcribe",
                      "openai", "--transcribe-model", MODEL, env=env) as server:
            upload(server, "monologue", ss.monologue().read())
            catalog = open_catalog(catalog_url)
            try:
                transcribed(catalog, 1)
            finally:
                catalog.close()
    key = _transcript_key(rec)
    assert b"swordfish" in _versions(rec, key)[0]
    assert ls(moto_endpoint, catalog_url, "--text", "swordfish")
    out = kzr("worker", *where, "--config", str(toml), "--reredact", "--once", "--no-idle")
    assert "re-redacted 1 of 1 transcript(s) (1 earlier version(s) deleted" in out, out
    [only] = _versions(rec, key)
    assert b"swordfish" not in only and b"[redacted]" in only and b"[card]" in only
    assert b"4111" not in only
    assert ls(moto_endpoint, catalog_url, "--text", "swordfish") == {}
    # Nor is it anywhere in the catalog's files (the index was scrubbed).
    for path in tmp_path.glob("catalog.sqlite3*"):
        assert b"swordfish" not in path.read_bytes(), path
    assert ls(moto_endpoint, catalog_url, "--text", "password")
    # verify reads the rewritten file against the sha256 the catalog now keeps (its exit
    # status is 1 for a changed file).
    assert "CHANGED" not in kzr("verify", *where)
    # A bucket under Object Lock cannot lose its earlier versions: refused, nothing done.
    locked = ("s3://locked/kazoo", "--s3-endpoint", moto_endpoint, "--catalog",
              f"sqlite:///{tmp_path / 'locked.sqlite3'}")
    out = kzr("worker", "--s3", *locked, "--config", str(toml), "--reredact", "--once",
              "--no-idle", code=1)
    assert "re-redaction refused" in out and "Object Lock" in out, out


def _remove_versions(client: Any, bucket: str) -> None:
    found = client.list_object_versions(Bucket=bucket)
    for v in [*found.get("Versions", []), *found.get("DeleteMarkers", [])]:
        client.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])


def _transcript_key(client: Any) -> str:
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="rec").get("Contents", [])
            if o["Key"].endswith(TRANSCRIPT_SUFFIX)]
    assert len(keys) == 1, keys
    return str(keys[0])


def _versions(client: Any, key: str) -> list[bytes]:
    found = client.list_object_versions(Bucket="rec", Prefix=key).get("Versions", [])
    return [client.get_object(Bucket="rec", Key=key, VersionId=v["VersionId"])["Body"].read()
            for v in found]
