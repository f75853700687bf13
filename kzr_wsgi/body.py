"""The request body as a bounded, counted, read-only stream.

WSGI servers differ in what ``wsgi.input`` does at the edges: gunicorn hands a body
that ended early on as if it were complete, the development server would read past
``Content-Length`` into the next request, chunked bodies are only safe to read to
``b""`` when the server says the input is terminated. :class:`Body` takes all of that
into one place: it yields exactly the body, raises
:class:`~kzr_wsgi.errors.BodyIncomplete` when the body ends short, and
:class:`~kzr_wsgi.errors.BodyTooLarge` past the limit.

Under the embedded gunicorn, a ``Content-Length`` body is read straight from the
socket into the caller's buffer (:meth:`Body.readinto`, see :mod:`kzr_wsgi.server.fastread`);
everywhere else through ``wsgi.input``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import IO, Any

from .errors import BodyIncomplete, BodyTooLarge, LengthRequired, MalformedUpload
from .server.fastread import DirectReader, direct_reader

#: Default maximum body size: 2 GiB. A 3-hour 16 kHz stereo WAV is about 691 MB.
DEFAULT_MAX_SIZE = 2 << 30

#: Block size the receiver's own copy loops use: large, so no per-byte Python work.
BLOCK_SIZE = 1 << 20


class Body(io.RawIOBase):
    """A read-only view of exactly one request body.

    ``content_length`` is ``None`` for a chunked body that the server decodes and
    terminates; then the body is read to the server's ``b""``.

    >>> b = Body(io.BytesIO(b"abcdef-next-request"), 6)
    >>> b.read(4), b.read(), b.read()
    (b'abcd', b'ef', b'')
    """

    def __init__(
        self,
        wsgi_input: IO[bytes] | Any,
        content_length: int | None,
        max_size: int = DEFAULT_MAX_SIZE,
        *,
        direct: DirectReader | None = None,
    ) -> None:
        super().__init__()
        if content_length is not None and content_length > max_size:
            raise BodyTooLarge(f"body of {content_length} bytes is over the limit of {max_size}")
        self._input = wsgi_input
        # Reads the same body from the server's socket, bypassing wsgi.input's copies.
        self._direct = direct
        self.content_length = content_length
        self.max_size = max_size
        #: Bytes handed out so far.
        self.bytes_read = 0
        #: True once the whole body has been read.
        self.complete = content_length == 0

    @classmethod
    def from_environ(cls, environ: dict[str, Any], max_size: int = DEFAULT_MAX_SIZE) -> Body:
        """Build the body of a WSGI request, or raise why it cannot be read safely.

        A valid ``Content-Length`` wins. Without one, a chunked body is accepted only
        where the server has decoded it and marked the input terminated; otherwise
        :class:`~kzr_wsgi.errors.LengthRequired`.
        """
        length = parse_content_length(environ.get("CONTENT_LENGTH"))
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked:
            # RFC 9112 6.3: with Transfer-Encoding, Content-Length is ignored.
            if not environ.get("wsgi.input_terminated"):
                raise LengthRequired("chunked body, but the server does not terminate it")
            return cls(environ["wsgi.input"], None, max_size)
        if length is None:
            raise LengthRequired("Content-Length required")
        if length > max_size:
            raise BodyTooLarge(f"body of {length} bytes is over the limit of {max_size}")
        return cls(
            environ["wsgi.input"], length, max_size, direct=direct_reader(environ, length)
        )

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes (all that is left when negative); ``b""`` at the end."""
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(BLOCK_SIZE), b""))
        if self.complete or size == 0:
            return b""
        if self.content_length is not None:
            size = min(size, self.content_length - self.bytes_read)
        try:
            source = self._direct if self._direct is not None else self._input
            data = source.read(size)
        except Exception as exc:  # any server's read error means the body is not whole
            self.bytes_read += getattr(exc, "received", 0)
            raise self._broke_off(exc) from exc
        self._count(len(data))
        return bytes(data)

    def readinto(self, buffer: Any) -> int:
        """Read into ``buffer`` (writable, bytes-like); return how many bytes, 0 at the end.

        With the direct read the buffer is filled straight from the socket, completely
        unless the body ends first: the fast path for copy loops that reuse a buffer.
        """
        if self._direct is None:
            data = self.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        if self.complete or not len(buffer):
            return 0
        assert self.content_length is not None  # a direct read has a length
        view = memoryview(buffer).cast("B")[: self.content_length - self.bytes_read]
        try:
            n = self._direct.readinto(view)
        except Exception as exc:
            self.bytes_read += getattr(exc, "received", 0)
            raise self._broke_off(exc) from exc
        self._count(n)
        return n

    def _broke_off(self, exc: BaseException) -> BodyIncomplete:
        return BodyIncomplete(
            f"body broke off after {self.bytes_read} bytes: {type(exc).__name__}"
        )

    def _count(self, n: int) -> None:
        """Account for ``n`` more bytes handed out (0: the input said it ended)."""
        if not n:
            if self.content_length is not None:
                raise BodyIncomplete(
                    f"body ended after {self.bytes_read} of {self.content_length} bytes"
                )
            self.complete = True
            return
        self.bytes_read += n
        if self.bytes_read > self.max_size:
            raise BodyTooLarge(f"body is over the limit of {self.max_size} bytes")
        if self.bytes_read == self.content_length:
            self.complete = True

    def drain(self) -> None:
        """Read and drop whatever is left, raising as :meth:`read` does."""
        while self.read(BLOCK_SIZE):
            pass


def parse_content_length(value: str | None) -> int | None:
    """``Content-Length`` as a non-negative int, or ``None`` when absent.

    Anything but plain digits (a sign, spaces inside, a list from duplicated headers)
    is refused: a length the receiver cannot trust is a body it cannot count.
    """
    if value is None or value == "":
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise MalformedUpload(f"invalid Content-Length: {value[:40]!r}")
    return int(text)


def readinto_of(stream: Any) -> Callable[[Any], int]:
    """``stream.readinto``, or the same made from ``stream.read`` for streams without it.

    Copy loops that reuse one buffer call this once per stream: a :class:`Body` under
    the embedded server then fills their buffer straight from the socket.
    """
    readinto: Callable[[Any], int] | None = getattr(stream, "readinto", None)
    if readinto is not None:
        return readinto

    def from_read(buffer: Any) -> int:
        data = stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    return from_read
