"""What a handler receives (:class:`Recording`) and what stores give back.

The handler contract is one callable::

    def handler(recording: Recording) -> Stored | None: ...

It reads ``recording.stream`` to its end and keeps the bytes somewhere. Returning
(with or without a :class:`Stored`) means "complete and durable": the receiver then
answers ``201 Created``. Raising means "not kept": the receiver answers an error and
Kazoo retries. The built-in stores are handlers themselves.

A handler that can also serve the bytes back (for Kazoo's storage-plan reads and
recording playback) implements :class:`ReadableStore`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Protocol, runtime_checkable

from .audio import AudioInfo
from .metadata import Metadata

#: Call ids of ``kzr-wsgi check``'s own uploads start with this.
SELF_TEST_PREFIX = "kzr-check-"


def is_self_test(call_id: str | None) -> bool:
    """True for the call id of a ``kzr-wsgi check`` upload (``kzr-check-…``)."""
    return call_id is not None and call_id.startswith(SELF_TEST_PREFIX)


class Stream(Protocol):
    """A read-only binary stream that ends with ``b""``: the one readable protocol.

    What ``Recording.stream`` is, what the multipart decoder reads
    (:class:`~kzr_wsgi.multipart.MultipartUpload`), and what a store's ``open_copy``
    gives back to be read once (:mod:`kzr_wsgi.stores.readback`). A
    :class:`~kzr_wsgi.body.Body`, a file and botocore's streaming body all are one.
    """

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes (all that is left when negative); ``b""`` at the end."""
        ...


class Kind(str, enum.Enum):
    """Which Kazoo feature sent the upload."""

    #: ``record_call``: ``call_recording_<CALL_ID>.<EXT>``
    CALL = "call"
    #: ``record_caller``: bare ``<CALL_ID>.<EXT>``
    CALLER = "caller"
    #: A storage-plan attachment (``"handler": "http"``): any name.
    ATTACHMENT = "attachment"


@dataclass(frozen=True)
class Name:
    """Where an upload is addressed: the identity a store files it under.

    Two uploads with equal ``Name`` and equal ``recording_id`` are the same recording
    (a retry); a read of the same URL finds it again.
    """

    kind: Kind
    #: Decoded path segments between the mount's prefix and the file name,
    #: e.g. ``("{ACCOUNT_ID}", "{USER_ID}")``. Data, never interpreted as a path.
    segments: tuple[str, ...]
    #: The file name as Kazoo sent it, decoded once (``call_recording_<id>.mp3``).
    #: Empty for a storage-plan PUT with no name at all (``field_list: []``).
    filename: str

    @property
    def key(self) -> tuple[str, ...]:
        """A flat tuple identifying this name; stores hash it, never use it as a path."""
        group = "attachments" if self.kind is Kind.ATTACHMENT else "recordings"
        return (group, *self.segments, self.filename)


@dataclass
class Recording:
    """One upload, as the handler receives it.

    ``stream`` yields exactly the body, then ``b""``; it raises
    :class:`~kzr_wsgi.errors.BodyIncomplete` if the client stops early and
    :class:`~kzr_wsgi.errors.BodyTooLarge` past the size limit. Read it in large
    blocks (``stream.read(1 << 20)``).
    """

    name: Name
    #: The SIP call id, decoded once; ``None`` for storage-plan attachments.
    call_id: str | None
    #: Lower-case extension (``mp3``, ``wav``, ``mp4``); for attachments whatever the name
    #: ends in, possibly ``""``.
    ext: str
    content_type: str | None
    #: ``None`` when the body is chunked.
    content_length: int | None
    metadata: Metadata
    #: The raw query string as received (still percent-encoded).
    query: str
    #: The client address as the WSGI server saw it (``REMOTE_ADDR``).
    remote_addr: str | None
    #: The body (for a multipart storage-plan upload: the file part, decoded).
    stream: Stream
    #: When the receiver started taking the upload (aware UTC).
    received_at: datetime
    #: For multipart storage-plan uploads: the document JSON part, parsed.
    document: dict[str, object] | None = None
    #: Anything a mount adds (e.g. ``{"multipart": True, "base64": True}``).
    extras: dict[str, object] = field(default_factory=dict)
    #: What the audio turned out to be; set once the stream has been read to its end.
    #: ``None`` when not inspected (inspection off, or not MP3/WAV by name, type or bytes).
    audio: AudioInfo | None = None

    @property
    def kind(self) -> Kind:
        """Which Kazoo feature sent it."""
        return self.name.kind

    @property
    def filename(self) -> str:
        """The file name as sent, decoded once."""
        return self.name.filename

    @property
    def segments(self) -> tuple[str, ...]:
        """Path segments between the prefix and the file name."""
        return self.name.segments

    @property
    def recording_id(self) -> str | None:
        """Kazoo 4.x's recording document id, when sent."""
        return self.metadata.recording_id

    @property
    def self_test(self) -> bool:
        """True for ``kzr-wsgi check``'s own uploads (call ids ``kzr-check-…``)."""
        return is_self_test(self.call_id)

    def describe(self) -> dict[str, Any]:
        """Everything known about the upload but its bytes, JSON-ready.

        What sidecars and notifications start from; stores add size, sha256 and where.
        """
        return {
            "kind": self.kind.value,
            "call_id": self.call_id,
            "filename": self.filename,
            "segments": list(self.segments),
            "ext": self.ext,
            "recording_id": self.recording_id,
            "content_type": self.content_type,
            "content_length": self.content_length,
            "received_at": self.received_at.isoformat(),
            "remote_addr": self.remote_addr,
            "query": self.query,
            "metadata": self.metadata.to_json(),
            "document": self.document,
            "extras": self.extras,
            "audio": self.audio.to_json() if self.audio is not None else None,
            "self_test": self.self_test,
        }


@dataclass(frozen=True)
class Stored:
    """What a store reports after it committed an upload."""

    #: Where it went: a filesystem path or an ``s3://bucket/key`` URL.
    location: str
    size: int
    #: Hex sha256 of the stored bytes.
    sha256: str
    #: False when an identical copy was already stored (a de-duplicated retry).
    created: bool = True
    #: Further locations, for stores that write to several places.
    also: tuple[str, ...] = ()


@dataclass
class StoredFile:
    """A stored file opened for reading: what the edge needs to answer a GET."""

    fileobj: IO[bytes]
    size: int
    content_type: str
    #: Strong validator (the sha256).
    etag: str
    last_modified: datetime
    location: str

    def close(self) -> None:
        """Close the underlying file object."""
        self.fileobj.close()


#: Anything that takes a :class:`Recording` and keeps its bytes.
Handler = Callable[[Recording], "Stored | None"]


@runtime_checkable
class ReadableStore(Protocol):
    """A handler that can also hand a stored file back.

    ``open`` returns the copy filed under ``name`` whose ``recording_id`` matches (when
    given), else the latest one; it raises :class:`~kzr_wsgi.errors.NotFound`.
    """

    def __call__(self, recording: Recording) -> Stored | None: ...

    def open(self, name: Name, recording_id: str | None = None) -> StoredFile: ...
