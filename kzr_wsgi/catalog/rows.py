"""What a catalog row is, made from a sidecar: pure, no I/O.

A sidecar (the JSON a store writes beside each stored file, and into its index
entry) is the source of truth; a :class:`Row` is what the catalog keeps of it to
search by and to show. :func:`row_from_record` makes one, :func:`row_id` names it,
and :func:`parse_when` reads the times an operator types (``2026-01-31`` or an ISO
time).

>>> parse_when("2026-01-31", end=True).isoformat()
'2026-01-31T23:59:59.999999+00:00'
>>> normalise_number("+15555550100@realm.example")
'+15555550100'
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from ..audio import AudioInfo
from ..metadata import metadata_from_json
from ..recording import SELF_TEST_PREFIX, Kind, Name
from .analysis import ALL_FLAGS, DEFECT_FLAGS, AnalysisState
from .transcript_state import TranscriptState

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Row:
    """One stored copy as the catalog knows it (see the manual's catalog page).

    Every text field is untrusted (it came in an upload): show it escaped.
    """

    id: str
    kind: str
    call_id: str | None
    recording_id: str | None
    account_id: str | None
    owner_id: str | None
    from_: str | None
    to: str | None
    caller_id_name: str | None
    caller_id_number: str | None
    #: Kazoo's ``start`` (aware UTC), when it sent one.
    start: datetime | None
    #: Kazoo's ``duration_ms`` (what FreeSWITCH says it wrote), not the audio's own.
    duration_ms: int | None
    received_at: datetime
    size: int
    sha256: str
    content_type: str | None
    #: Where the bytes are: an absolute path or an ``s3://bucket/key`` URL.
    location: str
    segments: tuple[str, ...]
    filename: str
    audio: AudioInfo | None
    self_test: bool
    #: Insertion order in this catalog (grows); 0 for a row not read from a catalog.
    seq: int = 0
    #: Its analysis (its ``analyse`` job); ``None`` when it has none (a row from before
    #: the analysis, or stored with the pipeline off).
    analysis: AnalysisState | None = None
    #: Its transcription (its ``transcribe`` job); ``None`` when it has none.
    transcript: TranscriptState | None = None

    @property
    def sort_at(self) -> datetime:
        """The time rows are ordered and filtered by: Kazoo's ``start``, else ``received_at``."""
        return self.start if self.start is not None else self.received_at

    @property
    def flags(self) -> tuple[str, ...]:
        """The audio's flags (empty when not inspected)."""
        return self.audio.flags if self.audio is not None else ()

    @property
    def all_flags(self) -> tuple[str, ...]:
        """The inspection's flags and the analysis's, once each, in one order."""
        found = {*self.flags, *(self.analysis.flags if self.analysis is not None else ())}
        return tuple(f for f in ALL_FLAGS if f in found)

    @property
    def defects(self) -> tuple[str, ...]:
        """The flags that are defects (what "flagged" means): see
        :data:`~kzr_wsgi.catalog.analysis.DEFECT_FLAGS`."""
        return tuple(f for f in self.all_flags if f in DEFECT_FLAGS)

    @property
    def name(self) -> Name:
        """The name the copy is filed under (what a read of its URL finds)."""
        return Name(Kind(self.kind), self.segments, self.filename)

    def copy_record(self) -> dict[str, Any]:
        """What a store needs to find this row's copy (its name, recording id, sha256), as
        the store contract's :class:`~kzr_wsgi.stores.base.CompanionKeeper` takes it."""
        return {"kind": self.kind, "segments": list(self.segments), "filename": self.filename,
                "recording_id": self.recording_id, "sha256": self.sha256,
                "location": self.location}

    def to_json(self, caller: str = "left") -> dict[str, Any]:
        """The row as JSON: ``ls --json``'s objects, times ISO 8601 UTC.

        ``caller`` is the side of a stereo recording the caller is on, for the
        ``analysis``'s speakers (see :class:`~kzr_wsgi.catalog.analysis.AnalysisState`).
        """
        return {
            "id": self.id,
            "kind": self.kind,
            "call_id": self.call_id,
            "recording_id": self.recording_id,
            "account_id": self.account_id,
            "owner_id": self.owner_id,
            "from": self.from_,
            "to": self.to,
            "caller_id_name": self.caller_id_name,
            "caller_id_number": self.caller_id_number,
            "start": _iso(self.start),
            "duration_ms": self.duration_ms,
            "received_at": _iso(self.received_at),
            "size": self.size,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "location": self.location,
            "segments": list(self.segments),
            "filename": self.filename,
            "audio": self.audio.to_json() if self.audio is not None else None,
            "self_test": self.self_test,
            "analysis": self.analysis.to_json(caller) if self.analysis is not None else None,
            "transcript": (self.transcript.to_json() if self.transcript is not None
                           else None),
        }


def row_id(record: Mapping[str, Any]) -> str:
    """The row's id: from the copy's name, ``recording_id`` and sha256 (32 hex digits).

    The same on every host and after every ``reindex``: a retry of one recording
    has the same id (one row), a second body under one name another.
    """
    name = _name(record)
    blob = json.dumps([list(name.key), record.get("recording_id"), record["sha256"]],
                      ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("ascii")).hexdigest()[:32]


def row_from_record(record: Mapping[str, Any], location: str | None = None) -> Row:
    """The :class:`Row` for a sidecar dict (``location`` overrides the record's own).

    Raises ``ValueError`` (or ``KeyError``) for a record that is not a sidecar.
    """
    meta = metadata_from_json(record.get("metadata") or {})
    kind = Kind(record["kind"]).value
    call_id = _opt_text(record.get("call_id"))
    account_id = meta.account_id
    if account_id is None and kind == Kind.ATTACHMENT.value:
        account_id = _document_account(record.get("document"))
    audio = record.get("audio")
    where = location if location is not None else record.get("location")
    if not where:
        raise ValueError("the record names no location")
    return Row(
        id=row_id(record),
        kind=kind,
        call_id=call_id,
        recording_id=_opt_text(record.get("recording_id")),
        account_id=_opt_text(account_id),
        owner_id=_opt_text(meta.owner_id),
        from_=_opt_text(meta.from_),
        to=_opt_text(meta.to),
        caller_id_name=_opt_text(meta.caller_id_name),
        caller_id_number=_opt_text(meta.caller_id_number),
        start=meta.start,
        duration_ms=meta.duration_ms,
        received_at=_parse_iso(str(record["received_at"])),
        size=int(record["size"]),
        sha256=str(record["sha256"]),
        content_type=_opt_text(record.get("content_type")),
        location=clean_text(str(where)),
        segments=tuple(clean_text(str(s)) for s in record.get("segments") or ()),
        filename=clean_text(str(record.get("filename") or "")),
        audio=AudioInfo.from_json(audio) if isinstance(audio, Mapping) else None,
        self_test=bool(record.get("self_test"))
        or (call_id is not None and call_id.startswith(SELF_TEST_PREFIX)),
    )


def normalise_number(text: str) -> str:
    """A number as ``--number`` compares it: any ``@realm`` suffix dropped.

    >>> normalise_number("1001@a.example"), normalise_number("1001")
    ('1001', '1001')
    """
    return clean_text(text).partition("@")[0]


def clean_text(text: str) -> str:
    """``text`` as a database can hold it: lone surrogates and NUL become U+FFFD.

    Upload metadata that was not UTF-8 reaches Python as surrogate escapes, which
    neither SQLite's nor PostgreSQL's driver will encode, and PostgreSQL refuses NUL.
    The sidecar keeps the exact text; the catalog is for finding it.
    """
    fixed = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return fixed.replace("\x00", "\ufffd")


def parse_when(text: str, end: bool = False) -> datetime:
    """A time an operator typed, as an aware UTC datetime.

    A bare date (``2026-01-31``) is UTC midnight, or with ``end=True`` the last
    microsecond of that day (so ``--until DATE`` includes the whole day). Anything
    else is an ISO 8601 time; without an offset it is taken as UTC. Raises
    ``ValueError`` for anything else.

    >>> parse_when("2026-01-31T10:00:00+02:00").isoformat()
    '2026-01-31T08:00:00+00:00'
    """
    text = text.strip()
    if _DATE.fullmatch(text):
        day = date.fromisoformat(text)
        start = datetime.combine(day, time(0), tzinfo=timezone.utc)
        return start + timedelta(days=1, microseconds=-1) if end else start
    return _parse_iso(text)


def _parse_iso(text: str) -> datetime:
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a date (YYYY-MM-DD) or ISO 8601 time: {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(timezone.utc).isoformat()


def _opt_text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return clean_text(str(value))


def _name(record: Mapping[str, Any]) -> Name:
    return Name(Kind(record["kind"]), tuple(str(s) for s in record.get("segments") or ()),
                str(record.get("filename") or ""))


def _document_account(document: object) -> str | None:
    """The account a storage-plan document names (Kazoo's private field, or a public one)."""
    if not isinstance(document, Mapping):
        return None
    for key in ("pvt_account_id", "account_id"):
        value = document.get(key)
        if isinstance(value, str) and value:
            return value
    return None
