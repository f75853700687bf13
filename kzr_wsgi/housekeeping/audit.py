"""The audit trail: one JSON line for every deletion and every hold added or removed.

Each event has the keys ``at``, ``action`` (``delete``, ``hold_add``, ``hold_rm``),
``user``, ``call_id``, ``recording_id``, ``account_id``, ``location``, ``size``,
``sha256``, ``received_at`` and ``reason`` (the policy and the age, or the hold's
reason), plus ``id`` (the event's own id: for a deletion, derived from the copy it
removed, so the same deletion is never recorded twice) and ``hold_id``.

An erasure (``erase``, by ``kzr-wsgi erase``) is recorded without the person: its
``call_id``, ``recording_id``, ``account_id`` and ``location`` are ``null``; it names the
copy by ``row_id`` (the catalog id) and ``sha256``, with ``size``, the ``stores`` it was
removed from, the ``request`` reference and the ``selector`` as a keyed hash (see
:mod:`kzr_wsgi.housekeeping.tombstones`). Lines written before these keys existed lack
them (they are read as ``null``).

* disk: ``ROOT/.kzr/audit.jsonl``, appended under an exclusive ``flock``; each line is
  ``fsync``-ed before :meth:`AuditTrail.append` returns, i.e. before the file it
  records is removed;
* S3: one object per event, ``PREFIX/.kzr/audit/<id>.json``, written with
  ``If-None-Match: *`` (a second writer of the same deletion is refused, not doubled).

``kzr-wsgi audit`` prints each event as :func:`event_line` renders it: the ids as they
were sent, so a grep for a call id finds its deletion.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from ..naming import shown
from ..stores.directory.files import fsync_dir
from ..stores.state import DiskState, S3State
from ..textenum import TextEnum

#: The keys of every event, in the order they are written.
KEYS = ("at", "action", "user", "call_id", "recording_id", "account_id", "location", "size",
        "sha256", "received_at", "reason", "id", "hold_id", "row_id", "request", "selector",
        "stores")


class Action(TextEnum):
    """What an event records; the value is what the trail stores and prints."""

    #: A copy removed (by ``prune`` or the housekeeper).
    DELETE = "delete"
    #: A hold placed.
    HOLD_ADD = "hold_add"
    #: A hold lifted.
    HOLD_RM = "hold_rm"
    #: A copy erased on request (``kzr-wsgi erase``): recorded without the person.
    ERASE = "erase"


#: The actions by their older names (:class:`Action`'s members).
DELETE, HOLD_ADD, HOLD_RM = Action.DELETE, Action.HOLD_ADD, Action.HOLD_RM

#: How much of a deletion's sha256 :func:`event_line` shows: enough to tell copies apart.
SHA256_SHOWN = 12
#: S3's LastModified and the event's own ``at`` differ by the PUT's duration: filter with slack.
_SLACK = timedelta(minutes=5)


def os_user() -> str:
    """Who runs this process, as the audit trail names them."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def audit_event(action: Action, facts: Mapping[str, Any], *, user: str, reason: str,
                event_id: str, hold_id: str | None = None,
                at: datetime | None = None) -> dict[str, Any]:
    """One event with every key (those ``facts`` lacks are ``null``)."""
    event: dict[str, Any] = dict.fromkeys(KEYS)
    for key in ("call_id", "recording_id", "account_id", "location", "size", "sha256",
                "received_at"):
        value = facts.get(key)
        event[key] = value.isoformat() if isinstance(value, datetime) else value
    event.update(at=(at or datetime.now(timezone.utc)).isoformat(), action=action.value,
                 user=user,
                 reason=reason, id=event_id, hold_id=hold_id)
    return event


class AuditTrail:
    """The audit trail of one store (disk or S3)."""

    def __init__(self, state: DiskState | S3State) -> None:
        #: Where it is kept.
        self.state = state

    @property
    def where(self) -> str:
        """``ROOT/.kzr/audit.jsonl`` or ``s3://bucket/PREFIX/.kzr/audit/``."""
        if isinstance(self.state, DiskState):
            return str(self.state.path("audit.jsonl"))
        return self.state.where + "audit/"

    def mark(self) -> int:
        """A position to pass to :meth:`append` as ``after`` (disk: the file's size)."""
        if isinstance(self.state, DiskState):
            try:
                return self.state.path("audit.jsonl").stat().st_size
            except FileNotFoundError:
                return 0
        return 0

    def append(self, event: Mapping[str, Any], after: int | None = None) -> bool:
        """Record ``event`` durably; False (nothing written) when its id is already there.

        On disk the file is searched for the id from ``after`` on (a :meth:`mark` taken
        before the event could have been written); without ``after`` it is not searched.
        On S3 the object's name is the id, so a second append is always refused.
        """
        line = json.dumps({k: event.get(k) for k in KEYS}, ensure_ascii=True)
        if isinstance(self.state, S3State):
            return self.state.create(f"audit/{event['id']}.json", line.encode("ascii"))
        path = self.state.path("audit.jsonl")
        self.state.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if after is not None and _contains(fd, after, size, str(event["id"])):
                return False
            prefix = b""
            if size and os.pread(fd, 1, size - 1) != b"\n":
                prefix = b"\n"  # a line torn by a crash stays on its own line
            os.write(fd, prefix + line.encode("ascii") + b"\n")
            os.fsync(fd)
            if size == 0:
                fsync_dir(path.parent)  # a new file: its name must be durable too
        finally:
            os.close(fd)
        return True

    def read(self, since: datetime | None = None, until: datetime | None = None,
             call_id: str | None = None, request: str | None = None
             ) -> Iterator[dict[str, Any]]:
        """The events in time order; ``since``/``until`` (inclusive) compare ``at``;
        ``request``: only an erase request's events."""

        def wanted(event: Mapping[str, Any]) -> bool:
            try:
                at = datetime.fromisoformat(str(event["at"]))
            except (KeyError, ValueError):
                return False
            return ((since is None or at >= since) and (until is None or at <= until)
                    and (call_id is None or event.get("call_id") == call_id)
                    and (request is None or event.get("request") == request))

        if isinstance(self.state, DiskState):
            try:
                fh = open(self.state.path("audit.jsonl"), "rb")  # noqa: SIM115 - closed below
            except FileNotFoundError:
                return
            with fh:
                for raw in fh:
                    event = _parse(raw)
                    if event is not None and wanted(event):
                        yield event
            return
        events = []
        for name, modified in self.state.list("audit"):
            if since is not None and modified < since - _SLACK:
                continue
            if until is not None and modified > until + _SLACK:
                continue
            data = self.state.read(name)
            event = _parse(data) if data is not None else None
            if event is not None and wanted(event):
                events.append(event)
        events.sort(key=lambda e: (str(e["at"]), str(e["id"])))
        yield from events


def event_line(event: Mapping[str, Any]) -> str:
    """One event as ``kzr-wsgi audit`` prints it: a line of text, every value escaped.

    When, what, who; then what it concerns: the call id, recording id and account as
    they were sent (never percent-encoded as in a location), the start of the copy's
    sha256, where the copy was and its size; then the reason. Values a recording carried
    are shown with their control characters escaped (:func:`~kzr_wsgi.naming.shown`,
    as ``kzr-wsgi ls`` does), so nothing in them can move the cursor or forge a line.
    """
    facts = [f"{key}={shown(str(event[key]))}"
             for key in ("request", "row_id", "call_id", "recording_id", "account_id")
             if event.get(key)]
    if event.get("stores"):
        facts.append("stores=" + ",".join(shown(str(s)) for s in event["stores"]))
    if event.get("selector"):
        facts.append(f"selector={shown(str(event['selector']))[:SHA256_SHOWN]}")
    if event.get("sha256"):
        facts.append(f"sha256={shown(str(event['sha256'])[:SHA256_SHOWN])}")
    if event.get("location"):
        facts.append(shown(str(event["location"])))
    if event.get("size") is not None:
        facts.append(f"{shown(str(event['size']))} bytes")
    action = shown(str(event.get("action")))
    return (f"{shown(str(event.get('at')))}  {action:8}  {shown(str(event.get('user')))}  "
            f"{' '.join(facts)}  ({shown(str(event.get('reason')))})")


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(raw)
    except ValueError:
        return None  # a line torn by a crash: it recorded nothing that happened
    return event if isinstance(event, dict) else None


def _contains(fd: int, start: int, end: int, event_id: str) -> bool:
    """True when a line of the file between ``start`` and ``end`` has this event id."""
    needle = json.dumps(event_id).encode("ascii")
    data = os.pread(fd, max(0, end - start), start) if end > start else b""
    for raw in data.splitlines():
        if needle in raw:
            event = _parse(raw)
            if event is not None and event.get("id") == event_id:
                return True
    return False
