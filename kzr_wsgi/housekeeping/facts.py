"""What housekeeping needs to know of a stored copy, read from its sidecar dict.

Placeholder until the catalog's ``row_from_record`` is on main (then this module
only adapts it).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from ..metadata import metadata_from_json
from ..recording import SELF_TEST_PREFIX, Kind, Name

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Facts:
    """A stored copy as retention sees it."""

    kind: str
    call_id: str | None
    recording_id: str | None
    account_id: str | None
    start: datetime | None
    received_at: datetime
    size: int
    sha256: str
    location: str
    self_test: bool
    #: The catalog's row id.
    row_id: str

    @property
    def sort_at(self) -> datetime:
        """Kazoo's start, else the time received: what an age is measured from."""
        return self.start or self.received_at

    def get(self, key: str) -> Any:
        """A fact by name (what holds select by)."""
        return getattr(self, key, None)


def name_of(record: Mapping[str, Any]) -> Name:
    """The :class:`Name` a sidecar dict was filed under."""
    return Name(Kind(record["kind"]), tuple(record.get("segments") or ()),
                str(record.get("filename") or ""))


def facts(record: Mapping[str, Any]) -> Facts:
    """The facts of a sidecar dict; raises ``ValueError``/``KeyError`` for a non-sidecar."""
    meta = metadata_from_json(record.get("metadata") or {})
    kind = Kind(record["kind"]).value
    account_id = meta.account_id
    document = record.get("document")
    if account_id is None and kind == Kind.ATTACHMENT.value and isinstance(document, dict):
        value = document.get("account_id") or document.get("pvt_account_id")
        account_id = str(value) if value else None
    call_id = record.get("call_id") or None
    return Facts(
        kind=kind,
        call_id=call_id,
        recording_id=record.get("recording_id") or None,
        account_id=account_id,
        start=meta.start,
        received_at=parse_when(str(record["received_at"])),
        size=int(record["size"]),
        sha256=str(record["sha256"]),
        location=str(record["location"]),
        self_test=bool(record.get("self_test"))
        or (call_id is not None and str(call_id).startswith(SELF_TEST_PREFIX)),
        row_id=row_id(record),
    )


def row_id(record: Mapping[str, Any]) -> str:
    """The catalog row id of a sidecar dict."""
    blob = json.dumps([list(name_of(record).key), record.get("recording_id"), record["sha256"]],
                      ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("ascii")).hexdigest()[:32]


def parse_when(text: str, end: bool = False) -> datetime:
    """A date (UTC midnight; with ``end`` its last microsecond) or an ISO 8601 time."""
    text = text.strip()
    if _DATE.fullmatch(text):
        start = datetime.combine(date.fromisoformat(text), time(0), tzinfo=timezone.utc)
        return start + timedelta(days=1, microseconds=-1) if end else start
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a date (YYYY-MM-DD) or ISO 8601 time: {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)
