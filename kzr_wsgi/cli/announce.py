"""What ``kzr-wsgi serve`` says at start-up: where it listens and stores, and every warning.

All of it on stderr, each line starting ``kzr-wsgi:``; warnings in yellow. Secrets are
never shown (the :class:`~kzr_wsgi.auth.Guard`'s repr counts them).
"""

from __future__ import annotations

import click

from ..auth import is_loopback_host
from ..building import catalog_of
from ..forms import url_prefix
from ..metrics import MultiprocessDir
from ..stores.base import Store
from .serving import Served, ServeOptions


def _say(line: str) -> None:
    click.echo(f"kzr-wsgi: {line}", err=True)


def _warn(line: str) -> None:
    click.secho(f"kzr-wsgi: WARNING: {line}", err=True, fg="yellow")


def announce(options: ServeOptions, served: Served, metrics: MultiprocessDir | None) -> None:
    """Say what ``serve`` built from ``options``, before gunicorn starts."""
    shown = f"[{options.host}]" if ":" in options.host else options.host
    scheme = "https" if options.certfile else "http"
    _say(f"listening on {scheme}://{shown}:{options.port}{options.prefix}")
    _say(f"storing {served.where}")
    for line in catalog_notices(served.store):
        _say(line)
    for line in served.analysis:
        _say(line)
    for warning in served.warnings:
        _warn(warning)
    if options.attachments_prefix:
        _say(f"storage-plan attachments under {options.attachments_prefix}")
    if not options.inspect:
        _say("audio inspection off (--no-inspect): `audio` is null")
    guard = served.guard
    if guard.enabled:
        # The Guard's repr counts secrets and never shows them.
        _say(f"access control: {guard!r}")
    if not guard.authenticates and not is_loopback_host(options.host):
        _warn(f"listening on {options.host} with no authentication: anyone who can reach "
              "this port can store files"
              + (" (only --allow limits who)" if guard.enabled else "")
              + ". Set --basic-auth USER:PASS (Kazoo URL http://USER:PASS@host/...) or --token.")
    if served.viewers is not None:
        scoped = sum(1 for v in served.viewers if v.scoped)
        _say(f"search page at {scheme}://{shown}:{options.port}{url_prefix(options.ui_prefix)}/ "
             f"for {len(served.viewers)} viewer(s), {scoped} limited to their accounts")
        for warning in served.viewer_warnings:
            _warn(warning)
        if not options.certfile and not is_loopback_host(options.host):
            _warn("viewers' passwords and sessions cross the network in the clear: add "
                  "--certfile/--keyfile or put a TLS proxy in front.")
        if is_loopback_host(options.host) and not options.trust_proxy:
            _warn("the search page listens on loopback without --trust-proxy: behind a "
                  "proxy every client has the proxy's address, so failed sign-ins from one "
                  "throttle all, and the access log names the proxy. Give --trust-proxy "
                  "the proxy's address, and have it send X-Forwarded-For and "
                  "X-Forwarded-Proto.")
        if options.public_url:
            _say(f"share links point at {options.public_url}")
    if metrics is not None:
        _say(f"metrics at /metrics for {', '.join(served.metrics_allow)} "
             f"(worker files in {metrics.path})")


def catalog_notices(store: Store) -> list[str]:
    """What ``serve`` says at start-up about the catalog: where, or why there is none.

    A store that holds recordings while its catalog is empty is from before the
    catalog (or its catalog was lost): the notice names ``kzr-wsgi reindex``, which
    catalogues the sidecars and inspects the audio of those that have none.
    """
    catalog = catalog_of(store)
    if catalog is None:
        return ["no catalog is kept (--s3 alone): `kzr-wsgi ls` and searches need "
                "--catalog URL (postgresql://… shared by every host on the bucket)"]
    from ..catalog.reindex import NEEDS_REINDEX

    lines = [f"catalog: {catalog.url}"]
    try:
        # An empty catalog beside a store that holds copies: from before the catalog, or
        # lost. Remembered in the catalog until a reindex, so the notice stays after new
        # uploads have made it non-empty.
        if catalog.max_seq() is None and _holds_recordings(store):
            catalog.set_state(NEEDS_REINDEX, "1")
        behind = catalog.get_state(NEEDS_REINDEX) is not None
    except Exception as exc:  # a catalog out of reach never stops uploads
        said = " ".join(str(exc).split())  # drivers' messages span lines
        return [*lines, f"WARNING: the catalog cannot be reached ({said}); uploads are stored "
                        "all the same, rows are written once it answers, and "
                        "`kzr-wsgi reindex` adds the ones missed"]
    finally:
        catalog.release()  # nothing open across gunicorn's fork
    if behind:
        lines.append(
            "this store holds recordings from before its catalog (no catalog, or sidecars "
            "without `audio`): run `kzr-wsgi reindex` with the same --root/--s3/--catalog "
            "to catalog them and inspect their audio")
    return lines


def _holds_recordings(store: Store) -> bool:
    """True when the store has at least one index entry (cheap: stops at the first)."""
    for part in store.parts():
        try:
            if next(iter(part.records()), None) is not None:
                return True
        except Exception:
            continue
    return False
