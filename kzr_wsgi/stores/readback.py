"""Reading a stored copy back: its size, its sha256, and what its audio is.

Used by ``kzr-wsgi reindex`` (sidecars from before inspection get their ``audio``) and
``kzr-wsgi verify`` (the scrub). One pass over the bytes, in large blocks, in constant
memory, whatever the store: any :class:`~kzr_wsgi.recording.Stream`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..audio import AudioInfo, Inspector
from ..body import BLOCK_SIZE
from ..recording import Stream

#: The older name of :class:`~kzr_wsgi.recording.Stream`, what a store's ``open_copy``
#: gives back.
Readable = Stream


@dataclass(frozen=True)
class Scan:
    """What reading a copy back found."""

    size: int
    sha256: str
    #: The audio found (``None``: not audio by name, type or bytes, or not inspected).
    audio: AudioInfo | None
    #: False when inspection was not asked for.
    inspected: bool


def new_inspector(record: Mapping[str, Any]) -> Inspector:
    """An audio inspector for the copy ``record`` describes.

    The one place reading back meets :mod:`kzr_wsgi.audio`'s inspector (fed block by
    block, then asked for its result), told what the upload claimed to be, as the
    receiver told it: its extension, its content type, and Kazoo's ``duration_ms``.
    """
    metadata = record.get("metadata") or {}
    reported = metadata.get("duration_ms") if isinstance(metadata, Mapping) else None
    ext = record.get("ext")
    if ext is None:
        ext = str(record.get("filename") or "").rpartition(".")[2]
    return Inspector(ext=ext, content_type=record.get("content_type"),
                     reported_ms=reported if isinstance(reported, int) else None)


def scan(stream: Stream, record: Mapping[str, Any], *, inspect: bool = True) -> Scan:
    """Read ``stream`` to its end: size, sha256 and (when ``inspect``) the audio."""
    inspector = new_inspector(record) if inspect else None
    sha = hashlib.sha256()
    size = 0
    while block := stream.read(BLOCK_SIZE):
        sha.update(block)
        size += len(block)
        if inspector is not None:
            inspector.feed(block)
    found: AudioInfo | None = inspector.result() if inspector is not None else None
    return Scan(size, sha.hexdigest(), found, inspector is not None)
