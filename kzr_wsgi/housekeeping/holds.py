"""Legal holds: selectors that keep recordings from being pruned, whatever the policy.

A hold names a call id, a recording id or an account, with a reason, who placed it
and when. It covers every matching recording, those stored after it too. Holds live
with the store so that every host sees them:

* disk: ``ROOT/.kzr/holds.json``, one JSON document, rewritten atomically (temporary
  file, ``fsync``, rename) under an exclusive ``flock`` on ``ROOT/.kzr/holds.lock``;
* S3: one object per hold, ``PREFIX/.kzr/holds/<id>.json`` (no read-modify-write of a
  shared object, so two hosts adding holds at once both keep theirs).

Every hold added or removed is also a line in the audit trail (see
:mod:`kzr_wsgi.housekeeping.audit`); :func:`add_hold` and :func:`remove_hold` do both.

>>> hold = Hold.new("call_id", "abc@pbx", reason="case 12", user="ops")
>>> hold.covers({"call_id": "abc@pbx"}), hold.covers({"call_id": "other"})
(True, False)
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from ..errors import KzrError
from ..stores.state import DiskState, S3State
from .audit import Action, AuditTrail, audit_event, os_user

#: What a hold may select by: the key of a recording's facts it compares.
SELECTORS = ("call_id", "recording_id", "account_id")


class HoldError(KzrError):
    """A hold that cannot be placed or removed (no such id, an empty reason, …)."""


@dataclass(frozen=True)
class Hold:
    """One legal hold: recordings whose ``selector`` equals ``value`` are never pruned."""

    id: str
    #: ``call_id``, ``recording_id`` or ``account_id``.
    selector: str
    value: str
    reason: str
    #: Who placed it (the OS user; a viewer's name in a UI).
    user: str
    #: When, aware UTC.
    at: datetime

    @classmethod
    def new(cls, selector: str, value: str, *, reason: str, user: str | None = None) -> Hold:
        """A fresh hold with a new id; raises :class:`HoldError` for a bad selector or reason."""
        if selector not in SELECTORS:
            raise HoldError(f"a hold selects by {', '.join(SELECTORS)}, not {selector!r}")
        if not value:
            raise HoldError(f"a hold needs a {selector}")
        if not reason.strip():
            raise HoldError("a hold needs a reason")
        return cls(id="h-" + secrets.token_hex(6), selector=selector, value=value,
                   reason=reason, user=user or os_user(),
                   at=datetime.now(timezone.utc))

    def covers(self, facts: Mapping[str, Any]) -> bool:
        """True when the recording with these facts (``call_id``, …) is held."""
        return facts.get(self.selector) == self.value

    def to_json(self) -> dict[str, Any]:
        """JSON-ready; ``at`` as ISO 8601 UTC."""
        return {**asdict(self), "at": self.at.isoformat()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Hold:
        """The inverse of :meth:`to_json`."""
        return cls(id=str(data["id"]), selector=str(data["selector"]), value=str(data["value"]),
                   reason=str(data["reason"]), user=str(data["user"]),
                   at=datetime.fromisoformat(str(data["at"])))


class Holds:
    """The holds of one store (disk or S3)."""

    def __init__(self, state: DiskState | S3State) -> None:
        #: Where they are kept.
        self.state = state

    def list(self) -> list[Hold]:
        """Every hold, oldest first."""
        if isinstance(self.state, DiskState):
            holds = list(self._read_disk().values())
        else:
            holds = []
            for name, _ in self.state.list("holds"):
                data = self.state.read(name)
                if data is not None:
                    holds.append(Hold.from_json(json.loads(data)))
        return sorted(holds, key=lambda h: (h.at, h.id))

    def add(self, hold: Hold) -> None:
        """Keep ``hold`` (durable when this returns)."""
        body = json.dumps(hold.to_json(), sort_keys=True).encode("utf-8")
        if isinstance(self.state, S3State):
            self.state.write(f"holds/{hold.id}.json", body)
            return
        with self.state.locked("holds.lock"):
            holds = self._read_disk()
            holds[hold.id] = hold
            self._write_disk(holds)

    def remove(self, hold_id: str) -> Hold:
        """Lift the hold ``hold_id``; return it. Raises :class:`HoldError` when there is none."""
        if isinstance(self.state, S3State):
            name = f"holds/{_safe_id(hold_id)}.json"
            data = self.state.read(name)
            if data is None:
                raise HoldError(f"no hold {hold_id!r}")
            self.state.delete(name)
            return Hold.from_json(json.loads(data))
        with self.state.locked("holds.lock"):
            holds = self._read_disk()
            hold = holds.pop(hold_id, None)
            if hold is None:
                raise HoldError(f"no hold {hold_id!r}")
            self._write_disk(holds)
            return hold

    def _read_disk(self) -> dict[str, Hold]:
        assert isinstance(self.state, DiskState)
        data = self.state.read("holds.json")
        if data is None:
            return {}
        try:
            items = json.loads(data)["holds"]
        except (ValueError, KeyError, TypeError) as exc:
            # Never guess: a hold file that cannot be read stops pruning altogether.
            raise HoldError(f"{self.state.path('holds.json')} is unreadable: {exc}") from exc
        return {h["id"]: Hold.from_json(h) for h in items}

    def _write_disk(self, holds: dict[str, Hold]) -> None:
        assert isinstance(self.state, DiskState)
        doc = {"holds": [h.to_json() for h in holds.values()]}
        self.state.write("holds.json", json.dumps(doc, sort_keys=True, indent=2).encode())


def add_hold(holds: Holds, trail: AuditTrail, hold: Hold) -> None:
    """Place ``hold`` and record it in the audit trail (the hold first: it protects)."""
    holds.add(hold)
    trail.append(_event(Action.HOLD_ADD, hold))


def remove_hold(holds: Holds, trail: AuditTrail, hold_id: str, user: str | None = None) -> Hold:
    """Lift a hold and record that in the audit trail; return the hold lifted."""
    hold = holds.remove(hold_id)
    trail.append(_event(Action.HOLD_RM, hold, user=user or os_user()))
    return hold


def _event(action: Action, hold: Hold, user: str | None = None) -> dict[str, Any]:
    facts: dict[str, Any] = {hold.selector: hold.value}
    return audit_event(action, facts, user=user or hold.user, reason=hold.reason,
                       event_id=f"{hold.id}-{action.value}-{secrets.token_hex(4)}", hold_id=hold.id)


def _safe_id(hold_id: str) -> str:
    """A hold id as it can appear in a key: ids are ``h-`` and hex; anything else is no id."""
    if not hold_id.startswith("h-") or not all(c in "0123456789abcdef" for c in hold_id[2:]):
        raise HoldError(f"no hold {hold_id!r}")
    return hold_id
