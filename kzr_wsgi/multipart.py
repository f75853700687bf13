"""Kazoo's ``multipart/form-data`` storage-plan bodies, decoded while streaming.

A storage plan with ``send_multipart: true`` (``docs/storage-plans.md``) sends two parts: the
attachment's document as JSON, then the file. This module turns such a body into
the document (small, parsed) and a file-like stream of the file part's bytes that
never holds more than about one block in memory, whatever the part's size. With the
plan's ``base64_encode_data`` the file part is base64 text; nothing in the request
says so, so the caller passes ``base64=True`` from its own setting.

Pure: no sockets, no WSGI. Framing is werkzeug's
:class:`~werkzeug.sansio.multipart.MultipartDecoder`; this module decides which part
is what, bounds memory, checks that the body ends cleanly and decodes base64::

    boundary = boundary_from_content_type(environ.get("CONTENT_TYPE", ""))
    if boundary is not None:
        upload = MultipartUpload(body, boundary, base64=settings.attachments_base64)
        handler_stores(upload.file, metadata=upload.document)  # reads .file to b""

Which part is what
    The **document** is the first part when its ``Content-Type`` is JSON, text or
    absent *and* another part follows it (Kazoo: ``application/json``, no
    ``filename=``). It is parsed as JSON; when it is not a JSON object its text is kept
    under :data:`DOCUMENT_TEXT_KEY`. The **file** is the first part that is not the
    document (Kazoo: the second part). A body with a single part stores that part
    (``curl -F file=@x.mp3``), unless it is a JSON part without ``filename=``: that is
    a document with no file (:class:`~kzr_wsgi.errors.MultipartError`).

What is refused (:class:`~kzr_wsgi.errors.MultipartError`)
    Any part after the file part (Kazoo never sends one; a document that comes after
    the file is refused the same way, since its order cannot be told from a second
    file's), an empty form, part headers without ``Content-Disposition``, no boundary
    in the first block of the body (not multipart, or not this boundary), invalid
    base64, and anything but whitespace after the closing boundary. Kazoo sends
    nothing there and curl a CRLF; more text most likely means the boundary string
    occurred inside the file and the file would be cut short without anyone knowing.

How the body may end
    A body that stops before its closing boundary raises: the stream's own
    :class:`~kzr_wsgi.errors.BodyIncomplete` passes through unchanged (a
    :class:`~kzr_wsgi.body.Body` raises it when fewer than ``Content-Length`` bytes
    arrive); a stream that just ends (``b""``) early is a body without its closing
    boundary: :class:`~kzr_wsgi.errors.MultipartError`. Either way ``file.read``
    raises before it ever returns ``b""``: it returns ``b""`` only once the closing
    boundary has been seen and the stream has answered ``b""`` itself, so a reader
    that copies until ``b""`` and then commits never commits a partial file.
"""

from __future__ import annotations

import collections
import io
import json
import re
from base64 import b64decode
from binascii import Error as Base64Error
from typing import Any

from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import (
    Data,
    Event,
    Field,
    File,
    MultipartDecoder,
    NeedData,
    Preamble,
    State,
)

from .errors import KzrError, MultipartError
from .recording import Stream

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DOCUMENT_MAX_SIZE",
    "DOCUMENT_TEXT_KEY",
    "MultipartUpload",
    "PartStream",
    "Readable",
    "boundary_from_content_type",
]

#: Bytes asked of the underlying stream per read. Large, so the per-block Python work
#: (werkzeug's regex search, a few copies) is noise; small enough that the few copies
#: werkzeug makes of a block stay within a few MB.
DEFAULT_BLOCK_SIZE = 512 << 10

#: Largest first part that can still be taken as the document; a larger one is the file.
#: Kazoo's documents are a few KB.
DOCUMENT_MAX_SIZE = 1 << 20

#: Key under which a document part that is not a JSON object is kept, as text.
DOCUMENT_TEXT_KEY = "_text"

# Bounds on what is buffered while looking for a delimiter. Each is checked before
# the next block is read, so what is held stays under bound + one block.
_PREAMBLE_MAX_SIZE = 64 << 10
_HEADERS_MAX_SIZE = 64 << 10
_EPILOGUE_MAX_SIZE = 64 << 10

# RFC 2046 5.1.1: 1 to 70 characters of bchars, not ending in a space.
_BOUNDARY_RE = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
# One ``; key=value`` parameter, the value quoted or running to the next ``;``.
_PARAM_RE = re.compile(r';\s*([^\s;="]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;]*)')
_WHITESPACE = b" \t\r\n\x0b\x0c"

#: The older name of :class:`~kzr_wsgi.recording.Stream`, what the decoder reads.
Readable = Stream


def boundary_from_content_type(content_type: str | None) -> bytes | None:
    """The boundary of a ``multipart/form-data`` body, ``None`` for any other type.

    A ``multipart/form-data`` type without a valid boundary (RFC 2046: 1-70 of
    letters, digits and ``'()+_,-./:=?`` or inner spaces) raises
    :class:`~kzr_wsgi.errors.MultipartError`. Other ``multipart/*`` types return
    ``None``: Kazoo never sends them, so such a body is not decoded.

    Kazoo's boundary is 64 characters of base64 (cowlib's ``cow_multipart:boundary``),
    sent unquoted, so it can hold ``/`` and ``+``; werkzeug's ``parse_options_header``
    stops an unquoted value at ``/``, hence the raw value is read here.

    >>> boundary_from_content_type("multipart/form-data; boundary=ab+/cd")
    b'ab+/cd'
    >>> boundary_from_content_type("audio/mpeg") is None
    True
    """
    mimetype, _ = parse_options_header(content_type)
    if mimetype.lower() != "multipart/form-data":
        return None
    assert content_type is not None  # parse_options_header(None) gives ""
    boundary = _param(content_type, "boundary")
    if not boundary:
        raise MultipartError("multipart/form-data without a boundary")
    if not _BOUNDARY_RE.fullmatch(boundary):
        raise MultipartError(f"invalid multipart boundary: {boundary[:80]!r}")
    return boundary.encode("ascii")


class MultipartUpload:
    """One multipart body: its document, and its file part as a stream.

    Construction reads the body up to the start of the file part's bytes (the
    document and both parts' headers; all of a body with a single small part), so
    the attributes are set at once and a body that is not multipart fails here.
    Then read :attr:`file` to ``b""``; only then is the whole body checked and
    :attr:`complete` true.

    ``stream`` is read in ``block_size`` blocks, never past its end; ``boundary`` as
    from :func:`boundary_from_content_type`; ``base64`` decodes the file part (and
    only it) from base64, whitespace and line breaks allowed, final padding optional.

    >>> body = (b'\\r\\n--B\\r\\ncontent-disposition: form-data; name=doc1\\r\\n'
    ...         b'content-type: application/json\\r\\n\\r\\n{"id": "doc1"}'
    ...         b'\\r\\n--B\\r\\ncontent-disposition: form-data; name=a.mp3\\r\\n'
    ...         b'content-type: audio/mpeg\\r\\n\\r\\nID3...\\r\\n--B--')
    >>> upload = MultipartUpload(io.BytesIO(body), b"B")
    >>> upload.document, upload.part_name, upload.file.read(), upload.complete
    ({'id': 'doc1'}, 'a.mp3', b'ID3...', True)
    """

    def __init__(
        self,
        stream: Stream,
        boundary: bytes,
        base64: bool = False,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        if block_size < 1:
            raise ValueError("block_size must be positive")
        self._source = _Source(stream, boundary, block_size)
        #: The document part, parsed; ``{DOCUMENT_TEXT_KEY: text}`` when it is not a
        #: JSON object; ``None`` when the body has no document part.
        self.document: dict[str, Any] | None = None
        #: The document part's ``name`` (Kazoo: the document id).
        self.document_name: str | None = None
        #: True once the closing boundary has been seen and the body read to its end.
        self.complete = False
        head, prefix, more = self._find_file_part()
        disposition = head.headers.get("content-disposition", "")
        #: The file part's ``name`` (Kazoo: the attachment name), as sent, unquoted.
        self.part_name: str | None = _param(disposition, "name")
        #: The file part's ``filename=`` (browsers, curl ``-F f=@x``); Kazoo sends none.
        self.part_filename: str | None = _param(disposition, "filename")
        #: The file part's ``Content-Type`` as sent (Kazoo: the audio type, even when
        #: the bytes are base64).
        self.part_content_type: str | None = head.headers.get("content-type")
        #: The file part's bytes (decoded from base64 if asked), as a stream.
        self.file = PartStream(self, prefix, more, base64)

    def _find_file_part(self) -> tuple[Field | File, list[bytes], bool]:
        """Read up to the file part's data: its headers, bytes already read, more to come."""
        event = self._source.next_event()
        if isinstance(event, Preamble):
            if self._source.state is State.EPILOGUE:
                raise MultipartError("no file part: the multipart body is empty")
            event = self._source.next_event()
        first = _part(event)
        if not _may_be_document(first):
            return first, [], True
        chunks: list[bytes] = []
        size = 0
        while True:
            data = self._data()
            chunks.append(data.data)
            size += len(data.data)
            if not data.more_data:
                break
            if size > DOCUMENT_MAX_SIZE:
                # Too large for a document: it is the file, and it goes on streaming.
                return first, chunks, True
        if self._source.state is State.PART:
            self.document_name = _param(first.headers.get("content-disposition", ""), "name")
            self.document = _parse_document(b"".join(chunks))
            return _part(self._source.next_event()), [], True
        # The closing boundary came next: this single part is the file.
        if _is_json(first.headers.get("content-type")) and not isinstance(first, File):
            raise MultipartError("no file part: the body holds only a JSON document")
        self._finish()
        return first, chunks, False

    def _data(self) -> Data:
        event = self._source.next_event()
        if not isinstance(event, Data):  # werkzeug gives Data until the part ends
            raise MultipartError("malformed multipart body")
        return event

    def _finish(self) -> None:
        """The file part has ended: check that only the closing boundary follows."""
        if self._source.state is State.PART:
            extra = _part(self._source.next_event())
            name = _param(extra.headers.get("content-disposition", ""), "name")
            raise MultipartError(f"unexpected part {name!r} after the file part")
        self._source.drain_epilogue()
        self.complete = True


class PartStream(io.RawIOBase):
    """The file part's bytes: read-only, streaming, ``b""`` only after the body is whole.

    Made by :class:`MultipartUpload`, not directly. Errors raised while reading are
    the body's (:class:`~kzr_wsgi.errors.MultipartError`,
    :class:`~kzr_wsgi.errors.BodyIncomplete`, ...); once one is raised every later
    read raises it again.
    """

    def __init__(
        self, upload: MultipartUpload, prefix: list[bytes], more: bool, base64: bool
    ) -> None:
        super().__init__()
        self._upload = upload
        # Part bytes already taken from the decoder, not yet decoded and handed out.
        self._raw: collections.deque[bytes] = collections.deque(prefix)
        # Whether the decoder still has bytes of this part to give.
        self._more = more
        self._base64 = _Base64Decoder() if base64 else None
        self._chunk = b""
        self._pos = 0
        self._done = False
        self._error: KzrError | None = None
        #: Bytes handed out so far (decoded bytes when base64).
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes of the part (all that is left when negative); ``b""`` at the end."""
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(DEFAULT_BLOCK_SIZE), b""))
        if size == 0:
            return b""
        if self._pos >= len(self._chunk):
            self._chunk, self._pos = self._next_chunk(), 0
        chunk = self._chunk
        # The common large read hands the block over without copying it.
        whole = self._pos == 0 and size >= len(chunk)
        out = chunk if whole else chunk[self._pos : self._pos + size]
        self._pos += len(out)
        self.bytes_read += len(out)
        return out

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def _next_chunk(self) -> bytes:
        if self._error is not None:
            raise self._error
        try:
            return self._pull()
        except KzrError as exc:
            self._error = exc
            raise

    def _pull(self) -> bytes:
        while True:
            if self._raw:
                raw = self._raw.popleft()
                out = self._base64.feed(raw) if self._base64 is not None else raw
                if out:
                    return out
            elif self._more:
                data = self._upload._data()
                if not data.more_data:
                    self._more = False
                    # Before the last bytes go out: the caller must not see the end
                    # of the part until the end of the body is known to be right.
                    self._upload._finish()
                self._raw.append(data.data)
            elif not self._done:
                self._done = True
                if self._base64 is not None:
                    return self._base64.finish()
            else:
                return b""


class _Source:
    """werkzeug's decoder fed from a stream in blocks, with bounded buffering."""

    def __init__(self, stream: Stream, boundary: bytes, block_size: int) -> None:
        self._stream = stream
        self._decoder = MultipartDecoder(boundary)
        self._block_size = block_size
        # werkzeug 3.1.8 (pallets/werkzeug#3285, open) sizes its hold-back window by
        # the opening delimiter: a buffer ending in `\r\n--B-` (a read that stops one
        # byte into the closing `--`) or in `\r\n--B` plus padding gives the delimiter's
        # CR to the part as data. So such a tail is kept here until the next block.
        self._split_tail_re = re.compile(b"--" + re.escape(boundary) + rb"(?:-|[ \t]+)\Z")
        self._tail_window = len(boundary) + 2 + 64
        self._held = b""

    @property
    def state(self) -> State:
        return self._decoder.state

    def next_event(self) -> Event:
        """The next event that is not ``NeedData``, reading blocks as needed."""
        decoder = self._decoder
        while True:
            try:
                event = decoder.next_event()
            except ValueError as exc:  # no Content-Disposition, undecodable header bytes
                raise MultipartError(f"malformed multipart part: {exc}") from None
            if not isinstance(event, NeedData):
                return event
            held = len(decoder.buffer)
            if decoder.state is State.PREAMBLE and held > _PREAMBLE_MAX_SIZE:
                raise MultipartError(
                    f"no multipart boundary in the first {held} bytes:"
                    " not multipart, or not this boundary"
                )
            if decoder.state is State.PART and held > _HEADERS_MAX_SIZE:
                raise MultipartError(f"multipart part headers longer than {held} bytes")
            if decoder.state is State.EPILOGUE:  # callers stop at the closing boundary
                raise AssertionError("read past the closing boundary")
            block = self._stream.read(self._block_size)
            if not block:
                if decoder.state is State.PREAMBLE:
                    raise MultipartError(
                        "no multipart boundary: not multipart, or another boundary"
                    )
                raise MultipartError("multipart body ended before its closing boundary")
            self._receive(block)

    def _receive(self, block: bytes) -> None:
        buffer = self._decoder.buffer
        if self._held:
            buffer += self._held
            self._held = b""
        buffer += block
        start = max(0, len(buffer) - self._tail_window)
        match = self._split_tail_re.search(buffer, start)
        if match is not None:
            cut = match.start() + 2 + len(self._decoder.boundary)
            self._held = bytes(buffer[cut:])
            del buffer[cut:]

    def drain_epilogue(self) -> None:
        """Read the stream to its end, allowing only whitespace after the closing boundary."""
        tail = bytes(self._decoder.buffer) + self._held
        self._decoder.buffer.clear()
        self._held = b""
        total = 0
        while True:
            total += len(tail)
            if tail.translate(None, _WHITESPACE) or total > _EPILOGUE_MAX_SIZE:
                raise MultipartError("data after the closing multipart boundary")
            # To the stream's own end, so a Body confirms that every byte arrived.
            tail = self._stream.read(self._block_size)
            if not tail:
                return


class _Base64Decoder:
    """Base64 text in pieces of any size -> bytes, strictly validated."""

    def __init__(self) -> None:
        self._carry = b""  # 0-3 characters of an incomplete quad
        self._padded = False

    def feed(self, data: bytes) -> bytes:
        data = data.translate(None, _WHITESPACE)
        if not data:
            return b""
        if self._padded:
            raise MultipartError("invalid base64 in the file part: data after the padding")
        if self._carry:
            data = self._carry + data
        cut = len(data) - len(data) % 4
        self._carry = data[cut:]
        if cut == 0:
            return b""
        return self._decode(data[:cut] if self._carry else data)

    def finish(self) -> bytes:
        carry, self._carry = self._carry, b""
        if not carry:
            return b""
        if len(carry) == 1:
            raise MultipartError("invalid base64 in the file part: truncated")
        # Padding may be left out (RFC 4648 3.2); put it back for the decoder.
        return self._decode(carry + b"=" * (4 - len(carry)))

    def _decode(self, quads: bytes) -> bytes:
        try:
            out = b64decode(quads, validate=True)
        except Base64Error:
            raise MultipartError("invalid base64 in the file part") from None
        self._padded = quads.endswith(b"=")
        return out


def _part(event: Event) -> Field | File:
    # werkzeug gives File for a part with filename=, Field without (Kazoo's parts).
    if not isinstance(event, (Field, File)):
        raise MultipartError("malformed multipart body")
    return event


def _may_be_document(part: Field | File) -> bool:
    content_type = part.headers.get("content-type")
    if content_type is None:
        return True
    mimetype = parse_options_header(content_type)[0].lower()
    return mimetype.startswith("text/") or _is_json(mimetype)


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    mimetype = parse_options_header(content_type)[0].lower()
    return mimetype == "application/json" or mimetype.endswith("+json")


def _parse_document(data: bytes) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        document = None
    if isinstance(document, dict):
        return document
    # Kept, not refused: the file is what matters, and Kazoo would only retry.
    return {DOCUMENT_TEXT_KEY: data.decode("utf-8", "replace")}


def _param(header_value: str, key: str) -> str | None:
    """A header parameter: quoted values via werkzeug, unquoted ones as sent.

    werkzeug keeps only RFC 9110 token characters of an unquoted value, so Kazoo's
    unquoted ``boundary=ab/cd`` or ``name=my greeting.mp3`` would come back cut.
    """
    for match in _PARAM_RE.finditer(header_value):
        if match.group(1).lower() == key:
            value = match.group(2).strip()
            if value.startswith('"'):
                return parse_options_header(f"x; {key}={value}")[1].get(key, "")
            return value
    # Not there as plain ``key=``; werkzeug still finds RFC 2231 ``key*=utf-8''...``.
    return parse_options_header(header_value)[1].get(key)
