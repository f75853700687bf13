"""``kzr-wsgi ls``, ``reindex`` and ``verify``: find, rebuild and prove what a store holds.

``ls`` searches the catalog (the same order and filters as the Python API and the
search page); ``reindex`` rebuilds the catalog from the sidecars; ``verify`` reads every
stored copy back and checks it against its sidecar.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from ..catalog import Catalog, Query, Row
from ..catalog.reindex import reindex as run_reindex
from ..catalog.text import Match
from ..configfile import ANALYSIS
from ..housekeeping.verify import Finding, selected
from ..housekeeping.verify import verify as run_verify
from ..naming import STATE_DIR
from ..naming import shown as _shown
from ..pipeline.settings import DEFAULT_SETTINGS
from ..stores import DirectoryStore
from ..stores.base import CopyLister, CopyStore
from .filters import filter_options
from .options import StoreSpec, store_options
from .params import When


@click.command("ls")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line, with the row's keys.")
@filter_options
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="At most N rows (default: all).")
@store_options(tables=(ANALYSIS,), keys=("country",))
def ls(spec: StoreSpec, as_json: bool, filters: dict[str, Any], limit: int | None) -> None:
    """List stored recordings, newest first (by Kazoo's start, else time received).

    Different filters combine with AND; a repeated --flag is OR. Each row shows its
    analysis: its state and flags (the speakers of --json from the config file's
    [analysis] table).
    """
    catalog = spec.open_catalog()
    callers = (ANALYSIS.of(spec.config) or DEFAULT_SETTINGS).callers
    by_words = filters.get("text") is not None
    query: Query | None = Query(**filters, limit=min(limit or 1000, 1000))
    shown = 0
    try:
        while query is not None and (limit is None or shown < limit):
            page = catalog.search(query)
            for row in page.items[:None if limit is None else limit - shown]:
                found = page.matches.get(row.id) if by_words else None
                caller = callers.caller_for(row.account_id, row.kind)
                click.echo(_json_line(row, found, caller) if as_json else _line(row, found))
                shown += 1
            query = page.next
    finally:
        catalog.close()


@click.command()
@click.option("--inspect/--no-inspect", default=True, show_default=True,
              help="Inspect the audio of copies whose sidecar has none (and add it).")
@store_options
def reindex(spec: StoreSpec, inspect: bool) -> None:
    """Rebuild the catalog from the sidecars (the disk, or the bucket with --s3).

    Idempotent: run it as often as you like. Rows of copies no longer indexed are
    removed; sidecars written before audio inspection get their `audio`.
    """
    store = _indexed_store(spec, catalogued=True)
    catalog = spec.open_catalog(create=True)
    try:
        with _progress(store, "reindexing") as tick:
            result = run_reindex(store, catalog, owns=_owner(store), inspect=inspect,
                                 progress=tick)
    finally:
        catalog.close()
    click.echo(f"kzr-wsgi: catalogued {result.rows} cop{'y' if result.rows == 1 else 'ies'} "
               f"in {catalog.url}; {result.inspected} inspected, {result.analyses} "
               f"analysis(es) put back from beside their copies, {result.transcripts} "
               f"transcript(s) put back with their search rows, {result.removed} stale "
               f"row(s) removed, {result.unreadable} unreadable", err=True)


@click.command()
@click.option("--since", type=When(), default=None,
              help="Only copies received at or after WHEN: a date (UTC midnight) or an ISO "
                   "8601 time.")
@store_options
def verify(spec: StoreSpec, since: datetime | None) -> None:
    """Read every stored copy back: report missing, changed and flagged ones.

    With the catalog (the default one under --root, or --catalog), the files of each done
    analysis kept beside its copy are checked too: missing or changed. One line each,
    then a summary. Exit status 1 when anything is missing or changed,
    0 otherwise (flagged audio alone does not fail). Read-only; meant for cron.
    """
    store = _indexed_store(spec)

    def report(finding: Finding) -> None:
        who = f" call_id={_shown(finding.call_id)}" if finding.call_id else ""
        click.echo(f"{finding.status.upper()} {_shown(finding.location)}{who}: "
                   f"{_shown(finding.detail)}")

    catalog = _catalog_if_any(spec)
    try:
        with _progress(store, "verifying") as tick:
            result = run_verify(store, records=selected(store, since), on_finding=report,
                                progress=tick, catalog=catalog)
    finally:
        if catalog is not None:
            catalog.close()
    click.echo(result.summary())
    sys.exit(0 if result.ok else 1)


def _catalog_if_any(spec: StoreSpec) -> Catalog | None:
    """The catalog, when the options name one that is there (verify checks the done
    analyses' files against it); ``None`` otherwise (said on stderr)."""
    try:
        return spec.open_catalog()
    except click.ClickException as exc:
        click.echo(f"kzr-wsgi: the analyses' files are not checked: {exc.message}", err=True)
        return None


def _indexed_store(spec: StoreSpec, *, catalogued: bool = False) -> CopyStore:
    """The store a command reads: the bucket with --s3, else the disk.

    With ``catalogued``, the store whose rows the catalog holds (what ``serve`` does):
    in a fan-out (--s3 and --root) without --catalog, that is the disk.
    """
    fan_out_to_disk = catalogued and spec.root_given and spec.catalog_url is None
    if spec.s3_url is not None and not fan_out_to_disk:
        # The bucket alone (in a fan-out, the store every host shares); the catalog is
        # the command's own business.
        return spec.open_bucket()
    root = Path(spec.root)
    if not (root / STATE_DIR / "index").is_dir():
        raise click.ClickException(f"no store at {root.absolute()} (no {STATE_DIR}/index)")
    # The catalog is the command's own business: the store writes none here.
    return DirectoryStore(root, catalog=None, upkeep_every=None)


def _owner(store: CopyLister) -> Callable[[str], bool]:
    """Which row locations belong to ``store`` (so reindex may drop its stale rows)."""
    return store.owns


def _progress(store: CopyLister, label: str
              ) -> AbstractContextManager[Callable[[dict[str, Any]], None]]:
    """A progress bar on a terminal (counted when the count is cheap), else nothing."""
    if not sys.stderr.isatty():
        return nullcontext(lambda record: None)
    return _bar(_count_hint(store), label)


class _bar(AbstractContextManager[Callable[[dict[str, Any]], None]]):  # noqa: N801
    def __init__(self, length: int | None, label: str) -> None:
        self.bar: Any = click.progressbar(length=length, label=label, file=sys.stderr)

    def __enter__(self) -> Callable[[dict[str, Any]], None]:
        self.bar.__enter__()
        return lambda record: self.bar.update(1)

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)


def _count_hint(store: CopyLister) -> int | None:
    """How many copies, when counting is cheap (index names on disk); else ``None``."""
    return store.count_hint()


def _json_line(row: Row, found: Sequence[Match] | None, caller: str) -> str:
    """One row as ``ls --json`` prints it (``matches`` when found by words; the
    analysis's speakers named with ``caller``, the channel the caller is on)."""
    data = row.to_json(caller)
    if found is not None:
        data["matches"] = [m.to_json() for m in found]
    return json.dumps(data, ensure_ascii=True)


def _line(row: Row, found: Sequence[Match] | None = None) -> str:
    """One row as a line of text; every value from an upload (and every word of a
    transcript) is shown escaped. A row found by words ends with its first match's
    time and snippet."""
    when = row.sort_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    secs = f"{row.duration_ms / 1000:.1f}s" if row.duration_ms is not None else "-"
    audio = "-"
    if row.audio is not None:
        length = (f"{row.audio.duration_ms / 1000:.1f}s"
                  if row.audio.duration_ms is not None else "?")
        audio = f"{row.audio.format or 'none'}:{length}"
        if row.audio.flags:
            audio += "[" + ",".join(row.audio.flags) + "]"
    analysis = row.analysis.line() if row.analysis is not None else "analysis=-"
    parts = [when, row.kind, _shown(row.call_id or "-"),
             f"{_shown(row.from_ or '-')}->{_shown(row.to or '-')}",
             f"account={_shown(row.account_id or '-')}", secs, audio, analysis,
             *([row.transcript.line()] if row.transcript is not None else []),
             _shown(row.location)]
    if found:
        first = found[0]
        parts.append(f"@{first.start:.1f}s {_shown(first.speaker)}: "
                     f"{_shown(first.snippet.text)}")
    return "  ".join(parts)
