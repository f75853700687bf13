"""Erasures across hosts: recorded in the catalog, applied by every host to its own disk.

Where several hosts keep their own disk copies beside one shared catalog, an erase run
on one host cannot reach the others' disks. It records the erasure in the catalog
(``kzr_erasures``: the request's reference and, per recording, its catalog id and
sha256 only), and every ``serve`` applies it to its own disk stores within a minute
(:func:`erasure_jobs`, run by each host on its own, outside the one-housekeeper lease),
then records that it has (``kzr_erasure_hosts``). A host says it is there by a row of
its own under the reference ``*``, renewed at each run; a host seen within
:data:`ALIVE` that has not applied an erasure is *pending* for it
(``kzr-wsgi erase --status REF``).

The ``erased`` webhook event is queued durably in the store's state
(``outbox/<id>.json``) and delivered by ``serve`` to its ``--notify-url``\\ s, one
attempt per run until a receiver answers ``2xx`` (:func:`deliver_outbox`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ..catalog import Catalog, row_from_record
from ..catalog.schema import ERASURE_HOSTS, ERASURES
from ..catalog.search import micros
from ..stores.base import CopyStore, Store
from ..stores.state import DiskState, S3State
from .eraser import Eraser, Request
from .holds import Holds

log = logging.getLogger("kzr_wsgi.erase")

#: A host that has said it is there within this long is waited for.
ALIVE = timedelta(minutes=10)
#: The reference of a host's "I am here" row.
HEARTBEAT = "*"
#: How often each host looks for erasures to apply.
EVERY = timedelta(seconds=20)


def host_id(target: CopyStore) -> str:
    """How a host's disk store is named among the hosts: host name and root."""
    return f"{socket.gethostname()}:{target.state().where}"


def own_disks(store: Store) -> list[CopyStore]:
    """The stores of ``store`` that only this host sees (its disks)."""
    return [t for t in store.parts() if isinstance(t.state(), DiskState)]


def record(catalog: Catalog, reference: str, items: Iterable[tuple[str, str]],
           expires: datetime) -> None:
    """Record (or add to) the erasure ``reference``: ``(catalog id, sha256)`` pairs."""
    found = catalog.select(f"SELECT items FROM {ERASURES} WHERE reference = :r",
                           {"r": reference})
    merged = {tuple(i) for i in json.loads(found[0][0])} if found else set()
    merged |= {(str(a), str(b)) for a, b in items}
    body = json.dumps(sorted(merged))
    params = {"r": reference, "now": micros(datetime.now(timezone.utc)), "items": body,
              "exp": micros(expires)}
    catalog.write((f"DELETE FROM {ERASURES} WHERE reference = :r", params),
                  (f"INSERT INTO {ERASURES} (reference, created_us, items, expires_us)"
                   " VALUES (:r, :now, :items, :exp)", params))


def mark(catalog: Catalog, reference: str, host: str, erased: int) -> None:
    """Record that ``host`` has applied ``reference`` (or, for ``*``, that it is here)."""
    params = {"r": reference, "h": host, "now": micros(datetime.now(timezone.utc)),
              "n": erased}
    catalog.write((f"DELETE FROM {ERASURE_HOSTS} WHERE reference = :r AND host = :h", params),
                  (f"INSERT INTO {ERASURE_HOSTS} (reference, host, done_us, erased)"
                   " VALUES (:r, :h, :now, :n)", params))


@dataclass(frozen=True)
class Status:
    """Where an erasure stands: the hosts that applied it, and those still to."""

    reference: str
    #: ``(host, when, copies erased there)``.
    done: list[tuple[str, datetime, int]]
    pending: list[str]


def status(catalog: Catalog, reference: str, now: datetime | None = None) -> Status | None:
    """The erasure's status; ``None`` when the catalog has no such erasure."""
    if not catalog.select(f"SELECT 1 FROM {ERASURES} WHERE reference = :r", {"r": reference}):
        return None
    now = now or datetime.now(timezone.utc)
    rows = catalog.select(f"SELECT reference, host, done_us, erased FROM {ERASURE_HOSTS}"
                          " WHERE reference IN (:r, :star)", {"r": reference, "star": HEARTBEAT})
    from ..catalog.search import from_micros

    done = sorted((str(h), from_micros(int(t)), int(n)) for r, h, t, n in rows if r == reference)
    applied = {h for h, _, _ in done}
    alive = micros(now - ALIVE)
    pending = sorted(str(h) for r, h, t, _ in rows
                     if r == HEARTBEAT and int(t) >= alive and h not in applied)
    return Status(reference, done, pending)


def unapplied(catalog: Catalog, host: str, now: datetime | None = None
              ) -> list[tuple[str, list[tuple[str, str]]]]:
    """The live erasures ``host`` has not applied: ``(reference, [(id, sha256)])``."""
    now_us = micros(now or datetime.now(timezone.utc))
    rows = catalog.select(
        f"SELECT reference, items FROM {ERASURES} WHERE expires_us > :now AND reference NOT IN"
        f" (SELECT reference FROM {ERASURE_HOSTS} WHERE host = :h) ORDER BY created_us",
        {"now": now_us, "h": host})
    return [(str(r), [(str(a), str(b)) for a, b in json.loads(items)]) for r, items in rows]


def apply_pending(store: Store, catalog: Catalog, tombstone: timedelta | None) -> int:
    """Apply every erasure recorded in ``catalog`` to this host's own disks; how many
    copies went. Holds of each disk's own state win (those copies are kept, logged)."""
    erased = 0
    for target in own_disks(store):
        host = host_id(target)
        mark(catalog, HEARTBEAT, host, 0)
        todo = unapplied(catalog, host)
        if not todo:
            continue
        state = target.state()
        holds = Holds(state).list()
        for reference, items in todo:
            wanted = {rid for rid, _ in items}
            eraser = Eraser(state, Request(reference, "applied from the catalog", tombstone))
            eraser.finish_pending((target,), catalog)
            here = 0
            for record in list(target.records()):
                try:
                    row = row_from_record(record)
                except (KeyError, ValueError, TypeError):
                    continue
                if row.id not in wanted:
                    continue
                facts = {"call_id": row.call_id, "recording_id": row.recording_id,
                         "account_id": row.account_id}
                hold = next((h for h in holds if h.covers(facts)), None)
                if hold is not None:
                    log.warning("erase %s: %s kept on %s for hold %s", reference, row.id,
                                host, hold.id)
                    continue
                here += int(eraser.erase(target, catalog, record, row.id))
            mark(catalog, reference, host, here)
            erased += here
    return erased


def outbox_document(reference: str, items: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The ``erased`` webhook event: which ids to drop (never a number or a name)."""
    ident = hashlib.sha256(("erased\0" + reference).encode("utf-8")).hexdigest()[:32]
    return {"event": "recording.erased", "id": ident, "reference": reference,
            "recordings": [{"id": rid, "sha256": sha} for rid, sha in items]}


def queue_event(state: DiskState | S3State, doc: dict[str, Any]) -> None:
    """Queue the event durably in the store's state, for ``serve`` to deliver."""
    state.write(f"outbox/{doc['id']}.json", json.dumps(doc, sort_keys=True).encode("utf-8"))


def deliver_outbox(state: DiskState | S3State, urls: Sequence[str], timeout: float = 10.0
                   ) -> int:
    """Send each queued event to every URL; an event leaves the queue once every URL
    answered ``2xx`` (or refused it for good). How many left."""
    from .. import posting

    if not urls:
        return 0
    sent = 0
    using = posting.opener()
    for name, _ in list(state.list("outbox")):
        data = state.read(name)
        if data is None:
            continue
        doc = json.loads(data)
        headers = {"Content-Type": "application/json", "Idempotency-Key": str(doc["id"])}
        try:
            for url in urls:
                try:
                    posting.post(using, url, data, headers, timeout)
                except posting.GiveUp as exc:
                    log.error("webhook %s refused the erased event %s for good: %s",
                              url, doc["id"], exc)
        except Exception as exc:
            log.warning("webhook: the erased event %s is kept for the next run (%s)",
                        doc["id"], posting.describe(exc))
            continue
        state.delete(name)
        sent += 1
    return sent


class EveryHost:
    """The lease of work every host does for itself: always held."""

    def acquire(self) -> bool:
        """Always True."""
        return True

    def release(self) -> None:
        """Nothing to give up."""


def erasure_jobs(store: Store, catalog: Catalog | None, urls: Sequence[str],
                 tombstone: timedelta | None) -> list[Any]:
    """The jobs ``serve`` runs on every host (outside the one-housekeeper lease): apply the
    catalog's erasures to this host's disks and deliver the queued ``erased`` events
    (every :data:`EVERY`), and drop expired tombstones (hourly)."""
    from .housekeeper import Job
    from .tombstones import Tombstones

    def run() -> str:
        erased = apply_pending(store, catalog, tombstone) if catalog is not None else 0
        sent = deliver_outbox(store.state(), urls)
        return f"{erased} cop(ies) erased on request here; {sent} erased event(s) sent"

    def purge() -> str:
        return f"{Tombstones(store.state()).purge()} expired tombstone(s) removed"

    return [Job("erasures", EVERY, run), Job("tombstones", timedelta(hours=1), purge)]
