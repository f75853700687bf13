"""``kzr-wsgi erase``: everything about a caller, gone from every copy, on request.

The work is in :mod:`kzr_wsgi.housekeeping.erase` (and :mod:`~kzr_wsgi.housekeeping.eraser`,
:mod:`~kzr_wsgi.housekeeping.erasures`); this command parses, prints, writes the receipt
and exits with the status the manual's erasure page documents:

* 0: done everywhere (also when nothing matched, and with ``--except-held`` when only
  held ones are left);
* 1: refused, failed, or hosts still pending (a rerun finishes it; ``--status`` follows);
* 2: a usage error;
* 3: holds stopped it (nothing was erased; they are named).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click

from ..building import catalog_of
from ..catalog import Catalog, open_catalog
from ..errors import KzrError
from ..housekeeping.erase import EraseRefused, Item, Outcome, Plan, erase, plan, refusals
from ..housekeeping.eraser import Request
from ..housekeeping.erasing import SelectorError, Selectors
from ..housekeeping.erasures import (
    HEARTBEAT,
    host_id,
    mark,
    outbox_document,
    own_disks,
    queue_event,
    record,
    status,
)
from ..housekeeping.tombstones import DEFAULT_TOMBSTONE, erase_key
from ..naming import shown
from ..pipeline.spool import DEFAULT_SPOOL
from ..stores.base import Store
from .options import StoreSpec, store_options
from .params import Age, CommandLineOnly, CountryCode

#: Exit statuses.
DONE, FAILED, USAGE, HELD = 0, 1, 2, 3


@click.command("erase")
@click.option("--number", "numbers", multiple=True, metavar="N", cls=CommandLineOnly,
              help="Recordings where from, to, the caller id number or a caller id name that "
                   "is a number is N, however written (E.164; see --country). Repeatable.")
@click.option("--call-id", "call_ids", multiple=True, metavar="ID", cls=CommandLineOnly,
              help="Recordings of this call id. Repeatable.")
@click.option("--account", "accounts", multiple=True, metavar="ID", cls=CommandLineOnly,
              help="Recordings of this account (alone: with --entire-account). Repeatable.")
@click.option("--id", "ids", multiple=True, metavar="ID", cls=CommandLineOnly,
              help="The recording with this catalog id. Repeatable.")
@click.option("--request", "reference", metavar="REF", cls=CommandLineOnly, default=None,
              help="The request's reference (required): kept in the audit trail, the "
                   "tombstones and the receipt.")
@click.option("--dry-run", is_flag=True, cls=CommandLineOnly,
              help="List what would go, with sizes, and possible matches; change nothing.")
@click.option("--receipt", type=click.Path(dir_okay=False), default=None, cls=CommandLineOnly,
              help="Write the receipt (JSON: erased, kept, pending hosts) to FILE.")
@click.option("--except-held", is_flag=True, cls=CommandLineOnly,
              help="Erase what no hold keeps, and list what was kept and why.")
@click.option("--entire-account", is_flag=True, cls=CommandLineOnly,
              help="Confirm that --account alone means every recording of the account.")
@click.option("--tombstone", type=Age(), default=DEFAULT_TOMBSTONE, show_default="30d",
              help="For how long a Kazoo retry of an erased upload is answered 200 and not "
                   "stored (0s: no tombstones).")
@click.option("--wait", type=Age(), default=timedelta(minutes=2), show_default="2m",
              help="How long to wait for the other hosts to apply the erasure.")
@click.option("--status", "status_of", metavar="REF", default=None, cls=CommandLineOnly,
              help="Say which hosts have applied the erasure REF, and exit.")
@click.option("--country", default=None, metavar="CC", type=CountryCode(),
              help="Read national forms of --number in this country (ISO 3166: US, GB; "
                   "also `country` in the config file).")
@click.option("--spool-dir", type=click.Path(file_okay=False), default=str(DEFAULT_SPOOL),
              show_default=True, help="The analysis workers' spool: erased audio goes too.")
@store_options(keys=("country", "tombstone", "wait", "spool-dir"))
def erase_command(spec: StoreSpec, numbers: tuple[str, ...], call_ids: tuple[str, ...],
                  accounts: tuple[str, ...], ids: tuple[str, ...], reference: str | None,
                  dry_run: bool, receipt: str | None, except_held: bool, entire_account: bool,
                  tombstone: timedelta, wait: timedelta, status_of: str | None,
                  country: str | None, spool_dir: str) -> None:
    """Erase every recording of a caller (or call, account, id) from every store.

    Everything goes: audio, sidecar, analysis, peaks, transcript, index entries, the
    catalog row and its search rows, jobs and share links, every version on a bucket.
    Holds win. Each erased copy gets one `erase` line in the audit trail, without the
    number; a Kazoo retry of it is answered 200 and not stored (--tombstone).
    """
    if status_of is not None:
        raise SystemExit(_status(spec, status_of))
    selectors = Selectors(numbers, call_ids, accounts, ids, country)
    if not reference or not reference.strip():
        raise click.UsageError("--request REF is required: the request's reference")
    try:
        selectors.check(entire_account)
    except SelectorError as exc:
        raise click.UsageError(str(exc)) from exc
    store, where = spec.open_store()
    catalog = _catalog(spec, store)
    try:
        found = plan(store, selectors, catalog)
        _list(found, dry_run, except_held)
        whole = bool(accounts) and not (numbers or call_ids or ids)
        code = _decide(found, dry_run, except_held, reference, receipt, whole)
        if code is not None:
            raise SystemExit(code)
        said = refusals(store)
        if said:  # before anything is written, the erase key included
            click.echo(f"erase {reference}: refused: {'; '.join(said)}", err=True)
            _receipt(receipt, reference, [], found.held, [])
            raise SystemExit(FAILED)
        key = erase_key(store.state())
        request = Request(reference, selectors.fingerprint(key),
                          tombstone if tombstone > timedelta(0) else None)
        raise SystemExit(_run(store, catalog, found, request, receipt, wait,
                              [Path(spool_dir)], where))
    except KzrError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if catalog is not None:
            catalog.close()


def _catalog(spec: StoreSpec, store: Store) -> Catalog | None:
    if spec.catalog_url is not None:
        return open_catalog(spec.catalog_url)
    return catalog_of(store)


def _line(verb: str, item: Item) -> str:
    row = item.row
    text = (f"{verb:14} {row.id}  call_id={shown(row.call_id or '-')}  {row.size} bytes  "
            f"{','.join(item.stores)}")
    if item.hold is not None:
        text += f"  (hold {item.hold.id}: {shown(item.hold.reason)})"
    return text


def _list(found: Plan, dry_run: bool, except_held: bool) -> None:
    for item in found.items:
        if item.hold is not None:
            click.echo(_line("held", item))
        elif dry_run:
            click.echo(_line("would erase", item))
    if dry_run:
        for row in found.possible:
            numbers = ",".join(shown(v) for v in (row.from_, row.to, row.caller_id_number)
                               if v)
            click.echo(f"possible match (not selected) {row.id}  "
                       f"call_id={shown(row.call_id or '-')}  numbers={numbers}")


def _decide(found: Plan, dry_run: bool, except_held: bool, reference: str,
            receipt: str | None, whole_account: bool) -> int | None:
    """The exit status when the command ends before erasing anything, else ``None``."""
    free, held = found.free, found.held
    size = sum(i.row.size for i in free)
    if not found.items:
        click.echo(f"erase {reference}: nothing matched; nothing erased", err=True)
        _receipt(receipt, reference, [], [], [])
        return DONE
    if held and not except_held:
        click.echo(f"erase {reference}: {len(held)} selected recording(s) are held (listed "
                   "above); nothing erased. Lift the holds, or erase the rest with "
                   "--except-held", err=True)
        _receipt(receipt, reference, [], held, [])
        return HELD
    if dry_run:
        said = "of the whole account " if whole_account else ""
        click.echo(f"dry run {reference}: would erase {len(free)} recording(s) {said}"
                   f"({size} bytes); kept {len(held)} for holds; "
                   f"{len(found.possible)} possible match(es) not selected", err=True)
        return DONE
    if not free:
        click.echo(f"erase {reference}: only held recordings matched; nothing erased",
                   err=True)
        _receipt(receipt, reference, [], held, [])
        return DONE
    return None


def _run(store: Store, catalog: Catalog | None, found: Plan, request: Request,
         receipt: str | None, wait: timedelta, spools: list[Path], where: str) -> int:
    pairs = [(i.row.id, i.row.sha256) for i in found.free]
    if catalog is not None:
        # First, so that a kill from here on leaves the other hosts told.
        record(catalog, request.reference, pairs,
               datetime.now(timezone.utc) + (request.tombstone or timedelta(days=30)))
    try:
        outcome = erase(store, found, request, catalog, spool_dirs=spools,
                        report=lambda item: click.echo(_line("erased", item)))
    except EraseRefused as exc:
        click.echo(f"erase {request.reference}: refused: {exc}", err=True)
        _receipt(receipt, request.reference, [], found.held, [])
        return FAILED
    queue_event(store.state(), outbox_document(request.reference, pairs))
    pending: list[str] = []
    if catalog is not None:
        for target in own_disks(store):
            mark(catalog, HEARTBEAT, host_id(target), 0)
            mark(catalog, request.reference, host_id(target), len(outcome.erased))
        pending = _wait(catalog, request.reference, wait)
    _summary(outcome, request, where, pending)
    _receipt(receipt, request.reference, outcome.erased, outcome.kept, pending)
    return FAILED if pending else DONE


def _wait(catalog: Catalog, reference: str, wait: timedelta) -> list[str]:
    """The hosts still pending once they all applied it or ``wait`` is over."""
    deadline = time.monotonic() + wait.total_seconds()
    while True:
        found = status(catalog, reference)
        pending = found.pending if found is not None else []
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))


def _summary(outcome: Outcome, request: Request, where: str, pending: list[str]) -> None:
    size = sum(i.row.size for i in outcome.erased)
    text = (f"erase {request.reference}: erased {len(outcome.erased)} recording(s), {size} "
            f"bytes; kept {len(outcome.kept)} for holds ({where})")
    if outcome.scrub is not None:
        text += (f"; catalog scrubbed: {outcome.scrub.segments} transcript segment(s), "
                 f"{len(outcome.scrub.merged)} search table(s) merged, write lock held at "
                 f"most {outcome.scrub.longest_lock_s:.2f}s")
    if outcome.spooled:
        text += f"; {outcome.spooled} spooled cop(ies) removed"
    if pending:
        text += (f"; hosts still to apply it: {', '.join(pending)} (follow with "
                 f"`kzr-wsgi erase --status {request.reference}`)")
    click.echo(text, err=True)


def _receipt(path: str | None, reference: str, erased: list[Item], kept: list[Item],
             pending: list[str]) -> None:
    if path is None:
        return
    doc = {"request": reference, "erased": [i.receipt() for i in erased],
           "kept": [{"id": i.row.id, "hold": i.hold.id if i.hold else None} for i in kept],
           "pending": pending}
    Path(path).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _status(spec: StoreSpec, reference: str) -> int:
    store, _ = spec.open_store()
    catalog = _catalog(spec, store)
    if catalog is None:
        raise click.ClickException("--status needs the catalog the erasure was recorded in")
    try:
        found = status(catalog, reference)
    finally:
        catalog.close()
    if found is None:
        click.echo(f"no erasure {shown(reference)} in {catalog.url}", err=True)
        return FAILED
    for host, when, n in found.done:
        click.echo(f"done     {shown(host)}  {when:%Y-%m-%dT%H:%M:%SZ}  {n} cop(ies)")
    for host in found.pending:
        click.echo(f"pending  {shown(host)}")
    return FAILED if found.pending else DONE
