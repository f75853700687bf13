"""``kzr-wsgi sweep``: remove what killed hosts left in an S3 bucket.

::

    kzr-wsgi sweep --s3 s3://rec/kazoo --dry-run          # report only
    kzr-wsgi sweep --s3 s3://rec/kazoo --older-than 2d    # unfinished uploads, orphans

Unfinished multipart uploads older than ``--older-than`` are aborted; complete objects
no index entry names (never served, never acknowledged) are removed with their
sidecars, never before they are 10 minutes old. Each is reported on a line of its own.
``serve --s3`` runs the same sweep daily by itself (its housekeeper); this command is for
cron, or for a bucket no ``serve`` runs on. A directory store needs no command: it sweeps
itself at start-up and every few seconds while serving. See
:mod:`kzr_wsgi.housekeeping.sweep` and :mod:`kzr_wsgi.housekeeping.housekeeper`.
"""

from __future__ import annotations

from datetime import timedelta

import click

from ..ages import format_age
from ..errors import StoreUnavailable
from ..housekeeping.sweep import DEFAULT_OLDER_THAN, outcome, summary, sweep_s3
from .options import StoreSpec, store_options
from .params import Age


@click.command("sweep")
@click.option("--older-than", "age", type=Age(), default=format_age(DEFAULT_OLDER_THAN),
              show_default=True,
              help="Only what is older than AGE (90d, 12w, 2y, 0s). Complete objects are "
                   "never removed before they are 10 minutes old.")
@click.option("--dry-run", is_flag=True, help="Report what would be removed; remove nothing.")
# Innermost: store_options' wrapper takes over the parameters declared above it only.
@store_options
def sweep_command(spec: StoreSpec, age: timedelta, dry_run: bool) -> None:
    """Remove unfinished uploads and unindexed objects a killed host left in the bucket."""
    if spec.s3_url is None:
        raise click.UsageError(
            "sweep works on a bucket: give --s3 s3://BUCKET/PREFIX (a directory store "
            "sweeps itself at start-up and while serving)")
    store = spec.open_bucket()
    found = removed = 0
    try:
        for leftover, gone in sweep_s3(store, age, dry_run=dry_run):
            found += 1
            removed += gone
            click.echo(f"{outcome(gone, dry_run)} {leftover.describe()}")
    except StoreUnavailable as exc:
        raise click.ClickException(f"{exc} (after {found} leftover(s), {removed} removed)"
                                   ) from exc
    click.echo(summary(store, found, removed, age, dry_run))
