"""``kzr-wsgi prune``, ``kzr-wsgi hold add|rm|ls`` and ``kzr-wsgi audit`` (``--access`` too).

The work is done in :mod:`kzr_wsgi.housekeeping`; these commands parse options and
print.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import click

from ..configfile import RETENTION
from ..errors import KzrError
from ..housekeeping.audit import AuditTrail, event_line
from ..housekeeping.holds import Hold, Holds, add_hold, remove_hold
from ..housekeeping.retention import DEFAULT_KINDS, Item, Selection
from ..housekeeping.retention import prune as run_prune
from ..housekeeping.state import DiskState, S3State, state_for
from .options import StoreSpec, store_options
from .params import Age, When


def _state(spec: StoreSpec) -> DiskState | S3State:
    store, _ = spec.open_store()
    try:
        return state_for(store)
    except KzrError as exc:
        raise click.ClickException(str(exc)) from exc


# -- prune ---------------------------------------------------------------------------------


@click.command()
@click.option("--older-than", type=Age(), default=None,
              help="Remove recordings older than AGE (90d, 12w, 2y, 0s), measured from "
                   "Kazoo's start, else the time received. Without it, the config file's "
                   "[retention] policy decides.")
@click.option("--account", "accounts", multiple=True, metavar="ID",
              help="Only this account's recordings (with --older-than). Repeatable.")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(["call", "caller", "attachment"]),
              help="Only this kind (with --older-than; default: call and caller; storage-plan "
                   "attachments only when named). Repeatable.")
@click.option("--dry-run", is_flag=True,
              help="List exactly what would be removed, and the bytes; remove nothing.")
@store_options(tables=(RETENTION,))
def prune(spec: StoreSpec, older_than: timedelta | None, accounts: tuple[str, ...],
          kinds: tuple[str, ...], dry_run: bool) -> None:
    """Remove recordings past their retention, except those on hold; audit each removal."""
    policy = RETENTION.of(spec.config)
    if older_than is None:
        if accounts or kinds:
            raise click.UsageError("--account and --kind go with --older-than")
        if policy is None:
            raise click.UsageError(
                "say what to prune: --older-than AGE, or --config FILE with a [retention] table")
        selection = Selection(policy=policy)
    else:
        selection = Selection(older_than=older_than, accounts=accounts,
                              kinds=kinds or DEFAULT_KINDS)
    store, where = spec.open_store()

    def report(item: Item) -> None:
        click.echo(item.line())

    try:
        summary = run_prune(store, selection, dry_run=dry_run, report=report)
    except KzrError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(("dry run: " if dry_run else "prune: ") + summary.line() + f" ({where})", err=True)


# -- hold ----------------------------------------------------------------------------------


@click.group()
def hold() -> None:
    """Legal holds: recordings they select are never pruned, whatever the policy."""


@hold.command("add")
@click.option("--call-id", default=None, metavar="ID", help="Hold every recording of this call.")
@click.option("--recording-id", default=None, metavar="ID",
              help="Hold this recording (Kazoo's recording id).")
@click.option("--account", "account_id", default=None, metavar="ID",
              help="Hold every recording of this account.")
@click.option("--reason", required=True, metavar="TEXT",
              help="Why (a case number, a request): kept and audited.")
@store_options
def hold_add(spec: StoreSpec, call_id: str | None, recording_id: str | None,
             account_id: str | None, reason: str) -> None:
    """Place a hold by call id, recording id or account; print its id."""
    given = [(k, v) for k, v in (("call_id", call_id), ("recording_id", recording_id),
                                 ("account_id", account_id)) if v is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --call-id, --recording-id, --account")
    [(selector, value)] = given
    state = _state(spec)
    try:
        new = Hold.new(selector, value, reason=reason)
        add_hold(Holds(state), AuditTrail(state), new)
    except KzrError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(new.id)


@hold.command("rm")
@click.argument("hold_id")
@store_options
def hold_rm(spec: StoreSpec, hold_id: str) -> None:
    """Lift the hold HOLD_ID."""
    state = _state(spec)
    try:
        lifted = remove_hold(Holds(state), AuditTrail(state), hold_id)
    except KzrError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"lifted {lifted.id} ({lifted.selector} {lifted.value})")


@hold.command("ls")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@store_options
def hold_ls(spec: StoreSpec, as_json: bool) -> None:
    """List the holds: id, selector, reason, who, when."""
    try:
        holds = Holds(_state(spec)).list()
    except KzrError as exc:
        raise click.ClickException(str(exc)) from exc
    for h in holds:
        if as_json:
            click.echo(json.dumps(h.to_json(), sort_keys=True))
        else:
            click.echo(f"{h.id}  {h.selector}={h.value}  {h.reason!r}  {h.user}  "
                       f"{h.at:%Y-%m-%dT%H:%M:%SZ}")


# -- audit ---------------------------------------------------------------------------------


@click.command()
@click.option("--since", type=When(), default=None,
              help="Only events at or after WHEN: a date (UTC midnight) or an ISO 8601 time.")
@click.option("--until", type=When(end=True), default=None,
              help="Only events at or before WHEN: a date (the whole day, UTC) or an ISO "
                   "8601 time.")
@click.option("--call-id", default=None, metavar="ID", help="Only events of this call id.")
@click.option("--request", default=None, metavar="REF",
              help="Only the erase lines of this request (`kzr-wsgi erase --request REF`).")
@click.option("--access", is_flag=True,
              help="The search page's access log instead: sign-ins, plays, downloads, "
                   "exports and share links.")
@click.option("--viewer", default=None, metavar="USER",
              help="With --access: only this viewer's events.")
@click.option("--id", "recording", default=None, metavar="ROW-ID",
              help="With --access: only events naming this recording (its row id).")
@click.option("--json", "as_json", is_flag=True, help="The events as JSON lines, as stored.")
@store_options
def audit(spec: StoreSpec, since: datetime | None, until: datetime | None,
          call_id: str | None, request: str | None, access: bool, viewer: str | None,
          recording: str | None, as_json: bool) -> None:
    """Print the audit trail: deletions and holds added or removed, oldest first.

    With --access, the search page's access log: who signed in, listened, downloaded,
    exported and shared what, and when.
    """
    if access and (call_id is not None or request is not None):
        raise click.UsageError("--call-id and --request are the audit trail's: with --access, "
                               "use --id")
    if not access and (viewer is not None or recording is not None):
        raise click.UsageError("--viewer and --id go with --access")
    try:
        if access:
            from ..ui.access import AccessLog
            from ..ui.access import event_line as access_line

            log = AccessLog(_state(spec))
            for event in log.read(since, until, viewer=viewer, recording=recording):
                click.echo(json.dumps(event, ensure_ascii=True) if as_json
                           else access_line(event))
            return
        for event in AuditTrail(_state(spec)).read(since, until, call_id, request):
            if as_json:
                click.echo(json.dumps(event, ensure_ascii=True))
                continue
            click.echo(event_line(event))
    except KzrError as exc:
        raise click.ClickException(str(exc)) from exc
