"""The body as the handler reads it, its audio inspected on the way (no copy kept).

The middleware puts an :class:`InspectedStream` between the handler and the (decoded)
body: every block the handler reads is fed to an :class:`~kzr_wsgi.audio.Inspector`,
and ``recording.audio`` is set when the body ends, before the handler sees its end.
"""

from __future__ import annotations

import io
from typing import Any

from .audio import Inspector
from .body import readinto_of
from .recording import Recording


class InspectedStream(io.RawIOBase):
    """``recording.stream``, feeding every block it hands out to an
    :class:`~kzr_wsgi.audio.Inspector`.

    ``recording.audio`` is set the moment the final ``b""`` is handed out, before the
    handler sees it: a store that writes its sidecar after reading to the end (all the
    built-in ones do) writes the audio with it. A raw binary stream like the body it
    wraps, so handlers that use ``readinto`` or ``io.BufferedReader`` keep working.
    """

    def __init__(self, recording: Recording) -> None:
        super().__init__()
        self._read = recording.stream.read
        self._readinto = readinto_of(recording.stream)
        self._recording = recording
        self._inspector = Inspector(
            ext=recording.ext,
            content_type=recording.content_type,
            reported_ms=recording.metadata.duration_ms,
        )
        self._done = False

    def readable(self) -> bool:
        """True: a stream to read from."""
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        """Read from the body as it would; inspect what goes by."""
        data = self._read(-1 if size is None else size)
        if data:
            self._inspector.feed(data)
        elif size != 0:
            self.conclude()
        return data

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` as the body's own ``readinto`` does (straight from the socket
        under the embedded server); inspect a copy of what came in."""
        n = self._readinto(buffer)
        if n:
            # The parsers work on bytes; one copy of the block, not the two of read().
            self._inspector.feed(bytes(memoryview(buffer)[:n]))
        elif len(buffer):
            self.conclude()
        return n

    def conclude(self) -> None:
        """The body has been read to its end: set ``recording.audio`` (once)."""
        if not self._done:
            self._done = True
            self._recording.audio = self._inspector.result()
