"""The storage-plan mount end to end: ``kzr-wsgi serve --attachments-prefix /store``.

A real server (gunicorn, as ``serve`` runs it) takes byte-exact Kazoo requests
(contract §2.5, §3, §5): raw, multipart and base64 uploads at each URL shape a field
list gives, the credential check from Erlang's own httpc, reads with Range, HEAD and
Kazoo 4.3's extra query, bodies cut short or malformed, and a 200 MiB multipart
upload whose server-side memory is measured.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from plan_clients import (
    attachment_url,
    cut_short,
    erlang_put_get,
    get,
    kazoo_boundary,
    multipart_body,
    multipart_content_type,
    multipart_head,
    multipart_tail,
    plan_put,
    pseudo_audio,
    stream_upload,
)
from servers import Server, rss_peak, serve, store_temporaries

H = "127.0.0.1"
PREFIX = "/store"
#: Bound on how much the server may grow while taking a 200 MiB multipart body.
MEMORY_BOUND = 48 << 20


def _hex() -> str:
    return os.urandom(16).hex()


def _audio(n: int = 50_000) -> bytes:
    # Starts like an MP3 and holds every byte value, CR and LF included.
    return b"ID3\x04\x00" + bytes(range(256)) * (n // 256) + b"\r\n--\r\n"


def _document(doc_id: str, attachment: str) -> dict[str, object]:
    # kz_doc:public_fields of a voicemail media document, trimmed.
    return {"_id": doc_id, "name": "mailbox 1010 message", "media_source": "recording",
            "source_type": "voicemail", "streamable": True,
            "metadata": {"media_id": doc_id, "caller_id_number": "+15555550100",
                         "folder": "new", "attachment": attachment}}


class Ids:
    """One attachment's identifiers, as Kazoo fills a field list."""

    def __init__(self, ext: str = "mp3") -> None:
        self.account = _hex()
        self.owner = _hex()
        self.doc = "202401-" + _hex()
        self.att = f"{_hex()}.{ext}"


#: URL shapes (settings.url + kz_att_util:format_url); each gives the path to PUT to.
SHAPES = {
    # Default field list: {account_id}/{owner_id}/{doc_id}/{attachment}.
    "default": lambda i: attachment_url(PREFIX, [i.account, i.owner, i.doc, i.att]),
    # A document without owner_id: the field is left out, not left empty.
    "no-owner": lambda i: attachment_url(PREFIX, [i.account, None, i.doc, i.att]),
    # settings.url with a path of its own (folder_base_path or a static segment).
    "url-path": lambda i: attachment_url(PREFIX + "/kazoo/vm", [i.account, i.doc, i.att]),
    # field_list [account_id, id, attachment] with field_separator "-": one segment.
    "separator": lambda i: attachment_url(PREFIX, [i.account, i.doc, i.att], separator="-"),
    # Kazoo's own pqc_cb_storage plan: a group of {attachment} and const "?from=…".
    "query-const": lambda i: attachment_url(PREFIX, [i.account, i.doc, i.att])
    + "?from=pqc_cb_storage",
}


# -- servers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``kzr-wsgi serve --attachments-prefix /store`` with default workers and threads."""
    tmp = tmp_path_factory.mktemp("attachments")
    with serve(tmp, "--attachments-prefix", PREFIX) as srv:
        yield srv


@pytest.fixture(scope="module")
def b64_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The same, mirroring a plan with ``base64_encode_data: true``."""
    tmp = tmp_path_factory.mktemp("attachments-b64")
    with serve(tmp, "--attachments-prefix", PREFIX, "--attachments-base64") as srv:
        yield srv


def _root(srv: Server) -> Path:
    return srv.log_path.parent / "recordings"


def _data_files(srv: Server) -> list[Path]:
    root = _root(srv)
    return [p for p in root.rglob("*")
            if p.is_file() and ".kzr" not in p.relative_to(root).parts[:1]
            and not p.name.endswith(".kzr.json")]


def _sidecar(srv: Server, segments: list[str], filename: str) -> dict[str, object]:
    found: list[dict[str, object]] = []
    for path in _root(srv).rglob("*.kzr.json"):
        record: dict[str, object] = json.loads(path.read_text())
        if record["filename"] == filename and record["segments"] == segments:
            found.append(record)
    assert len(found) == 1, found
    return found[0]


def _temporaries(srv: Server) -> list[str]:
    return store_temporaries(_root(srv))


def _wait_no_temporaries(srv: Server, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := _temporaries(srv)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _assert_served(srv: Server, target: str, data: bytes, content_type: str) -> None:
    reply = get(H, srv.port, target)
    assert reply.status == 200, reply
    assert reply.body == data
    assert reply.headers["content-type"].split(";")[0] == content_type
    assert reply.headers["content-length"] == str(len(data))
    assert reply.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert reply.headers["accept-ranges"] == "bytes"
    assert "last-modified" in reply.headers


# -- uploads at each URL shape ---------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_raw_upload_comes_back_byte_exact(server: Server, shape: str) -> None:
    ids = Ids()
    target = SHAPES[shape](ids)
    data = _audio()
    first = plan_put(H, server.port, target, data)
    assert first.status == 201, first
    _assert_served(server, target, data, "audio/mpeg")
    # Kazoo's retries (store_file, then kzc_recording) send the same body again.
    again = plan_put(H, server.port, target, data)
    assert again.status == 200
    assert again.headers["etag"] == first.headers["etag"]


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_multipart_upload_stores_the_file_part_and_keeps_the_document(
    server: Server, shape: str
) -> None:
    ids = Ids()
    target = SHAPES[shape](ids)
    data = _audio()
    boundary = kazoo_boundary()
    body = multipart_body(boundary, ids.doc, _document(ids.doc, ids.att), ids.att, data)
    reply = plan_put(H, server.port, target, body, content_type=multipart_content_type(boundary))
    assert reply.status == 201, reply
    _assert_served(server, target, data, "audio/mpeg")
    path = target.split("?")[0][len(PREFIX) + 1 :].split("/")
    record = _sidecar(server, path[:-1], path[-1])
    assert record["document"] == _document(ids.doc, ids.att)
    assert record["size"] == len(data)


def test_multipart_boundary_with_plus_and_slash_sent_by_post(server: Server) -> None:
    ids = Ids("wav")
    target = SHAPES["default"](ids)
    # cowlib's boundary is base64: "+" and "/" are as likely as letters, and unquoted.
    boundary = base64.b64encode(bytes(range(200, 248))).decode()
    assert "+" in boundary and "/" in boundary
    data = b"RIFF" + os.urandom(70_000)
    body = multipart_body(boundary, ids.doc, _document(ids.doc, ids.att), ids.att, data,
                          "audio/wav")
    reply = plan_put(H, server.port, target, body, method="POST",
                     content_type=multipart_content_type(boundary))
    assert reply.status == 201, reply
    _assert_served(server, target, data, "audio/wav")


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_base64_multipart_upload_is_decoded(b64_server: Server, shape: str) -> None:
    ids = Ids()
    target = SHAPES[shape](ids)
    data = os.urandom(60_001)  # not a multiple of 3: base64 ends in padding
    boundary = kazoo_boundary()
    body = multipart_body(boundary, ids.doc, _document(ids.doc, ids.att), ids.att, data,
                          base64_encode=True)
    assert base64.b64encode(data) in body
    reply = plan_put(H, b64_server.port, target, body,
                     content_type=multipart_content_type(boundary))
    assert reply.status == 201, reply
    _assert_served(b64_server, target, data, "audio/mpeg")


def test_base64_setting_leaves_raw_bodies_alone(b64_server: Server) -> None:
    # kz_att_http base64-encodes multipart file parts only: a raw body is stored as is.
    ids = Ids()
    target = SHAPES["default"](ids)
    data = base64.b64encode(os.urandom(3000))
    assert plan_put(H, b64_server.port, target, data).status == 201
    _assert_served(b64_server, target, data, "audio/mpeg")


def test_base64_part_that_is_not_base64_is_400_and_not_stored(b64_server: Server) -> None:
    ids = Ids()
    target = SHAPES["default"](ids)
    boundary = kazoo_boundary()
    body = multipart_body(boundary, ids.doc, _document(ids.doc, ids.att), ids.att,
                          b"\x00\xffnot base64")
    reply = plan_put(H, b64_server.port, target, body,
                     content_type=multipart_content_type(boundary))
    assert reply.status == 400, reply
    assert get(H, b64_server.port, target).status == 404


def test_put_with_no_name_is_stored_but_not_readable_by_its_url(server: Server) -> None:
    """``field_list: []``: every attachment is PUT to the same ``URL/``."""
    url = f"{PREFIX}/nameless-{_hex()}"
    target = attachment_url(url, [])
    assert target.endswith("/")
    first, second = _audio(10_000), _audio(20_000)
    before = len(_data_files(server))
    assert plan_put(H, server.port, target, first).status == 201
    assert plan_put(H, server.port, target, second).status == 201
    # Both are kept, side by side...
    assert len(_data_files(server)) == before + 2
    # ...but the one URL can only name one of them: the first is unreachable by path.
    reply = get(H, server.port, target)
    assert reply.status == 200
    assert reply.body == second


def test_one_attachment_name_under_different_paths_is_two_files(server: Server) -> None:
    # API uploads are all named uploaded_file_<unix ts>: two accounts can send the same.
    name = "uploaded_file_1700000000.mp3"
    one, two = f"{PREFIX}/{_hex()}/{name}", f"{PREFIX}/{_hex()}/{name}"
    assert plan_put(H, server.port, one, b"account one").status == 201
    assert plan_put(H, server.port, two, b"account two").status == 201
    assert get(H, server.port, one).body == b"account one"
    assert get(H, server.port, two).body == b"account two"


@pytest.mark.parametrize(
    "target",
    ["/store/a/../../../etc/passwd", "/store/%2e%2e/%2e%2e/x", "/store/a/..%2F..%2Fy",
     "/store/a/uploaded_file_1700000000%20copy.mp3", "/store/a/.hidden"],
    ids=["dot-segments", "encoded-dots", "encoded-slashes", "space", "leading-dot"],
)
def test_names_are_data_and_stay_inside_the_root(server: Server, target: str) -> None:
    data = os.urandom(100)
    assert plan_put(H, server.port, target, data).status == 201
    assert get(H, server.port, target).body == data
    # Exactly one file under the root holds the bytes, at a path without dot segments.
    root = _root(server)
    holders = [p for p in _data_files(server) if p.read_bytes() == data]
    assert len(holders) == 1
    relative = holders[0].relative_to(root).parts
    assert ".." not in relative and not any(part.startswith(".") for part in relative)


# -- the credential check --------------------------------------------------------------


@pytest.mark.parametrize("verb", ["put", "post"])
def test_credential_check_from_erlang_httpc(server: Server, verb: str) -> None:
    """cb_storage: PUT ``<random>_test_credentials_file.txt``, GET it, compare the bytes."""
    rand = _hex()
    body = f"some random content: {rand}".encode()
    path = attachment_url(PREFIX, [_hex(), _hex(), f"{rand}_test_credentials_file.txt"])
    result = erlang_put_get(f"{server.url}{path}", body, verb=verb)
    assert result.put_status == 201
    assert result.get_status == 200
    assert result.get_body == body


# -- reads ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored(server: Server) -> tuple[str, bytes]:
    """One 10,000-byte attachment to read back in pieces."""
    ids = Ids()
    target = SHAPES["default"](ids)
    data = os.urandom(10_000)
    assert plan_put(H, server.port, target, data).status == 201
    return target, data


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [("bytes=0-0", 0, 0), ("bytes=100-199", 100, 199), ("bytes=9000-", 9000, 9999),
     ("bytes=-10", 9990, 9999), ("bytes=9990-20000", 9990, 9999)],
    ids=["first-byte", "middle", "open-end", "suffix", "past-the-end-is-clipped"],
)
def test_range_gives_206_and_the_right_slice(
    server: Server, stored: tuple[str, bytes], range_header: str, start: int, end: int
) -> None:
    target, data = stored
    reply = get(H, server.port, target, headers=[("Range", range_header)])
    assert reply.status == 206
    assert reply.body == data[start : end + 1]
    assert reply.headers["content-range"] == f"bytes {start}-{end}/{len(data)}"
    assert reply.headers["content-length"] == str(end - start + 1)


@pytest.mark.parametrize("range_header", ["bytes=10000-", "bytes=20000-20100"])
def test_range_past_the_end_is_416(
    server: Server, stored: tuple[str, bytes], range_header: str
) -> None:
    target, data = stored
    reply = get(H, server.port, target, headers=[("Range", range_header)])
    assert reply.status == 416
    assert reply.headers["content-range"] == f"bytes */{len(data)}"


def test_get_ignores_kazoo_43_extra_query(server: Server, stored: tuple[str, bytes]) -> None:
    target, data = stored
    extra = ("?name=mailbox%201010%20message&media_source=recording&owner_id="
             "&source_type=voicemail&streamable=true&_rev=2-abc&unknown_field=x")
    reply = get(H, server.port, target + extra)
    assert reply.status == 200
    assert reply.body == data


def test_head_gives_the_headers_and_no_body(server: Server, stored: tuple[str, bytes]) -> None:
    target, data = stored
    reply = get(H, server.port, target, method="HEAD")
    assert reply.status == 200
    assert reply.body == b""
    assert reply.headers["content-length"] == str(len(data))
    assert reply.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert reply.headers["accept-ranges"] == "bytes"
    assert "last-modified" in reply.headers


def test_if_none_match_with_the_etag_is_304(server: Server, stored: tuple[str, bytes]) -> None:
    target, data = stored
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    reply = get(H, server.port, target, headers=[("If-None-Match", etag)])
    assert reply.status == 304
    assert reply.body == b""


def test_reads_close_their_files(server: Server, stored: tuple[str, bytes]) -> None:
    """Every way a read can end (200, HEAD, 206, 304, 416) gives its file back."""
    target, data = stored
    workers = psutil.Process(server.proc.pid).children(recursive=True)

    def open_files() -> int:
        return sum(w.num_fds() for w in workers)

    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    before = open_files()
    for method, headers in [("GET", []), ("HEAD", []), ("GET", [("Range", "bytes=1-3")]),
                            ("GET", [("If-None-Match", etag)]),
                            ("GET", [("Range", "bytes=99999-")])]:
        for _ in range(30):
            get(H, server.port, target, method=method, headers=headers)
    time.sleep(0.3)  # let the workers finish closing their connections
    assert open_files() <= before + 4


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_missing_file_is_404(server: Server, method: str) -> None:
    target = SHAPES["default"](Ids())
    assert get(H, server.port, target, method=method).status == 404


def test_other_methods_are_405(server: Server, stored: tuple[str, bytes]) -> None:
    target, data = stored
    reply = get(H, server.port, target, method="DELETE")
    assert reply.status == 405
    assert set(reply.headers["allow"].replace(" ", "").split(",")) == {
        "GET", "HEAD", "POST", "PUT"}
    assert get(H, server.port, target).body == data


# -- bodies that must store nothing ----------------------------------------------------


@pytest.mark.parametrize(
    "cut",
    ["in-the-document", "in-the-file", "before-the-closing-delimiter", "one-byte-short"],
)
def test_multipart_body_cut_short_stores_nothing(server: Server, cut: str) -> None:
    ids = Ids()
    target = SHAPES["default"](ids)
    boundary = kazoo_boundary()
    data = os.urandom(300_000)
    head = multipart_head(boundary, ids.doc, _document(ids.doc, ids.att), ids.att,
                          "audio/mpeg")
    body = head + data + multipart_tail(boundary)
    at = {"in-the-document": 60, "in-the-file": len(head) + 150_000,
          "before-the-closing-delimiter": len(head) + len(data),
          "one-byte-short": len(body) - 1}[cut]
    files_before = set(_data_files(server))
    reply = cut_short(H, server.port, target, body[:at], len(body),
                      content_type=multipart_content_type(boundary))
    assert reply is None or reply.status == 400, reply
    assert _wait_no_temporaries(server) == []
    assert set(_data_files(server)) == files_before
    assert get(H, server.port, target).status == 404


def test_multipart_without_its_closing_delimiter_is_400_and_stores_nothing(
    server: Server,
) -> None:
    # The whole announced body arrives, but Kazoo's closing "\r\n--B--" is not in it.
    ids = Ids()
    target = SHAPES["default"](ids)
    boundary = kazoo_boundary()
    body = multipart_head(boundary, ids.doc, _document(ids.doc, ids.att), ids.att,
                          "audio/mpeg") + os.urandom(40_000)
    reply = plan_put(H, server.port, target, body, content_type=multipart_content_type(boundary))
    assert reply.status == 400
    assert get(H, server.port, target).status == 404
    assert _temporaries(server) == []


@pytest.mark.parametrize(
    ("content_type", "body_boundary"),
    [
        ("multipart/form-data", "B"),
        ("multipart/form-data; boundary=", "B"),
        ("multipart/form-data; boundary=ab{cd}", "ab{cd}"),
        ("multipart/form-data; boundary=" + "x" * 71, "x" * 71),
        ("multipart/form-data; boundary=right", "wrong"),
    ],
    ids=["no-boundary", "empty-boundary", "bad-characters", "too-long", "not-in-body"],
)
def test_malformed_boundary_is_400_not_500(
    server: Server, content_type: str, body_boundary: str
) -> None:
    ids = Ids()
    target = SHAPES["default"](ids)
    body = multipart_body(body_boundary, ids.doc, _document(ids.doc, ids.att), ids.att,
                          _audio(5000))
    reply = plan_put(H, server.port, target, body, content_type=content_type)
    assert reply.status == 400, reply
    assert get(H, server.port, target).status == 404
    assert "Traceback" not in server.log()


def test_text_after_the_closing_delimiter_is_400(server: Server) -> None:
    # Most likely the boundary occurred inside the file: the file would be cut short.
    ids = Ids()
    target = SHAPES["default"](ids)
    boundary = kazoo_boundary()
    body = multipart_body(boundary, ids.doc, _document(ids.doc, ids.att), ids.att,
                          _audio(5000)) + b"\r\nmore of the file"
    reply = plan_put(H, server.port, target, body, content_type=multipart_content_type(boundary))
    assert reply.status == 400
    assert get(H, server.port, target).status == 404


# -- recordings beside the mount -------------------------------------------------------


def test_recordings_prefix_keeps_working_beside_the_attachments(server: Server) -> None:
    call_id = f"{_hex()}@10.0.0.1"
    query = (f"from=1001%40example.com&to=1002%40example.com&call_id={call_id}"
             f"&account_id={_hex()}&owner_id=&start=63871234567&duration_ms=5000"
             f"&recording_id={_hex()}")
    target = f"/kazoo/call_recording_{call_id}.mp3?{query}"
    data = _audio(8000)
    assert plan_put(H, server.port, target, data).status == 201
    # Without --read-back a recording URL takes uploads only.
    reply = get(H, server.port, target)
    assert reply.status == 405
    assert set(reply.headers["allow"].replace(" ", "").split(",")) == {"POST", "PUT"}
    # Under the attachments prefix, the longer prefix wins: a recording-like name is
    # an attachment there, and reads back.
    att_target = f"{PREFIX}/{_hex()}/call_recording_{_hex()}.mp3"
    assert plan_put(H, server.port, att_target, data).status == 201
    _assert_served(server, att_target, data, "audio/mpeg")
    # Whatever is neither goes to the app behind (404 under serve).
    assert get(H, server.port, "/kazoo/index.html").status == 404


# -- memory ----------------------------------------------------------------------------



def test_200_mib_multipart_upload_keeps_memory_flat(server: Server) -> None:
    ids = Ids("wav")
    target = SHAPES["default"](ids)
    size = 200 << 20
    boundary = kazoo_boundary()
    head = multipart_head(boundary, ids.doc, _document(ids.doc, ids.att), ids.att, "audio/wav")
    tail = multipart_tail(boundary)
    started = time.monotonic()
    with rss_peak(server.proc.pid) as rss:
        sent = stream_upload(H, server.port, target, head, pseudo_audio(size), tail,
                             content_type=multipart_content_type(boundary),
                             content_length=len(head) + size + len(tail))
    seconds = time.monotonic() - started
    before, peak, after = rss.before, rss.peak, rss.after
    mib = 1 << 20
    print(f"\n200 MiB multipart upload: {seconds:.2f} s; server tree RSS before "
          f"{before / mib:.1f} MiB, peak {peak / mib:.1f} MiB (+{(peak - before) / mib:.1f}),"
          f" after {after / mib:.1f} MiB (+{(after - before) / mib:.1f})")
    assert sent.reply.status == 201, sent.reply
    assert sent.file_size == size
    assert sent.reply.headers["etag"] == f'"{sent.file_sha256}"'
    assert peak - before < MEMORY_BOUND
    head_reply = get(H, server.port, target, method="HEAD")
    assert head_reply.headers["content-length"] == str(size)
    # Range at the far end of the big file: the last block is served, not the whole.
    tail_reply = get(H, server.port, target, headers=[("Range", "bytes=-32")])
    assert tail_reply.status == 206
    assert len(tail_reply.body) == 32
    for path in _data_files(server):
        if path.stat().st_size == size:
            path.unlink()  # 200 MiB need not outlive the test
