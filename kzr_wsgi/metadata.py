"""Kazoo's 4.x recording metadata, from the query string to typed values.

Pure: no I/O. Kazoo 4.x appends the call's details to the upload URL
(``?from=…&to=…&start=…&duration_ms=…&recording_id=…``). Versions differ in which
fields they send and in what order, so fields are read by name, unknown ones are
kept as text, and an empty field (``owner_id=``) becomes ``None``.

A value that should be a number but is not (a garbled ``start``) does not reject
the recording: the typed value is ``None`` and the raw text stays in
:attr:`Metadata.fields`. Refusing it would only make Kazoo retry the same bytes.

>>> m = parse_metadata([("start", "63871234567"), ("duration_ms", "1500"), ("owner_id", "")])
>>> m.duration_ms, m.owner_id, m.start.year
(1500, None, 2023)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote

#: Seconds from 0000-01-01 (proleptic Gregorian) to the Unix epoch: Kazoo's timestamps
#: count from year 0.
GREGORIAN_OFFSET = 62167219200

#: The fields Kazoo is known to send, mapped to the attribute that holds them.
#: ``from`` is a Python keyword, hence ``from_``.
KNOWN_FIELDS: Mapping[str, str] = {
    "from": "from_",
    "to": "to",
    "caller_id_name": "caller_id_name",
    "caller_id_number": "caller_id_number",
    "call_id": "call_id",
    "cdr_id": "cdr_id",
    "interaction_id": "interaction_id",
    "owner_id": "owner_id",
    "account_id": "account_id",
    "start": "start",
    "duration_ms": "duration_ms",
    "recording_id": "recording_id",
    "conference_recording": "conference_recording",
    "conference_id": "conference_id",
}


def kazoo_time(value: str) -> datetime | None:
    """Turn a Kazoo timestamp into an aware UTC datetime.

    Kazoo counts Gregorian seconds (Unix time + 62167219200); a value below that offset
    is taken as Unix seconds. Anything that is not a whole number gives ``None``.

    >>> kazoo_time("63871234567").isoformat()
    '2023-12-31T09:36:07+00:00'
    >>> kazoo_time("1700000000").year
    2023
    """
    try:
        seconds = int(value.strip())
    except ValueError:
        return None
    if seconds >= GREGORIAN_OFFSET:
        seconds -= GREGORIAN_OFFSET
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


@dataclass(frozen=True)
class Metadata:
    """What Kazoo said about a recording, by field name.

    ``fields`` holds every query field as decoded text (``None`` when empty), known or
    not, in arrival order; the attributes give the known ones typed. The operator's own
    query parameters (anything in the configured URL) show up in ``fields`` too.
    """

    #: Every field as text, ``None`` for an empty value.
    fields: Mapping[str, str | None] = field(default_factory=dict)
    from_: str | None = None
    to: str | None = None
    caller_id_name: str | None = None
    caller_id_number: str | None = None
    call_id: str | None = None
    cdr_id: str | None = None
    interaction_id: str | None = None
    owner_id: str | None = None
    account_id: str | None = None
    #: When the recording started, aware UTC.
    start: datetime | None = None
    duration_ms: int | None = None
    #: The recording's document id: tells apart several recordings of one call.
    recording_id: str | None = None
    conference_recording: str | None = None
    conference_id: str | None = None

    @property
    def extra(self) -> dict[str, str | None]:
        """The fields this version of kzr_wsgi does not know, as text."""
        return {k: v for k, v in self.fields.items() if k not in KNOWN_FIELDS}

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: every raw field, plus ``start`` as ISO 8601 when parsed."""
        out: dict[str, Any] = {"fields": dict(self.fields)}
        if self.start is not None:
            out["start_iso"] = self.start.isoformat()
        if self.duration_ms is not None:
            out["duration_ms"] = self.duration_ms
        return out


def parse_metadata(pairs: Iterable[tuple[str, str | None]]) -> Metadata:
    """Build :class:`Metadata` from decoded ``(name, value)`` pairs.

    A repeated name keeps its first value (Kazoo never repeats one; a later copy is
    more likely an appended operator parameter). Empty values become ``None``.
    """
    fields: dict[str, str | None] = {}
    for name, value in pairs:
        if name not in fields:
            fields[name] = value if value else None
    typed: dict[str, Any] = {}
    for name, attr in KNOWN_FIELDS.items():
        value = fields.get(name)
        if value is None:
            continue
        if name == "start":
            typed[attr] = kazoo_time(value)
        elif name == "duration_ms":
            typed[attr] = _int_or_none(value)
        else:
            typed[attr] = value
    return Metadata(fields=fields, **typed)


def split_query(raw_query: str) -> list[tuple[str, str | None]]:
    """Split a raw query string into ``(name, value)`` pairs, decoding each once.

    Order is kept. A bare ``name`` (no ``=``) has value ``None``. ``+`` stays a plus
    sign: Kazoo encodes spaces as ``%20``, and SIP call ids may hold a real ``+``.
    Bytes that are not UTF-8 are kept as surrogate escapes rather than dropped.
    """
    pairs: list[tuple[str, str | None]] = []
    if not raw_query:
        return pairs
    for item in raw_query.split("&"):
        if not item:
            continue
        name, eq, value = item.partition("=")
        pairs.append((_unquote(name), _unquote(value) if eq else None))
    return pairs


def _unquote(text: str) -> str:
    # QUERY_STRING is latin-1 text of the raw bytes: back to bytes, then UTF-8.
    return unquote(text.encode("latin-1", "replace").decode("utf-8", "surrogateescape"),
                   errors="surrogateescape")


def metadata_from_json(data: Mapping[str, Any]) -> Metadata:
    """Rebuild :class:`Metadata` from what :meth:`Metadata.to_json` wrote (a sidecar)."""
    raw = data.get("fields") or {}
    return parse_metadata((str(k), None if v is None else str(v)) for k, v in raw.items())


def dumps(obj: Any) -> str:
    """Serialise a sidecar record; non-UTF-8 text survives as surrogate escapes."""
    return json.dumps(obj, ensure_ascii=True, sort_keys=True, indent=2, default=str)
