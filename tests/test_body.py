"""Body: exactly one request body, counted and bounded (no sockets)."""

from __future__ import annotations

import io
import shutil
from typing import Any

import pytest

from kzr_wsgi.body import BLOCK_SIZE, Body, parse_content_length
from kzr_wsgi.errors import BodyIncomplete, BodyTooLarge, LengthRequired, MalformedUpload


class Recorder(io.BytesIO):
    """A wsgi.input that remembers every read size asked of it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.sizes: list[int | None] = []

    def read(self, size: int | None = -1) -> bytes:
        self.sizes.append(size)
        return super().read(size)


class Broken(io.RawIOBase):
    """A wsgi.input whose connection drops after ``good`` bytes."""

    def __init__(self, good: bytes) -> None:
        self.good = io.BytesIO(good)

    def read(self, size: int = -1) -> bytes:
        data = self.good.read(size)
        if not data:
            raise ConnectionResetError("peer went away")
        return data


def env(data: bytes, **extra: Any) -> dict[str, Any]:
    return {"wsgi.input": Recorder(data), **extra}


def test_reads_exactly_the_body_never_past_it() -> None:
    stream = Recorder(b"abcdef" + b"NEXT REQUEST")
    body = Body(stream, 6)
    assert body.read() == b"abcdef"
    assert body.read() == b""
    assert body.complete and body.bytes_read == 6
    assert stream.tell() == 6
    assert stream.read() == b"NEXT REQUEST"


def test_small_reads_and_readinto() -> None:
    body = Body(io.BytesIO(b"abcdef"), 6)
    buf = bytearray(4)
    assert body.readinto(buf) == 4 and bytes(buf) == b"abcd"
    assert body.read(10) == b"ef"
    assert body.read(10) == b""


def test_copyfileobj_and_buffered_wrapper_see_the_same_bytes() -> None:
    data = bytes(range(256)) * 5000
    out = io.BytesIO()
    shutil.copyfileobj(Body(io.BytesIO(data + b"junk"), len(data)), out)
    assert out.getvalue() == data
    assert io.BufferedReader(Body(io.BytesIO(data + b"junk"), len(data))).read() == data


def test_reads_in_large_blocks() -> None:
    data = b"x" * (3 * BLOCK_SIZE + 5)
    stream = Recorder(data)
    body = Body(stream, len(data))
    assert body.read() == data
    # read() all: one call per block plus nothing per byte.
    assert len(stream.sizes) <= 5
    assert max(s for s in stream.sizes if s is not None) == BLOCK_SIZE


def test_zero_length_is_complete_without_reading() -> None:
    stream = Recorder(b"next")
    body = Body(stream, 0)
    assert body.complete
    assert body.read(10) == b""
    assert stream.sizes == []


def test_short_body_raises() -> None:
    body = Body(io.BytesIO(b"abc"), 10)
    assert body.read(3) == b"abc"
    with pytest.raises(BodyIncomplete, match="3 of 10"):
        body.read(3)
    assert not body.complete


def test_read_error_becomes_body_incomplete() -> None:
    body = Body(Broken(b"abc"), 10)
    assert body.read(100) == b"abc"
    with pytest.raises(BodyIncomplete, match="ConnectionResetError"):
        body.read(100)


def test_drain_reads_the_rest_and_raises_when_short() -> None:
    body = Body(io.BytesIO(b"abcdef"), 6)
    body.read(2)
    body.drain()
    assert body.complete and body.bytes_read == 6
    with pytest.raises(BodyIncomplete):
        Body(io.BytesIO(b"ab"), 6).drain()


def test_announced_length_over_limit_refused_before_reading() -> None:
    stream = Recorder(b"x" * 11)
    with pytest.raises(BodyTooLarge):
        Body.from_environ({"wsgi.input": stream, "CONTENT_LENGTH": "11"}, max_size=10)
    assert stream.sizes == []


def test_length_at_limit_is_fine() -> None:
    assert Body.from_environ(env(b"x" * 10, CONTENT_LENGTH="10"), max_size=10).read() == b"x" * 10


# -- chunked ------------------------------------------------------------------------------


def test_chunked_terminated_read_to_end() -> None:
    body = Body.from_environ(env(b"chunked data", HTTP_TRANSFER_ENCODING="chunked",
                                 **{"wsgi.input_terminated": True}))
    assert body.content_length is None
    assert body.read() == b"chunked data"
    assert body.complete


def test_chunked_ignores_content_length() -> None:
    body = Body.from_environ(env(b"0123456789", HTTP_TRANSFER_ENCODING="Chunked",
                                 CONTENT_LENGTH="3", **{"wsgi.input_terminated": True}))
    assert body.content_length is None
    assert body.read() == b"0123456789"


def test_chunked_without_terminated_input_is_411() -> None:
    with pytest.raises(LengthRequired):
        Body.from_environ(env(b"x", HTTP_TRANSFER_ENCODING="chunked"))


def test_chunked_grows_over_limit() -> None:
    body = Body.from_environ(env(b"x" * 100, HTTP_TRANSFER_ENCODING="chunked",
                                 **{"wsgi.input_terminated": True}), max_size=50)
    with pytest.raises(BodyTooLarge):
        body.read()


def test_no_length_at_all_is_411() -> None:
    with pytest.raises(LengthRequired):
        Body.from_environ(env(b"x"))
    with pytest.raises(LengthRequired):
        Body.from_environ(env(b"x", CONTENT_LENGTH=""))


# -- Content-Length ---------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [(None, None), ("", None), ("0", 0), ("42", 42),
                                             (" 42 ", 42), ("007", 7)])
def test_parse_content_length(value: str | None, expected: int | None) -> None:
    assert parse_content_length(value) == expected


@pytest.mark.parametrize("value", ["-1", "+5", "5, 5", "4 2", "0x10", "1e3", "\uff15",
                                   "9" * 20])
def test_parse_content_length_refuses(value: str) -> None:
    with pytest.raises(MalformedUpload):
        parse_content_length(value)
