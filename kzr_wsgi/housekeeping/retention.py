"""Pruning: remove what is older than the law allows, exactly, explainably, safely.

:func:`prune` walks the store's own index (every committed copy; the catalog is not
trusted to be complete), decides for each copy with a :class:`Selection` (``--older-than``
with ``--account``/``--kind``, or the config file's :class:`~kzr_wsgi.config.RetentionPolicy`),
spares every copy a :class:`~kzr_wsgi.housekeeping.holds.Hold` covers, and removes the
rest one by one. Ages are measured from Kazoo's ``start``, else the time received.

**The order of a removal**, each step durable before the next, so a crash anywhere
loses no bookkeeping and a rerun finishes the job:

1. a journal marker ``.kzr/pruning/<id>.json`` (the copy's sidecar dict and where the
   audit trail ended): what a rerun finishes first;
2. the audit line (``delete``): written at most once per copy, whoever writes it;
3. the index entry (only if it still names this copy): from now on the recording is
   not stored: read-back is ``404`` and a Kazoo retry stores it afresh;
4. the catalog row;
5. the file or object, then its sidecar;
6. the journal marker.

**Beside live uploads and other prunes.** On disk, steps 1-6 run under the index
shard's ``flock``, the lock uploads of the same name commit under: a retry is either
de-duplicated before the removal (and then removed with it: it *is* that recording)
or stored afresh after it, never half. A second prune waits for the lock and finds
the entry gone. On S3 there are no locks: the audit object is created with
``If-None-Match`` (only one prune records a deletion), the index entry is deleted with
``If-Match`` (a re-stored recording's new entry is never touched), and every other step
is idempotent. A deletion is reported as ``removed`` only by the prune that wrote its
audit line; one that completes another's is ``finished`` (:class:`Outcome`).

Each step is a crash point (``prune.journal`` … ``prune.file``, see :mod:`kzr_wsgi.faults`)
for the tests that kill a prune half-way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from ..ages import format_age
from ..catalog import Catalog, Row, row_from_record
from ..errors import KzrError
from ..faults import crash_point
from ..stores.base import CopyStore, Store
from ..stores.state import DiskState, S3State
from ..textenum import TextEnum
from .audit import Action, AuditTrail, audit_event, os_user
from .holds import Hold, Holds
from .policy import RetentionPolicy

log = logging.getLogger("kzr_wsgi.prune")

#: What ``--kind`` means when not given: storage-plan attachments (voicemail, greetings,
#: prompts Kazoo still plays) are pruned only when named.
DEFAULT_KINDS = ("call", "caller")
#: Copies received more recently than this are left for the next run, whatever their
#: Kazoo start: their upload may still be writing its catalog row after the commit.
SETTLE = timedelta(minutes=1)
#: How often the holds are read again during a long prune.
HOLDS_REFRESH = 5.0


class Outcome(TextEnum):
    """What became of a copy prune looked at; the value is how the command prints it."""

    #: This prune removed it (and wrote its audit line).
    REMOVED = "removed"
    #: A dry run: it would be removed.
    WOULD_REMOVE = "would remove"
    #: This prune finished a removal an interrupted or concurrent prune began.
    FINISHED = "finished"
    #: Due, but kept for a hold.
    HELD = "held"


@dataclass(frozen=True)
class Selection:
    """Which copies are due: ``--older-than`` (with accounts and kinds), or a policy."""

    older_than: timedelta | None = None
    #: Only these accounts (empty: all).
    accounts: tuple[str, ...] = ()
    #: Only these kinds.
    kinds: tuple[str, ...] = DEFAULT_KINDS
    policy: RetentionPolicy | None = None

    def __post_init__(self) -> None:
        if (self.older_than is None) == (self.policy is None):
            raise ValueError("a selection is by --older-than or by a policy, exactly one")

    def limit_for(self, f: Row) -> tuple[timedelta | None, str]:
        """How old ``f`` may be (``None``: kept forever), and which rule says so."""
        if self.policy is not None:
            age = self.policy.age_for(f.account_id, f.kind)
            if f.account_id is not None and f.account_id in self.policy.accounts:
                rule = f"policy account {f.account_id}"
            elif f.kind in self.policy.kinds:
                rule = f"policy kind {f.kind}"
            else:
                rule = "policy default"
            return age, f"{rule} {format_age(age)}"
        if f.kind not in self.kinds or (self.accounts and f.account_id not in self.accounts):
            return None, "not selected"
        return self.older_than, f"--older-than {format_age(self.older_than)}"

    def due(self, f: Row, now: datetime) -> str | None:
        """The reason ``f`` is due for removal (rule and age), or ``None`` when it is kept."""
        limit, rule = self.limit_for(f)
        if limit is None:
            return None
        age = now - f.sort_at
        if age < limit:
            return None
        return f"{rule}; age {_days(age)}"


@dataclass
class Item:
    """One copy prune removed, would remove, or kept for a hold."""

    location: str
    size: int
    facts: Row
    reason: str
    outcome: Outcome
    hold: Hold | None = None

    def line(self) -> str:
        """What the command prints for it."""
        what = f"{self.outcome.value:12} {self.location}  {self.size} bytes"
        if self.hold is not None:
            return f"{what}  (hold {self.hold.id}: {self.hold.selector} {self.hold.value})"
        return f"{what}  ({self.reason})"


@dataclass
class Summary:
    """What a prune did."""

    dry_run: bool
    removed: int = 0
    bytes: int = 0
    held: int = 0
    finished: int = 0
    examined: int = 0
    #: Due, but received less than :data:`SETTLE` ago: left for the next run.
    settling: int = 0
    #: Every item, when :func:`prune` was asked to ``collect`` them.
    items: list[Item] = field(default_factory=list)

    def line(self) -> str:
        """The one-line summary printed and logged."""
        verb = "would remove" if self.dry_run else "removed"
        text = (f"{verb} {self.removed} recording(s), {self.bytes} bytes; "
                f"kept {self.held} for holds; examined {self.examined}")
        if self.finished:
            text += (f"; finished {self.finished} removal(s) an interrupted or concurrent "
                     "prune began")
        if self.settling:
            # Otherwise a prune right after an upload says "0" and nobody can tell why.
            text += (f"; left {self.settling} due but received less than a minute ago "
                     "for the next run")
        return text


def prune(store: Store, selection: Selection, *, dry_run: bool = False,
          now: datetime | None = None, catalog: Catalog | None = None,
          report: Callable[[Item], None] | None = None, collect: bool = False) -> Summary:
    """Prune ``store`` (a DirectoryStore, S3Store or FanOut of them); return the summary.

    Every store that holds copies (:meth:`~kzr_wsgi.stores.base.ServedStore.parts`) is
    walked; holds and the journal are where the store keeps its state. ``catalog``
    defaults to each such store's own. ``report`` is called with each :class:`Item` as it
    happens; with ``collect`` they are also kept in :attr:`Summary.items` (memory grows
    with them: leave it off for a store of millions).
    """
    now = now or datetime.now(timezone.utc)
    pruner = _Pruner(store.state(), dry_run, report or (lambda item: None), collect)
    targets = store.parts()
    if not targets:
        raise KzrError(f"{store!r} cannot remove recordings")
    if not dry_run:
        pruner.finish_pending(targets, catalog)
    for target in targets:
        target_catalog = catalog if catalog is not None else target.catalog
        for record in target.records():
            pruner.consider(target, target_catalog, record, selection, now)
    return pruner.summary


def deletion_id(record: Mapping[str, Any]) -> str:
    """The id of the deletion of this very copy (its audit event id): the same on every host."""
    blob = json.dumps([record.get("location"), record.get("sha256"), record.get("received_at"),
                       record.get("recording_id")], ensure_ascii=True, separators=(",", ":"))
    return "d-" + hashlib.sha256(blob.encode("ascii")).hexdigest()[:32]


class _Pruner:
    def __init__(self, state: DiskState | S3State, dry_run: bool,
                 report: Callable[[Item], None], collect: bool) -> None:
        self.state = state
        self.collect = collect
        self.trail = AuditTrail(state)
        self.holds = Holds(state)
        self.dry_run = dry_run
        self.report = report
        self.summary = Summary(dry_run=dry_run)
        self.user = os_user()
        self._held: list[Hold] = []
        self._held_at = -HOLDS_REFRESH

    def held_by(self, f: Row) -> Hold | None:
        # Read again now and then: a hold placed during a long prune takes effect.
        if time.monotonic() - self._held_at >= HOLDS_REFRESH:
            self._held = self.holds.list()
            self._held_at = time.monotonic()
        return next((h for h in self._held if h.covers({
            "call_id": f.call_id, "recording_id": f.recording_id,
            "account_id": f.account_id})), None)

    def consider(self, target: CopyStore, catalog: Catalog | None, record: dict[str, Any],
                 selection: Selection, now: datetime) -> None:
        try:
            f = row_from_record(record)
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("skipping an unreadable index entry (%s): %r", exc, record)
            return
        self.summary.examined += 1
        reason = selection.due(f, now)
        if reason is None:
            return
        if now - f.received_at < SETTLE:
            self.summary.settling += 1
            return
        hold = self.held_by(f)
        if hold is not None:
            self._add(Item(f.location, f.size, f, reason, Outcome.HELD, hold))
            self.summary.held += 1
            return
        if self.dry_run:
            self._count(Item(f.location, f.size, f, reason, Outcome.WOULD_REMOVE))
            return
        outcome = self.remove(target, catalog, record, f, reason)
        if outcome is not None:
            self._count(Item(f.location, f.size, f, reason, outcome))

    def finish_pending(self, targets: Sequence[CopyStore], catalog: Catalog | None) -> None:
        """Finish every removal a prune began and did not end (its journal marker remains)."""
        for name, _ in list(self.state.list("pruning")):
            data = self.state.read(name)
            if data is None:
                continue  # its prune finished it meanwhile
            marker = json.loads(data)
            record = marker["record"]
            location = str(record.get("location", ""))
            target = next((t for t in targets if t.owns(location)), None)
            if target is None:
                log.warning("journal %s names a copy in no store given here: left", name)
                continue
            target_catalog = catalog if catalog is not None else target.catalog
            f = row_from_record(record)
            outcome = self.remove(target, target_catalog, record, f, marker["reason"])
            if outcome is not None:
                self._count(Item(f.location, f.size, f, marker["reason"], outcome))

    def remove(self, target: CopyStore, catalog: Catalog | None, record: dict[str, Any],
               f: Row, reason: str) -> Outcome | None:
        """Run the removal's steps; ``REMOVED``, ``FINISHED``, or ``None`` if another did it."""
        did = deletion_id(record)
        marker_name = f"pruning/{did}.json"
        with target.index_lock(record):
            existing = self.state.read(marker_name)
            if existing is None:
                if not target.indexes(record):
                    return None  # removed (or replaced) by another prune meanwhile
                after = self.trail.mark()
                self.state.write(marker_name, json.dumps(
                    {"record": record, "after": after, "reason": reason}).encode("ascii"))
            else:
                marker = json.loads(existing)
                after, reason = int(marker["after"]), str(marker["reason"])
            crash_point("prune.journal")
            event = audit_event(Action.DELETE, {**_audit_facts(f), "location": f.location},
                                user=self.user, reason=reason, event_id=did)
            wrote = self.trail.append(event, after=after)
            crash_point("prune.audit")

            def unindexed() -> None:
                crash_point("prune.index")
                if catalog is not None:
                    # Rows are keyed by what the recording is, not by the copy: the
                    # same recording stored afresh since has the same id. Keep its row.
                    row = catalog.get(f.id)
                    if row is None or (row.location, row.received_at) == (
                            f.location, f.received_at):
                        catalog.remove(f.id)
                crash_point("prune.catalog")

            target.remove(record, unindexed=unindexed, locked=True)
            crash_point("prune.file")
            # Not synced: a marker a power cut brings back only makes the next prune
            # find every step done (the audit line is found, the entry is gone or new).
            self.state.delete(marker_name, sync=False)
        return Outcome.REMOVED if wrote else Outcome.FINISHED

    def _count(self, item: Item) -> None:
        if item.outcome in (Outcome.REMOVED, Outcome.WOULD_REMOVE):
            self.summary.removed += 1
            self.summary.bytes += item.size
        elif item.outcome is Outcome.FINISHED:
            self.summary.finished += 1
        self._add(item)

    def _add(self, item: Item) -> None:
        if self.collect:
            self.summary.items.append(item)
        self.report(item)


def _audit_facts(f: Row) -> dict[str, Any]:
    return {"call_id": f.call_id, "recording_id": f.recording_id, "account_id": f.account_id,
            "size": f.size, "sha256": f.sha256, "received_at": f.received_at}


def _days(age: timedelta) -> str:
    if age >= timedelta(days=1):
        return f"{age.days}d"
    return f"{int(age.total_seconds())}s"
