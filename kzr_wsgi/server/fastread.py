"""Read a ``Content-Length`` body straight from gunicorn's socket, keeping gunicorn's books.

gunicorn's own reader (``Body`` -> ``LengthReader`` -> ``SocketUnreader``) copies every
byte through several ``BytesIO`` objects and allocates a fresh ``bytes`` object for each
piece it receives. Under the embedded server (``kzr-wsgi serve``, gthread workers) that
costs more than hashing, writing and syncing the body together. :func:`direct_reader`
returns a :class:`DirectReader` that hands out the bytes gunicorn has already buffered,
then ``recv_into`` the caller's (reused) buffer, never past the body's end.

>>> reader = direct_reader(environ, content_length)            # doctest: +SKIP
>>> n = reader.readinto(buffer) if reader else ...             # doctest: +SKIP

**What it relies on**, read in gunicorn 27.0 (``gunicorn/http/body.py``,
``unreader.py``, ``parser.py``, ``wsgi.py``, ``workers/gthread.py``):

* ``environ["wsgi.input"]`` is the request's ``gunicorn.http.body.Body``; its ``reader``
  is a ``LengthReader`` for a ``Content-Length`` body; ``Body.buf`` (a ``BytesIO``)
  holds bytes taken from the reader but not yet handed out.
* ``LengthReader.length`` is how many body bytes have not yet been taken from the
  connection; ``LengthReader.unreader`` is the connection's ``SocketUnreader``, whose
  ``buf`` (a ``BytesIO``) holds bytes received but not yet consumed: the start of the
  body, and possibly the next, pipelined request behind it.
* ``environ["gunicorn.socket"]`` is the very socket that unreader receives from.
* ``100 Continue`` is sent by ``gunicorn.http.wsgi.create`` before the app is called.
* After the app returns, ``Parser.finish_body`` reads the ``Body`` to ``b""`` (nothing is
  left once ``length`` is 0 and ``Body.buf`` is empty) and refuses to reuse the
  connection when ``Body.failed`` is true; gthread then serves whatever is left in the
  unreader's ``buf`` as the next request.

So the reader takes ``Body.buf`` first, then the unreader's ``buf`` up to the body's end
(the rest stays there, in place), then the socket, and lowers ``LengthReader.length`` by
every byte it takes from the connection. A body that ends early (``recv`` returns
``b""``) or a socket error sets ``Body.failed``, so the connection is closed, not reused.

**When it falls back** (returns ``None``; the caller then reads ``wsgi.input`` as any
WSGI server's): another server; a gunicorn outside :data:`TESTED_GUNICORN`; a chunked
body or one without a length (not a ``LengthReader``); TLS (not a plain
``socket.socket``); any object not of the exact type named above (a subclass may keep
other books); a body something already started reading. Set
``KZR_DIRECT_READ=0`` to turn it off.
"""

from __future__ import annotations

import io
import os
import socket
from typing import Any

#: gunicorn releases the direct read was written against and is tested with, as
#: ``(major, minor)``. ``setup.cfg`` requires ``gunicorn~=27.0``; a later 27.x is read
#: through gunicorn's own reader until it is tested and added here.
TESTED_GUNICORN = ((27, 0),)

#: Reads smaller than this go through gunicorn's own ``Body``: it reads ahead, a recv
#: per small read would cost more than its copies.
SMALL_READ = 64 << 10

#: Turn the direct read off (``KZR_DIRECT_READ=0``), e.g. to compare with gunicorn's reader.
ENV_SWITCH = "KZR_DIRECT_READ"

_classes: tuple[type, type, type] | None = None
_looked_up = False


def _gunicorn_classes() -> tuple[type, type, type] | None:
    """gunicorn's Body, LengthReader and SocketUnreader, when this gunicorn is tested."""
    global _classes, _looked_up
    if not _looked_up:
        _looked_up = True
        try:
            import gunicorn
            from gunicorn.http.body import Body, LengthReader
            from gunicorn.http.unreader import SocketUnreader
        except ImportError:
            return None
        version = tuple(int(p) for p in gunicorn.__version__.split(".")[:2] if p.isdigit())
        if version in TESTED_GUNICORN:
            _classes = (Body, LengthReader, SocketUnreader)
    return _classes


def direct_reader(environ: dict[str, Any], content_length: int) -> DirectReader | None:
    """A :class:`DirectReader` for this request's body, or ``None`` to use ``wsgi.input``.

    ``content_length`` is the request's parsed ``Content-Length``. Nothing is read here.
    """
    body: Any = environ.get("wsgi.input")
    # Cheap test first: any other server answers here, without importing gunicorn.
    if type(body).__module__ != "gunicorn.http.body" or content_length <= 0:
        return None
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return None
    classes = _gunicorn_classes()
    if classes is None:
        return None
    reader: Any = getattr(body, "reader", None)
    unreader: Any = getattr(reader, "unreader", None)
    sock: Any = environ.get("gunicorn.socket")
    if not (
        (type(body), type(reader), type(unreader)) == classes
        and type(sock) is socket.socket  # not TLS, not a wrapper
        and getattr(unreader, "sock", None) is sock
        and type(getattr(body, "buf", None)) is io.BytesIO
        and type(getattr(unreader, "buf", None)) is io.BytesIO
        and type(getattr(reader, "length", None)) is int
        and getattr(body, "failed", None) is False
    ):
        return None
    # Untouched: nothing handed out or buffered by Body yet, the whole body still to come.
    if body.buf.getbuffer().nbytes or reader.length != content_length:
        return None
    return DirectReader(body, reader, unreader, environ["gunicorn.socket"], content_length)


class ClientStopped(EOFError):
    """The client stopped before the body's end.

    ``received`` counts the bytes of the failed read that did arrive, so the body's
    count (and the upload's log line) says what the client really sent.
    """

    def __init__(self, message: str, *, received: int = 0) -> None:
        super().__init__(message)
        self.received = received


class DirectReader:
    """The rest of one ``Content-Length`` body, read from gunicorn's connection.

    Made by :func:`direct_reader`, which checks the objects' types; every read keeps
    gunicorn's ``LengthReader.length``, ``SocketUnreader.buf`` and ``Body.failed`` true.
    """

    __slots__ = ("_body", "_reader", "_unreader", "_sock", "remaining")

    def __init__(
        self, body: Any, reader: Any, unreader: Any, sock: socket.socket, length: int
    ) -> None:
        self._body = body
        self._reader = reader
        self._unreader = unreader
        self._sock = sock
        #: Body bytes not handed out yet (counted here: gunicorn's LengthReader lowers
        #: its own count by what it was asked for, even when the client sent less).
        self.remaining = length

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` (writable, bytes-like) with the next body bytes; return how many.

        Fills it completely unless the body ends first; ``0`` only at the body's end (or
        for an empty buffer). Raises :class:`EOFError` when the client stops before the
        end, and lets the socket's own errors through; both mark gunicorn's ``Body``
        failed, so the connection is closed after the reply. Reads smaller than
        :data:`SMALL_READ` go through gunicorn's ``Body``, which reads ahead (within the
        body): one ``recv`` per byte would be slower than its copies.
        """
        view = memoryview(buffer).cast("B")
        want = min(len(view), self.remaining)
        if want < SMALL_READ:
            data = self.read(want)
            view[: len(data)] = data
            return len(data)
        filled = 0
        try:
            if self._body.buf.getbuffer().nbytes:
                filled = self._take(self._body, view, want)
            if filled < want and self._unreader.buf.getbuffer().nbytes:
                got = self._take(self._unreader, view[filled:], want - filled)
                self._reader.length -= got
                filled += got
            while filled < want:
                got = self._sock.recv_into(view[filled:want])
                if not got:
                    raise ClientStopped(
                        f"the client stopped with {self.remaining - filled} body bytes still "
                        "to come", received=filled,
                    )
                self._reader.length -= got
                filled += got
        except BaseException:
            self._body.failed = True
            raise
        finally:
            self.remaining -= filled
        return filled

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes (fewer only at the body's end); ``b""`` at the end."""
        want = min(size, self.remaining)
        if want >= SMALL_READ:
            buffer = bytearray(want)
            n = self.readinto(buffer)
            del buffer[n:]
            return bytes(buffer)
        if want <= 0:
            return b""
        # gunicorn's own Body keeps its books itself (and marks itself failed on errors).
        data: bytes = self._body.read(want)
        self.remaining -= len(data)
        if len(data) < want:
            # gunicorn's LengthReader takes a closed connection for the end of the body.
            self._body.failed = True
            raise ClientStopped(
                f"the client stopped with {self.remaining} body bytes still to come",
                received=len(data),
            )
        return data

    @staticmethod
    def _take(holder: Any, view: memoryview, want: int) -> int:
        """Move up to ``want`` bytes from the front of ``holder.buf`` into ``view``.

        What is left stays in a fresh ``BytesIO`` positioned at its end, as gunicorn's own
        ``unread`` leaves it.
        """
        data = holder.buf.getvalue()
        n = min(want, len(data))
        view[:n] = memoryview(data)[:n]
        rest = io.BytesIO()
        rest.write(memoryview(data)[n:])
        holder.buf = rest
        return n
