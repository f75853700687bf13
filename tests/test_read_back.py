"""Recording playback end to end: ``kzr-wsgi serve --read-back``.

Kazoo keeps the URL a 4.x ``record_call`` recording was PUT to as the attachment's
location, and its recordings API GETs that very URL, query and ``recording_id``
included (contract §5). A real server takes byte-exact uploads, then reads them
back from their own URLs: by ``recording_id`` when several recordings share a name,
the latest without one, with Range, HEAD and Kazoo 4.3's extra query.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from plan_clients import erlang_put_get, get, plan_put
from servers import Server, serve

H = "127.0.0.1"


def _hex() -> str:
    return os.urandom(16).hex()


def _recording_id() -> str:
    return "202401-" + _hex()


def _query(call_id: str, recording_id: str | None, **extra: str) -> str:
    """kzc_recording's 4.3 metadata query, values encoded as http_uri:encode does."""
    fields = [
        ("from", "1001@example.com"), ("to", "1002@example.com"),
        ("caller_id_name", "Alice Example"), ("caller_id_number", "+15555550100"),
        ("call_id", call_id), ("cdr_id", "202401-" + _hex()), ("interaction_id", _hex()),
        ("owner_id", ""), ("account_id", _hex()), ("start", "63871234567"),
        ("duration_ms", "5000"),
    ]
    if recording_id is not None:
        fields.append(("recording_id", recording_id))
    fields += list(extra.items())
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in fields)


def _call_url(call_id: str, recording_id: str | None, ext: str = "mp3") -> str:
    return f"/kazoo/call_recording_{quote(call_id, safe='@')}.{ext}?" + _query(
        call_id, recording_id)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``kzr-wsgi serve --read-back --attachments-prefix /store``."""
    tmp = tmp_path_factory.mktemp("read-back")
    with serve(tmp, "--read-back", "--attachments-prefix", "/store") as srv:
        yield srv


def test_4x_recording_comes_back_from_its_own_upload_url(server: Server) -> None:
    call_id = f"{_hex()}@10.0.0.1"
    target = _call_url(call_id, _recording_id())
    data = b"ID3" + os.urandom(40_000)
    assert plan_put(H, server.port, target, data).status == 201
    reply = get(H, server.port, target)
    assert reply.status == 200
    assert reply.body == data
    assert reply.headers["content-type"].split(";")[0] == "audio/mpeg"
    assert reply.headers["content-length"] == str(len(data))
    assert reply.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert reply.headers["accept-ranges"] == "bytes"
    assert "last-modified" in reply.headers
    head = get(H, server.port, target, method="HEAD")
    assert (head.status, head.body) == (200, b"")
    assert head.headers["content-length"] == str(len(data))
    part = get(H, server.port, target, headers=[("Range", "bytes=1000-1999")])
    assert part.status == 206
    assert part.body == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    past = get(H, server.port, target, headers=[("Range", f"bytes={len(data)}-")])
    assert past.status == 416


def test_two_recordings_under_one_name_told_apart_by_recording_id(server: Server) -> None:
    """start/stop/start in one call: one call id, one file name, two recording ids."""
    call_id = f"{_hex()}@10.0.0.1"
    first_id, second_id = _recording_id(), _recording_id()
    first, second = b"first" + os.urandom(20_000), b"second" + os.urandom(30_000)
    assert plan_put(H, server.port, _call_url(call_id, first_id), first).status == 201
    assert plan_put(H, server.port, _call_url(call_id, second_id), second).status == 201
    assert get(H, server.port, _call_url(call_id, first_id)).body == first
    assert get(H, server.port, _call_url(call_id, second_id)).body == second
    # Without recording_id (or with an empty one): the latest.
    assert get(H, server.port, _call_url(call_id, None)).body == second
    assert get(H, server.port, _call_url(call_id, "")).body == second
    # A retry of the first recording is the same recording: it does not become "latest".
    assert plan_put(H, server.port, _call_url(call_id, first_id), first).status == 200
    assert get(H, server.port, _call_url(call_id, None)).body == second
    # A recording id that was never stored under this name.
    assert get(H, server.port, _call_url(call_id, _recording_id())).status == 404


def test_read_ignores_kazoo_43_extra_query_but_not_recording_id(server: Server) -> None:
    call_id = f"{_hex()}@10.0.0.1"
    wanted, other = _recording_id(), _recording_id()
    data, later = os.urandom(12_345), os.urandom(5_432)
    assert plan_put(H, server.port, _call_url(call_id, wanted), data).status == 201
    assert plan_put(H, server.port, _call_url(call_id, other), later).status == 201
    target = (f"/kazoo/call_recording_{call_id}.mp3?"
              + _query(call_id, wanted, _rev="3-0f1e", media_source="recording",
                       conference_recording="false", unknown_field="x"))
    reply = get(H, server.port, target)
    assert reply.status == 200
    assert reply.body == data


@pytest.mark.parametrize(
    "target",
    [
        "/kazoo/call_recording_{id}.mp3",
        "/kazoo/call_recording_{id}%2Fa%2F..%2Fb.wav",
        "/kazoo/call_recording_{id}/a/b.mp3",
        "/kazoo/acct/user/{id}.mp3",
        # Configured URL "/kazoo?token=s3cr3t": the name goes in a `recording` parameter.
        "/kazoo?token=s3cr3t&recording=call_recording_{id}.mp3&from=1001",
        # Configured URL "/kazoo?a=": the name fills the empty last parameter.
        "/kazoo?a=call_recording_{id}.mp3&from=1001",
    ],
    ids=["3x", "3x-encoded-slashes", "3x-unencoded-slash", "record-caller",
         "4x-url-with-query", "4x-last-parameter-filled"],
)
def test_other_url_forms_read_back(server: Server, target: str) -> None:
    url = target.format(id=_hex())
    data = os.urandom(9_000)
    assert plan_put(H, server.port, url, data).status == 201
    reply = get(H, server.port, url)
    assert reply.status == 200
    assert reply.body == data


def test_3x_name_encoded_or_not_is_one_recording(server: Server) -> None:
    """3.x sends the name unencoded on one path and uri-encoded on another (contract §2.1).

    Both spell the same call id ``X/x``, so either URL reads the recording back.
    """
    call_id = _hex()
    encoded = f"/kazoo/call_recording_{call_id}%2Fx.mp3"
    plain = f"/kazoo/call_recording_{call_id}/x.mp3"
    assert plan_put(H, server.port, encoded, b"sent encoded").status == 201
    assert get(H, server.port, plain).body == b"sent encoded"
    assert plan_put(H, server.port, plain, b"sent encoded").status == 200
    assert get(H, server.port, encoded).body == b"sent encoded"


def test_recording_put_and_fetched_by_erlang_httpc(server: Server) -> None:
    """Upload and fetch with Kazoo's own HTTP client, as kz_att_http and the API do."""
    call_id = f"{_hex()}@10.0.0.1"
    body = b"ID3" + os.urandom(30_000)
    result = erlang_put_get(f"{server.url}{_call_url(call_id, _recording_id())}", body,
                            content_type="audio/mpeg")
    assert result.put_status == 201
    assert result.get_status == 200
    assert result.get_body == body


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_missing_recording_is_404(server: Server, method: str) -> None:
    target = _call_url(f"{_hex()}@10.0.0.1", _recording_id())
    assert get(H, server.port, target, method=method).status == 404


def test_attachments_read_beside_recordings(server: Server) -> None:
    target = f"/store/{_hex()}/{_hex()}/202401-{_hex()}/{_hex()}.mp3"
    data = os.urandom(4_000)
    assert plan_put(H, server.port, target, data).status == 201
    assert get(H, server.port, target).body == data
