"""Audio inspection wired into the receiver: the stores' sidecars, FanOut, S3, the log,
attachments, Flask, and ``kzr-wsgi serve`` end to end (with and without --no-inspect)."""

from __future__ import annotations

import http.client
import io
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import audio_samples as samples
import pytest
from flask import Flask
from plan_clients import kazoo_boundary, multipart_body, multipart_content_type
from servers import serve
from werkzeug.test import Client

from kzr_wsgi import DirectoryStore, KazooRecordings
from kzr_wsgi.audio import AudioInfo
from kzr_wsgi.flask import KazooFlask
from kzr_wsgi.notify import notification
from kzr_wsgi.recording import Recording, Stored
from kzr_wsgi.stores.fanout import FanOut
from kzr_wsgi.stores.s3 import S3Store

#: The moto server fixtures live there.
pytest_plugins = ["s3server"]

TEN_S = AudioInfo("mp3", 10080, 16000, 2, 64)


def sidecars(root: Path) -> list[dict[str, Any]]:
    """Every sidecar under ``root``, parsed (the store's own index left out)."""
    return [json.loads(p.read_text()) for p in sorted(root.rglob("*.kzr.json"))
            if ".kzr" not in p.relative_to(root).parts[:1]]


def only_sidecar(root: Path) -> dict[str, Any]:
    found = sidecars(root)
    assert len(found) == 1, found
    return found[0]


def put(client: Client, path: str, data: bytes, content_type: str = "audio/mpeg") -> int:
    return client.put(path, data=data, content_type=content_type).status_code


# -- in process ---------------------------------------------------------------------------


def test_directory_store_sidecar_and_the_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    told: list[AudioInfo | None] = []
    app = KazooRecordings(lambda e, s: [], DirectoryStore(tmp_path),
                          on_stored=[lambda rec, res: told.append(rec.audio)])
    client = Client(app)
    with caplog.at_level(logging.INFO, logger="kzr_wsgi"):
        assert put(client, "/call_recording_c1.mp3?duration_ms=30000",
                   samples.freeswitch_mp3(10.0)) == 201
    flagged = AudioInfo("mp3", 10080, 16000, 2, 64, ("shorter_than_reported",))
    assert only_sidecar(tmp_path)["audio"] == flagged.to_json()
    assert told == [flagged]
    [line] = [r for r in caplog.records if r.getMessage().startswith("upload ")]
    assert line.levelno == logging.WARNING
    assert "audio=mp3 duration_ms=10080 flags=shorter_than_reported" in line.getMessage()


def test_a_clean_recording_logs_at_info(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    client = Client(KazooRecordings(lambda e, s: [], DirectoryStore(tmp_path)))
    with caplog.at_level(logging.INFO, logger="kzr_wsgi"):
        assert put(client, "/call_recording_c1.mp3?duration_ms=10000",
                   samples.freeswitch_mp3(10.0)) == 201
    [line] = [r for r in caplog.records if r.getMessage().startswith("upload ")]
    assert line.levelno == logging.INFO and "flags=-" in line.getMessage()
    assert only_sidecar(tmp_path)["audio"] == TEN_S.to_json()


def test_fanout_gives_every_branch_the_audio(tmp_path: Path) -> None:
    fan = FanOut(DirectoryStore(tmp_path / "a"), DirectoryStore(tmp_path / "b"))
    client = Client(KazooRecordings(lambda e, s: [], fan))
    assert put(client, "/call_recording_c2.wav", samples.wav(2.0, kind="silence"),
               "audio/wav") == 201
    expected = AudioInfo("wav", 2000, 8000, 1, 128, ("silent",)).to_json()
    assert only_sidecar(tmp_path / "a")["audio"] == expected
    assert only_sidecar(tmp_path / "b")["audio"] == expected


@pytest.mark.slow
def test_s3_and_disk_through_fanout(tmp_path: Path, s3_bucket: tuple[Any, str],
                                    moto_endpoint: str) -> None:
    client, bucket = s3_bucket
    s3 = S3Store(bucket, client=client)
    fan = FanOut(s3, DirectoryStore(tmp_path))
    app = Client(KazooRecordings(lambda e, s: [], fan))
    data = samples.freeswitch_mp3(3.0, rate=8000, channels=1)
    assert put(app, "/call_recording_c3.mp3", data) == 201
    expected = whole_json(data, "mp3")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    records = [json.loads(client.get_object(Bucket=bucket, Key=k)["Body"].read())
               for k in keys if k.endswith(".kzr.json")]
    assert records and all(r["audio"] == expected for r in records)
    assert only_sidecar(tmp_path)["audio"] == expected


def whole_json(data: bytes, ext: str) -> dict[str, Any]:
    from kzr_wsgi.audio import inspect_audio

    info = inspect_audio([data], ext=ext)
    assert info is not None
    return info.to_json()


def test_handler_that_never_reads_the_final_empty_block(tmp_path: Path) -> None:
    seen: list[AudioInfo | None] = []
    data = samples.freeswitch_mp3(2.0)

    def exact(recording: Recording) -> Stored | None:
        assert recording.content_length == len(data)
        got = b""
        while len(got) < len(data):  # stops at the length: never asks for the b""
            got += recording.stream.read(len(data) - len(got))
        seen.append(recording.audio)  # not known yet
        return None

    after: list[AudioInfo | None] = []
    app = KazooRecordings(lambda e, s: [], exact,
                          on_stored=[lambda rec, res: after.append(rec.audio)])
    assert put(Client(app), "/call_recording_c4.mp3", data) == 201
    assert seen == [None]
    assert after == [AudioInfo("mp3", 2088, 16000, 2, 64)]


def test_handlers_that_use_the_stream_as_a_file(tmp_path: Path) -> None:
    data = samples.wav(2.0, rate=16000)
    got: list[bytes] = []

    def buffered(recording: Recording) -> Stored | None:
        reader = io.BufferedReader(recording.stream, buffer_size=5000)
        got.append(reader.read(7) + reader.read())
        return None

    def copied(recording: Recording) -> Stored | None:
        out = io.BytesIO()
        shutil.copyfileobj(recording.stream, out, 3333)
        got.append(out.getvalue())
        return None

    after: list[AudioInfo | None] = []
    for handler in (buffered, copied):
        app = KazooRecordings(lambda e, s: [], handler,
                              on_stored=[lambda rec, res: after.append(rec.audio)])
        assert put(Client(app), "/call_recording_c8.wav", data, "audio/wav") == 201
        assert got[-1] == data
    assert after == [AudioInfo("wav", 2000, 16000, 1, 256)] * 2


def test_a_multipart_attachment_is_inspected_after_decoding(tmp_path: Path) -> None:
    audio = samples.wav(1.5, rate=16000, channels=2)
    boundary = kazoo_boundary()
    for base64_encode in (False, True):
        root = tmp_path / f"b64-{base64_encode}"
        app = KazooRecordings(lambda e, s: [], DirectoryStore(root), attachments_prefix="/store",
                              attachments_base64=base64_encode)
        body = multipart_body(boundary, "doc", {"_id": "r1", "name": "x"}, "r1.wav", audio,
                              "audio/wav", base64_encode=base64_encode)
        status = Client(app).put("/store/acct/r1.wav", data=body,
                                 content_type=multipart_content_type(boundary)).status_code
        assert status == 201
        assert only_sidecar(root)["audio"] == AudioInfo("wav", 1500, 16000, 2, 512).to_json()


def test_not_audio_and_not_inspected(tmp_path: Path) -> None:
    client = Client(KazooRecordings(lambda e, s: [], DirectoryStore(tmp_path)))
    assert put(client, "/call_recording_html.mp3", samples.HTML_PAGE, "text/html") == 201
    assert put(client, "/call_recording_video.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(999),
               "video/mp4") == 201
    audio = {s["filename"]: s["audio"] for s in sidecars(tmp_path)}
    assert audio == {
        "call_recording_html.mp3": AudioInfo(None, flags=("not_audio",)).to_json(),
        "call_recording_video.mp4": None,
    }


def test_inspect_off(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    client = Client(KazooRecordings(lambda e, s: [], DirectoryStore(tmp_path), inspect=False))
    with caplog.at_level(logging.INFO, logger="kzr_wsgi"):
        assert put(client, "/call_recording_c5.mp3?duration_ms=30000",
                   samples.HTML_PAGE) == 201
    assert only_sidecar(tmp_path)["audio"] is None
    [line] = [r for r in caplog.records if r.getMessage().startswith("upload ")]
    assert line.levelno == logging.INFO and "audio=" not in line.getMessage()


def test_notification_carries_the_audio(tmp_path: Path) -> None:
    docs: list[dict[str, Any]] = []
    app = KazooRecordings(lambda e, s: [], DirectoryStore(tmp_path),
                          on_stored=[lambda rec, res: docs.append(notification(rec, res))])
    assert put(Client(app), "/call_recording_c6.mp3", samples.freeswitch_mp3(10.0)) == 201
    assert docs[0]["recording"]["audio"] == TEN_S.to_json()


@pytest.mark.parametrize("how", ["config", "keyword"])
def test_flask_extension_passes_inspect_through(tmp_path: Path, how: str) -> None:
    app = Flask("t")
    if how == "config":
        app.config["KZR_INSPECT"] = False
        KazooFlask(app, handler=DirectoryStore(tmp_path))
    else:
        KazooFlask(app, handler=DirectoryStore(tmp_path), inspect=False)
    assert app.extensions["kzr_wsgi"].middleware.inspect is False
    assert put(Client(app), "/call_recording_c7.mp3", samples.freeswitch_mp3(1.0)) == 201
    assert only_sidecar(tmp_path)["audio"] is None
    default = Flask("d")
    KazooFlask(default, handler=DirectoryStore(tmp_path / "d"))
    assert put(Client(default), "/call_recording_c7.mp3", samples.freeswitch_mp3(1.0)) == 201
    assert only_sidecar(tmp_path / "d")["audio"]["format"] == "mp3"


# -- end to end: kzr-wsgi serve ------------------------------------------------------------


def _put(port: int, path: str, data: bytes, content_type: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("PUT", path, body=data, headers={"Content-Type": content_type})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


#: (name, bytes, content type, Kazoo's duration_ms, the audio expected in the sidecar)
def _uploads() -> list[tuple[str, bytes, str, int | None, dict[str, Any] | None]]:
    fs16, fs8 = samples.freeswitch_mp3(10.0), samples.freeswitch_mp3(10.0, rate=8000, channels=1)
    appended = samples.appended_mp3([4.0, 3.0, 5.0])
    wav16 = samples.wav(6.0, rate=16000, channels=2)
    return [
        ("fs16.mp3", fs16, "audio/mpeg", 10000, whole_json(fs16, "mp3")),
        ("short.mp3", fs16, "audio/mpeg", 30000,
         {**TEN_S.to_json(), "flags": ["shorter_than_reported"]}),
        ("fs8.mp3", fs8, "audio/mpeg", 10000,
         AudioInfo("mp3", 10152, 8000, 1, 16).to_json()),
        ("appended.mp3", appended, "audio/mpeg", 12000, whole_json(appended, "mp3")),
        ("vbr.mp3", samples.mp3(5.0, vbr=True), "audio/mpeg", None,
         whole_json(samples.mp3(5.0, vbr=True), "mp3")),
        ("cut.mp3", samples.cut(fs16, -100), "audio/mpeg", None,
         {**TEN_S.to_json(), "duration_ms": 10044, "flags": ["truncated"]}),
        ("empty.mp3", b"", "audio/mpeg", 0, AudioInfo(None, flags=("empty",)).to_json()),
        ("html.mp3", samples.HTML_PAGE, "audio/mpeg", 10000,
         AudioInfo(None, flags=("not_audio",)).to_json()),
        ("wav16.wav", wav16, "audio/wav", 6000, AudioInfo("wav", 6000, 16000, 2, 512).to_json()),
        ("silent.wav", samples.wav(2.0, kind="silence"), "audio/wav", None,
         AudioInfo("wav", 2000, 8000, 1, 128, ("silent",)).to_json()),
        ("header.wav", samples.header_only_wav(), "audio/wav", None,
         AudioInfo("wav", 0, 8000, 1, 128, ("empty",)).to_json()),
        ("notfinal.wav", samples.unfinalised(samples.wav(2.0)), "audio/wav", None,
         AudioInfo("wav", 2000, 8000, 1, 128, ("header_not_final",)).to_json()),
        ("cutwav.wav", samples.cut(wav16, 100_000), "audio/wav", None,
         whole_json(samples.cut(wav16, 100_000), "wav")),
        ("video.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(999), "video/mp4", None, None),
    ]


@pytest.mark.slow
def test_serve_end_to_end(tmp_path: Path) -> None:
    uploads = _uploads()
    assert "truncated" in uploads[-2][4]["flags"]  # type: ignore[index]
    root = tmp_path / "rec"
    with serve(tmp_path, root=root) as server:
        for name, data, ctype, reported, _ in uploads:
            query = f"?duration_ms={reported}" if reported is not None else ""
            assert _put(server.port, f"/call_recording_{name}{query}", data, ctype) == 201, name
        log = server.log()
    got = {s["filename"]: s["audio"] for s in sidecars(root)}
    assert got == {f"call_recording_{name}": audio for name, _, _, _, audio in uploads}
    assert "WARNING kzr_wsgi: upload call_id='short'" in log
    assert "flags=shorter_than_reported" in log and "flags=not_audio" in log

    off = tmp_path / "off"
    with serve(tmp_path, "--no-inspect", root=off) as server:
        for name, data, ctype, _reported, _ in uploads[:3]:
            assert _put(server.port, f"/call_recording_{name}?duration_ms=30000", data,
                        ctype) == 201
        log = server.log()
    assert [s["audio"] for s in sidecars(off)] == [None, None, None]
    assert "audio inspection off" in log and "WARNING" not in log
