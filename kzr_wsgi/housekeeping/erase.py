"""Erase on request: every copy of what the selectors match, gone from every store.

:func:`plan` selects, as prune does, from each store's own index (a copy whose catalog
row was never written is found too), and from the catalog (rows of copies other hosts
keep on their own disks); holds are looked up for each. :func:`erase` then refuses, or
removes each copy in the crash-safe order of :mod:`.eraser`, finishes the catalog
(:meth:`~kzr_wsgi.catalog.Catalog.scrub_text`: no byte of the erased transcripts is
left in SQLite's files; ``VACUUM`` on PostgreSQL), removes spooled audio of the erased
recordings, records the erasure in the catalog for the other hosts and queues the
``erased`` webhook event (:mod:`.erasures`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog import Catalog, Query, Row, row_from_record
from ..catalog.search import MAX_LIMIT
from ..errors import KzrError
from ..stores.base import CopyStore, Store
from .eraser import Eraser, Request, forget_row, store_label
from .erasing import Selectors
from .holds import Hold, Holds

log = logging.getLogger("kzr_wsgi.erase")


class EraseRefused(KzrError):
    """An erase that would leave bytes behind (Object Lock, a missing permission)."""


@dataclass
class Item:
    """One recording an erase selected: its row (from the sidecar, or the catalog)."""

    row: Row
    #: Where copies are: ``(store, sidecar dict)``; empty for a row whose copies are on
    #: another host's disk.
    copies: list[tuple[CopyStore, dict[str, Any]]] = field(default_factory=list)
    hold: Hold | None = None

    @property
    def stores(self) -> list[str]:
        """``disk``/``s3`` for each copy here, or ``catalog`` for a row alone."""
        return [store_label(t) for t, _ in self.copies] or ["catalog"]

    def receipt(self) -> dict[str, Any]:
        """Its entry in the receipt's ``erased`` list."""
        return {"id": self.row.id, "call_id": self.row.call_id,
                "recording_id": self.row.recording_id, "sha256": self.row.sha256,
                "size": self.row.size, "stores": self.stores}


@dataclass
class Plan:
    """What the selectors match: to erase, kept for holds, and possible matches."""

    items: list[Item] = field(default_factory=list)
    #: Rows not selected whose national number has the tail asked for (dry run only).
    possible: list[Row] = field(default_factory=list)

    @property
    def held(self) -> list[Item]:
        """The items a hold keeps."""
        return [i for i in self.items if i.hold is not None]

    @property
    def free(self) -> list[Item]:
        """The items no hold keeps."""
        return [i for i in self.items if i.hold is None]


def plan(store: Store, selectors: Selectors, catalog: Catalog | None) -> Plan:
    """Everything ``selectors`` match, in the store's index and the catalog."""
    found: dict[str, Item] = {}
    result = Plan()
    for target in store.parts():
        for record in target.records():
            try:
                row = row_from_record(record)
            except (KeyError, ValueError, TypeError):
                continue
            facts = row.to_json()
            if selectors.selects(facts):
                found.setdefault(row.id, Item(row)).copies.append((target, record))
            elif selectors.possible(facts):
                result.possible.append(row)
    if catalog is not None:
        for row in catalog_rows(catalog, selectors):
            found.setdefault(row.id, Item(row))
    holds = Holds(store.state()).list()
    for item in found.values():
        facts = {"call_id": item.row.call_id, "recording_id": item.row.recording_id,
                 "account_id": item.row.account_id}
        item.hold = next((h for h in holds if h.covers(facts)), None)
    result.items = sorted(found.values(), key=lambda i: (i.row.sort_at, i.row.id))
    return result


def catalog_rows(catalog: Catalog, selectors: Selectors) -> Iterable[Row]:
    """The catalog's rows ``selectors`` match (narrowed by an index, then checked exactly)."""
    queries: list[Query] = []
    base = {"self_test": True, "limit": MAX_LIMIT, "country": selectors.country}
    if selectors.numbers:
        queries = [Query(number=n, **base) for n in selectors.numbers]  # type: ignore[arg-type]
    elif selectors.call_ids:
        queries = [Query(call_id=c, **base) for c in selectors.call_ids]  # type: ignore[arg-type]
    elif selectors.ids:
        return [r for r in (catalog.get(i) for i in selectors.ids)
                if r is not None and selectors.selects(r.to_json())]
    else:
        queries = [Query(account_id=a, **base) for a in selectors.accounts]  # type: ignore[arg-type]
    seen: dict[str, Row] = {}
    for query in queries:
        for row in catalog.iter_search(query):
            if selectors.selects(row.to_json()):
                seen[row.id] = row
    return list(seen.values())


@dataclass
class Outcome:
    """What an erase did."""

    erased: list[Item] = field(default_factory=list)
    kept: list[Item] = field(default_factory=list)
    #: Copies another erase had already taken (counted, not erased twice).
    finished: int = 0
    #: What the catalog's scrub said (segments deleted, tables merged, lock held).
    scrub: Any = None
    spooled: int = 0


def refusals(store: Store) -> list[str]:
    """Why erasing from ``store``'s buckets would leave bytes behind (none: empty)."""
    out = []
    for bucket in store.buckets():
        from ..stores.s3.versions import refusal

        said = refusal(bucket)
        if said is not None:
            out.append(said)
    return out


def erase(store: Store, found: Plan, request: Request, catalog: Catalog | None, *,
          spool_dirs: Iterable[Path] = (),
          report: Callable[[Item], None] | None = None) -> Outcome:
    """Erase every item of ``found`` no hold keeps; the caller has decided about holds.

    Raises :class:`EraseRefused` before anything is deleted when a bucket would keep
    the bytes.
    """
    said = refusals(store)
    if said:
        raise EraseRefused("; ".join(said))
    eraser = Eraser(store.state(), request)
    outcome = Outcome(kept=found.held)
    targets = store.parts()
    outcome.finished += eraser.finish_pending(targets, catalog)
    for item in found.free:
        for target, record in item.copies:
            where = catalog if catalog is not None else target.catalog
            if not eraser.erase(target, where, record, item.row.id):
                outcome.finished += 1
        if catalog is not None:
            forget_row(catalog, item.row.id)  # a row alone (another host's copy), or stale
        outcome.erased.append(item)
        if report is not None:
            report(item)
    ids = [i.row.id for i in outcome.erased]
    if catalog is not None:
        outcome.scrub = catalog.scrub_text(ids)
        vacuum(catalog)
    outcome.spooled = remove_spooled(spool_dirs, {i.row.sha256 for i in outcome.erased})
    return outcome


def vacuum(catalog: Catalog) -> None:
    """PostgreSQL: ``VACUUM`` the tables an erase touched besides those ``scrub_text``
    vacuums (jobs, share links, pieces' answers); SQLite needs none (``secure_delete``)."""
    if catalog.backend.dialect != "postgresql":
        return
    from ..catalog.schema import JOBS_TABLE, PIECES, UI_SHARES

    for table in (JOBS_TABLE, UI_SHARES, PIECES):
        catalog.execute(f"VACUUM {table}", {})


def remove_spooled(directories: Iterable[Path], sha256s: set[str]) -> int:
    """Remove the pipeline's spooled copies of the erased recordings; how many.

    A worker decoding one holds it open: the name goes now, the bytes when it closes
    (its result is then refused: the copy is no longer indexed).
    """
    from ..pipeline.spool import Spool

    gone = 0
    for directory in directories:
        if directory.is_dir() and sha256s:
            gone += Spool(directory).remove_copies(sha256s)
    return gone
