"""What ``kzr-wsgi serve --ui`` builds: the viewers, checked; the page; its reread on ``SIGHUP``.

**Viewers at start-up.** ``--viewer`` (``KZR_VIEWER``, the config key ``viewer``) and
``--viewer-file``: a secret of a kind not taken refuses start-up naming its line; a
plaintext password equal to an upload credential refuses start-up (hashes are not tried
against every upload credential: ``kzr-wsgi viewer add`` and ``passwd`` refuse such a
password); a plaintext password or a weak bcrypt hash is a warning naming its line.

**Rereading on SIGHUP.** gunicorn's master takes ``SIGHUP`` by reloading its settings,
starting new workers and stopping the old ones gracefully; with the app preloaded (as
``serve`` runs it), the new workers are forked from the master's app. So the master
rereads the viewer file in gunicorn's ``on_reload`` hook, before it forks: the new
workers start with the new viewers, and every session of a viewer removed or given a new
password is ended in the catalog (every worker and host sees that at once). A file that
no longer reads (a malformed line) is logged and the viewers stay as they were.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import click

from ..auth import Guard
from ..building import catalog_of
from ..forms import url_prefix
from ..stores.base import Store

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from ..pipeline.settings import CallerMap
    from ..ui import SearchUI
    from ..ui.viewers import Viewers

log = logging.getLogger("kzr_wsgi.serve")

NO_CATALOG = ("--ui needs a catalog to search: with --s3, add --catalog postgresql://… "
              "(one shared by every host on the bucket), or --root DIR for a local one")


@dataclass(frozen=True)
class UIOptions:
    """``serve``'s options for the page, as the command line (or the file) gave them."""

    ui_prefix: str
    viewers: tuple[str, ...]
    viewer_file: str | None
    ui_secret: str | None
    trust_proxy: tuple[str, ...]
    session_idle: timedelta
    session_max: timedelta
    public_url: str | None
    export_max: int


def read_viewers(options: UIOptions, guard: Guard) -> tuple[Viewers, list[str]]:
    """Every viewer ``options`` name, checked, and the warnings to say about them.

    :raises click.UsageError: a malformed or refused line (named), no viewer at all, or
        a plaintext viewer that is also an upload credential.
    """
    from ..ui.viewers import (
        Viewers,
        parse_viewer,
        read_viewer_file,
        secret_warnings,
        upload_clashes,
    )

    try:
        given = [parse_viewer(v) for v in options.viewers]
        from_file = read_viewer_file(options.viewer_file) if options.viewer_file else []
        every = Viewers([*given, *from_file])
    except ValueError as exc:
        raise click.UsageError(f"--viewer/--viewer-file: {exc}") from exc
    if not len(every):
        raise click.UsageError(
            "--ui needs a viewer: add --viewer USER:PASS (sees every account) or "
            "--viewer-file FILE (USER:SECRET [ACCOUNT,...] [share] a line), or KZR_VIEWER / "
            "KZR_VIEWER_FILE")
    for viewer in upload_clashes(every, guard):
        where = f"{options.viewer_file}: line {viewer.line}: " if viewer.line else ""
        raise click.UsageError(
            f"{where}viewer {viewer.user!r} has the same credentials as an upload credential "
            "(--basic-auth): viewers must not be able to upload; give them their own")
    warnings = secret_warnings(given) + secret_warnings(from_file, options.viewer_file or "")
    return every, warnings


def check_ui_prefix(ui_prefix: str, taken: tuple[str | None, ...], has_catalog: bool) -> str:
    """The UI's prefix, checked against the uploads' prefixes and the catalog."""
    prefix = url_prefix(ui_prefix)
    if prefix == "/":
        raise click.UsageError("--ui-prefix must be a path of its own, such as /ui")
    for other in taken:
        if other is not None and (url_prefix(other) + "/").startswith(prefix + "/"):
            raise click.UsageError(
                f"--ui-prefix {prefix} would hide the uploads under {other}: choose another")
    if not has_catalog:
        raise click.UsageError(NO_CATALOG)
    return prefix


def build_ui(receiver: WSGIApplication, store: Store, options: UIOptions,
             viewers: Viewers, *, callers: CallerMap | None = None) -> SearchUI:
    """The search page in front of the receiver, on the catalog the store writes
    (``callers``: which side is the caller, the ``[analysis]`` table's)."""
    from ..ui import SearchUI
    from ..ui.sessions import Sessions
    from ..ui.tables import CatalogSessionStore

    catalog = catalog_of(store)
    if catalog is None:
        raise click.UsageError(NO_CATALOG)
    try:
        sessions = Sessions(CatalogSessionStore(catalog), idle=options.session_idle,
                            max_age=options.session_max)
    except ValueError as exc:
        raise click.UsageError(f"--session-idle/--session-max: {exc}") from exc
    return SearchUI(catalog, store, viewers=viewers, prefix=url_prefix(options.ui_prefix),
                    app=receiver, secret=options.ui_secret, sessions=sessions,
                    trusted_proxies=options.trust_proxy, public_url=options.public_url,
                    export_max=options.export_max, callers=callers)


def viewer_reloader(ui: SearchUI, options: UIOptions, guard: Guard) -> Callable[[], None]:
    """What gunicorn's ``on_reload`` hook runs: reread the viewers into ``ui`` (see the
    module docs)."""

    def on_reload() -> None:
        try:
            viewers, warnings = read_viewers(options, guard)
        except click.ClickException as exc:
            log.error("viewers not reread (%s); the viewers stay as they were",
                      exc.format_message())
            return
        for warning in warnings:
            log.warning("%s", warning)
        try:
            ended = ui.reload_viewers(viewers)
        finally:
            ui.catalog.release()  # nothing open across the fork of the new workers
        log.info("viewers reread: %d viewer(s)%s", len(viewers),
                 f"; signed out: {', '.join(sorted(ended))}" if ended else "")

    return on_reload
