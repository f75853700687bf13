"""``kzr-wsgi export --out FILE.zip [ls's filters]``: recordings as one ZIP, from the shell.

The same ZIP the search page's export makes (:func:`kzr_wsgi.ui.export.export_zip`: the
audio under readable names, ``manifest.csv`` and ``manifest.json``; streamed, ZIP64 past
4 GB), of every recording the filters match (``ls``'s), or of the ``--id`` rows. The
file is written beside its final name and renamed into place once complete. The export
is written to the access log (by the operating-system user, ``via`` ``cli``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from ..catalog import Catalog, Query, Row
from ..errors import KzrError
from ..housekeeping.audit import os_user
from ..ui.exporting import DEFAULT_EXPORT_MAX, TooMany, capped, matching
from .filters import any_filter, filter_options
from .options import StoreSpec, store_options


@click.command("export")
@click.option("--out", required=True, type=click.Path(dir_okay=False, writable=True),
              metavar="FILE.zip", help="Where to write the ZIP (replaced if it exists).")
@click.option("--id", "ids", multiple=True, metavar="ROW-ID",
              help="Export this recording (its id as `ls --json` shows it). Repeatable; "
                   "instead of filters.")
@filter_options
@click.option("--export-max", type=click.IntRange(1, 1_000_000), default=DEFAULT_EXPORT_MAX,
              show_default=True, help="Refuse to export more recordings than this.")
@store_options(keys=("country",))
def export(spec: StoreSpec, out: str, ids: tuple[str, ...], export_max: int,
           filters: dict[str, Any]) -> None:
    """Write the recordings the filters match (or --id's) to one ZIP with manifests."""
    from ..ui.access import AccessAction, AccessLog, access_event
    from ..ui.export import export_zip

    if ids and any_filter(filters):
        raise click.UsageError("give --id or filters, not both")
    catalog = spec.open_catalog()  # first: a mistyped --root is refused, not made
    store, where = spec.open_store()
    try:
        rows = _rows(catalog, ids, filters, export_max)
        target = Path(out)
        partial = target.with_name(f".{target.name}.partial")
        try:
            with open(partial, "wb") as fh:
                for chunk in export_zip(rows, lambda r: store.open_stored(r.location, r.sha256)):
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    finally:
        catalog.close()
    try:
        log = AccessLog(store.state(), flush_every=3600)
        log.record(access_event(
            AccessAction.EXPORT, viewer=os_user(), address=None, ids=[r.id for r in rows],
            count=len(rows), via="cli",
            filters=["ids"] if ids else sorted(k for k, v in filters.items() if v)))
        log.flush()
    except (KzrError, OSError) as exc:
        click.echo(f"kzr-wsgi: WARNING: the export is not in the access log: {exc}", err=True)
    click.echo(f"kzr-wsgi: exported {len(rows)} recording(s) from {where} to {out} "
               f"({target.stat().st_size:,} bytes)", err=True)


def _rows(catalog: Catalog, ids: tuple[str, ...], filters: dict[str, Any], maximum: int
          ) -> list[Row]:
    try:
        if ids:
            if len(ids) > maximum:
                raise TooMany(f"{len(ids):,} ids: an export holds at most {maximum:,}")
            found = []
            for row_id in dict.fromkeys(ids):
                row = catalog.get(row_id)
                if row is None:
                    raise click.ClickException(f"no recording with id {row_id!r}")
                found.append(row)
            return found
        return capped(matching(catalog, Query(**filters, limit=1000)), maximum)
    except TooMany as exc:
        raise click.ClickException(f"{exc} (--export-max)") from exc
