"""``kzr-wsgi``: the command line. ``kzr-wsgi serve`` runs the receiver on its own.

Every option can also come from the environment as ``KZR_<OPTION>`` (``KZR_ROOT``,
``KZR_PORT``, …), so secrets need not appear on a command line.
"""

from __future__ import annotations

import atexit
import logging
import sys
from typing import TYPE_CHECKING, Any

import click

from ..ages import format_age
from ..auth import Guard, is_loopback_host, read_secrets
from ..body import DEFAULT_MAX_SIZE
from ..errors import KzrError, StoreUnavailable
from ..metrics import DEFAULT_PATH as METRICS_PATH
from ..metrics import LOOPBACK, MultiprocessDir
from ..middleware import KazooRecordings
from ..notify import WebhookNotifier
from ..server.gunicorn import DEFAULT_THREADS, DEFAULT_WORKERS, gunicorn_options, run
from ..stores.base import Store
from . import catalog as catalog_commands
from .check import check as check_command
from .config import Config, config_option
from .options import build_store, catalog_notices, catalog_of
from .retention import audit, hold, prune
from .sweep import sweep_command

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..metrics import Metrics
    from ..ui import SearchUI
    from ..ui.viewers import Viewers

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class Size(click.ParamType):  # type: ignore[type-arg]
    """A byte count: ``1048576``, ``500M``, ``2G`` (binary units; ``B``/``iB`` may follow)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("IB").removesuffix("B")
        unit = text[-1:] if text[-1:] in _UNITS else ""
        number = text[: len(text) - len(unit)]
        try:
            size = int(float(number) * _UNITS[unit])
        except ValueError:
            self.fail(f"{value!r} is not a size such as 1048576, 500M or 2G", param, ctx)
        if size <= 0:
            self.fail("size must be positive", param, ctx)
        return size


def not_found(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    """The app behind ``serve``: whatever is not a recording is ``404``."""
    body = b"not a Kazoo recording URL\n"
    start_response(
        "404 Not Found",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


@click.group(context_settings={"auto_envvar_prefix": "KZR", "help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kzr_wsgi")
def main() -> None:
    """kzr_wsgi: a safe receiver for Kazoo (2600Hz) call recordings."""


@main.command(context_settings={"auto_envvar_prefix": "KZR"})
@config_option()
@click.option("--root", type=click.Path(file_okay=False), default="./recordings",
              show_default=True, help="Directory recordings are stored under (created if missing).")
@click.option("--host", default="127.0.0.1", show_default=True, metavar="ADDRESS",
              help="Address to listen on. Kazoo will not upload to 127.0.0.1: use a routable one.")
@click.option("--port", type=int, default=8080, show_default=True,
              metavar="PORT", help="TCP port to listen on.")
@click.option("--prefix", default="/", show_default=True, metavar="PATH",
              help="URL path Kazoo's `url` points at.")
@click.option("--workers", type=click.IntRange(1, 64), default=DEFAULT_WORKERS,
              show_default=True, help="Worker processes.")
@click.option("--threads", type=click.IntRange(1, 256), default=DEFAULT_THREADS,
              show_default=True, help="Concurrent uploads per worker.")
@click.option("--max-size", type=Size(), default=DEFAULT_MAX_SIZE, show_default="2G",
              help="Largest body accepted; larger ones get 413 and nothing is kept.")
@click.option("--accept-caller/--no-accept-caller", default=True, show_default=True,
              help="Take record_caller's bare <CALL_ID>.<EXT> names too.")
@click.option("--attachments-prefix", default=None, metavar="PATH",
              help="Serve a Kazoo storage plan (handler http) under this path, e.g. /store.")
@click.option("--attachments-base64", is_flag=True,
              help="The plan sets base64_encode_data: decode multipart file parts.")
@click.option("--read-back", is_flag=True,
              help="Serve GET/HEAD on a recording's own upload URL (Kazoo's recordings API).")
@click.option("--basic-auth", multiple=True, metavar="USER:PASS",
              help="Require HTTP Basic (Kazoo: http://USER:PASS@host/...). Repeatable. "
                   "From KZR_BASIC_AUTH, several are split on whitespace.")
@click.option("--basic-auth-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="File of USER:PASS lines (keeps secrets out of `ps`).")
@click.option("--token", multiple=True, metavar="SECRET",
              help="Require this secret as the first path segment after the prefix, or as a "
                   "`token` query parameter (4.x). Repeatable.")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="File of URL tokens, one a line.")
@click.option("--allow", multiple=True, metavar="CIDR",
              help="Only accept clients in this network (403 otherwise). Repeatable.")
@click.option("--trust-proxy", multiple=True, metavar="CIDR",
              help="Believe X-Forwarded-For from proxies in this network (off by default). "
                   "Repeatable.")
@click.option("--s3", "s3_url", default=None, metavar="s3://BUCKET/PREFIX",
              envvar=["KZR_S3", "KZR_S3_URL"],
              help="Store in S3 (or MinIO, Ceph, …) instead of the disk; with an explicit "
                   "--root too, both are written. Needs the s3 extra (boto3).")
@click.option("--s3-endpoint", default=None, metavar="URL",
              help="S3 API endpoint for S3-compatible servers, e.g. http://minio:9000. "
                   "Credentials and region come from boto3's usual chain (AWS_* variables, ...).")
@click.option("--notify-url", "notify_urls", multiple=True, metavar="URL",
              envvar=["KZR_NOTIFY_URL", "KZR_NOTIFY_URLS"],
              help="POST a JSON notification here after each newly stored recording, off "
                   "the request path (retried with backoff). Repeatable.")
@click.option("--catalog", "catalog_url", default=None, metavar="URL", envvar="KZR_CATALOG",
              help="Keep the catalog (the searchable index of what is stored) here: "
                   "postgresql://USER:PASS@HOST/DB (one shared by every host on a bucket; "
                   "extra postgres) or sqlite:///PATH. Default: SQLite at "
                   "ROOT/.kzr/catalog.sqlite3 when there is a root; none with --s3 alone.")
@click.option("--metrics", "metrics_on", is_flag=True,
              help="Serve Prometheus metrics at /metrics, summed over every worker. "
                   "Needs the metrics extra (prometheus_client).")
@click.option("--metrics-allow", multiple=True, metavar="CIDR",
              help="Who may read /metrics (403 otherwise; upload credentials do not apply). "
                   "Repeatable. Default: loopback only. The client address is found as for "
                   "--allow, --trust-proxy included.")
@click.option("--ui", "ui_on", is_flag=True,
              help="Serve the search-and-listen page and its JSON API under --ui-prefix, "
                   "behind viewers (--viewer, --viewer-file). Needs a catalog.")
@click.option("--ui-prefix", default="/ui", show_default=True, metavar="PATH",
              help="URL path of the page; every URL below it is the UI's, never an upload.")
@click.option("--viewer", "viewers", multiple=True, metavar="USER:PASS", envvar="KZR_VIEWER",
              help="A viewer who sees every account (HTTP Basic; never an upload credential). "
                   "Repeatable. From KZR_VIEWER, several are split on whitespace.")
@click.option("--viewer-file", type=click.Path(dir_okay=False, exists=True), default=None,
              envvar="KZR_VIEWER_FILE",
              help="File of viewers, one a line: USER:PASS, then optionally white space and "
                   "the comma-separated account ids that viewer may see (and nothing else).")
@click.option("--ui-secret", default=None, metavar="SECRET", envvar="KZR_UI_SECRET",
              help="Signs the UI's paging cursors (default: random per start). Give every "
                   "host behind one balancer the same one.")
@click.option("--certfile", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Serve HTTPS with this PEM certificate (chain) file; needs --keyfile.")
@click.option("--keyfile", type=click.Path(dir_okay=False, exists=True), default=None,
              help="The PEM private key for --certfile.")
@click.option("--inspect/--no-inspect", default=True, show_default=True,
              help="Inspect each MP3/WAV upload's audio as it streams in (format, duration, "
                   "flags such as empty, truncated, silent) and keep it in the sidecar under "
                   "`audio`; flagged recordings are logged at WARNING and still stored. "
                   "--no-inspect leaves `audio` null.")
def serve(
    root: str,
    host: str,
    port: int,
    prefix: str,
    workers: int,
    threads: int,
    max_size: int,
    accept_caller: bool,
    attachments_prefix: str | None,
    attachments_base64: bool,
    read_back: bool,
    basic_auth: tuple[str, ...],
    basic_auth_file: str | None,
    token: tuple[str, ...],
    token_file: str | None,
    allow: tuple[str, ...],
    trust_proxy: tuple[str, ...],
    s3_url: str | None,
    s3_endpoint: str | None,
    notify_urls: tuple[str, ...],
    catalog_url: str | None,
    metrics_on: bool,
    metrics_allow: tuple[str, ...],
    ui_on: bool,
    ui_prefix: str,
    viewers: tuple[str, ...],
    viewer_file: str | None,
    ui_secret: str | None,
    certfile: str | None,
    keyfile: str | None,
    config: Config | None,
    inspect: bool,
) -> None:
    """Run the receiver: store every Kazoo upload under ROOT (or in S3 with --s3)."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s",
    )
    if metrics_allow and not metrics_on:
        raise click.UsageError("--metrics-allow needs --metrics")
    if ui_on and metrics_on and (METRICS_PATH + "/").startswith(_norm_prefix(ui_prefix) + "/"):
        # The UI owns everything under its prefix: /metrics would be a viewer's 401.
        raise click.UsageError(f"--ui-prefix {ui_prefix} would hide {METRICS_PATH}: "
                               "choose another")
    if (viewers or viewer_file or ui_secret) and not ui_on:
        raise click.UsageError("--viewer, --viewer-file and --ui-secret need --ui")
    if ui_secret is not None and len(ui_secret.encode("utf-8")) < 16:
        # Said here, naming the option, before any store or bucket is touched.
        raise click.UsageError("--ui-secret must be at least 16 bytes long "
                               "(e.g. the output of `openssl rand -hex 16`)")
    if (certfile is None) != (keyfile is None):
        raise click.UsageError("--certfile and --keyfile go together")
    # Made before prometheus_client is first imported: its multiprocess mode is chosen then.
    metrics_dir = _metrics_dir(root) if metrics_on else None
    try:
        guard = Guard(
            basic=[*basic_auth, *(read_secrets(basic_auth_file) if basic_auth_file else ())],
            tokens=[*token, *(read_secrets(token_file) if token_file else ())],
            allow=allow,
            trusted_proxies=trust_proxy,
        )
        root_given = click.get_current_context().get_parameter_source("root") not in (
            click.core.ParameterSource.DEFAULT,
            None,
        )
        ui_viewers = _ui_viewers(
            ui_prefix, upload_prefixes=(prefix, attachments_prefix), guard=guard,
            viewers=viewers, viewer_file=viewer_file,
            has_catalog=catalog_url is not None or s3_url is None or root_given,
        ) if ui_on else None
        store, where = build_store(root, root_given, s3_url, s3_endpoint, catalog_url)
        warnings = _fail_fast(store)
        app = KazooRecordings(
            not_found,
            store,
            prefix=prefix,
            accept_caller=accept_caller,
            max_size=max_size,
            attachments_prefix=attachments_prefix,
            attachments_base64=attachments_base64,
            read_back=read_back,
            guard=guard if guard.enabled else None,
            # Built here, in the master: each worker starts its sender on first use.
            on_stored=[WebhookNotifier(url) for url in notify_urls],
            metrics=_metrics(metrics_allow, trust_proxy) if metrics_on else None,
            inspect=inspect,
        )
        wsgi_app: WSGIApplication = app
        if ui_viewers is not None:
            wsgi_app = _with_ui(app, store, ui_prefix, ui_viewers, secret=ui_secret)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if certfile else "http"
    click.echo(f"kzr-wsgi: listening on {scheme}://{shown}:{port}{prefix}", err=True)
    click.echo(f"kzr-wsgi: storing {where}", err=True)
    for line in catalog_notices(store):
        click.echo(f"kzr-wsgi: {line}", err=True)
    for warning in warnings:
        click.secho(f"kzr-wsgi: WARNING: {warning}", err=True, fg="yellow")
    if attachments_prefix:
        click.echo(f"kzr-wsgi: storage-plan attachments under {attachments_prefix}", err=True)
    if not inspect:
        click.echo("kzr-wsgi: audio inspection off (--no-inspect): `audio` is null", err=True)
    if guard.enabled:
        # The Guard's repr counts secrets and never shows them.
        click.echo(f"kzr-wsgi: access control: {guard!r}", err=True)
    if not guard.authenticates and not is_loopback_host(host):
        click.secho(
            f"kzr-wsgi: WARNING: listening on {host} with no authentication: anyone who can "
            "reach this port can store files"
            + (" (only --allow limits who)" if guard.enabled else "")
            + ". Set --basic-auth USER:PASS (Kazoo URL http://USER:PASS@host/...) or --token.",
            err=True, fg="yellow",
        )
    if ui_viewers is not None:
        scoped = sum(1 for v in ui_viewers if v.scoped)
        click.echo(f"kzr-wsgi: search page at {scheme}://{shown}:{port}{_norm_prefix(ui_prefix)}/ "
                   f"for {len(ui_viewers)} viewer(s), {scoped} limited to their accounts",
                   err=True)
        if not certfile and not is_loopback_host(host):
            click.secho(
                "kzr-wsgi: WARNING: viewers' Basic credentials cross the network in the clear: "
                "add --certfile/--keyfile or put a TLS proxy in front.", err=True, fg="yellow")
    options = gunicorn_options(host, port, workers=workers, threads=threads,
                               certfile=certfile, keyfile=keyfile)
    if metrics_dir is not None:
        click.echo(f"kzr-wsgi: metrics at /metrics for {', '.join(metrics_allow or LOOPBACK)} "
                   f"(worker files in {metrics_dir.path})", err=True)
        options.update(metrics_dir.gunicorn_hooks())
    _housekeeping(options, store, config)
    run(wsgi_app, options)


def _fail_fast(store: Store) -> list[str]:
    """Check every bucket ``store`` writes to before listening; its warnings.

    A bucket that is missing, refuses writes or does not answer ends ``serve`` here,
    saying which and why, rather than every upload being answered 503.
    """
    warnings: list[str] = []
    for each in store.parts():
        try:
            warnings += each.preflight()
        except StoreUnavailable as exc:
            raise click.ClickException(f"cannot store in {each!r}: {exc}") from exc
    return warnings
def _housekeeping(options: dict[str, Any], store: Store, config: Config | None) -> None:
    """Run the periodic jobs (pruning by ``[retention]``, …) from gunicorn's master.

    One process among all serving the store does them (see
    :mod:`kzr_wsgi.housekeeping.housekeeper`).
    """
    from ..housekeeping.housekeeper import TICK, Housekeeper, jobs_for, lease_for

    jobs = jobs_for(store, config)
    if not jobs:
        return
    catalog_url = click.get_current_context().params.get("catalog_url")
    try:
        keeper = Housekeeper(jobs, lease_for(store, catalog_url),
                             tick=min(TICK, *(job.every.total_seconds() for job in jobs)))
    except KzrError as exc:
        raise click.ClickException(str(exc)) from exc
    if config is not None and config.retention is not None:
        click.echo(f"kzr-wsgi: retention {config.retention.describe()}; pruned every "
                   f"{format_age(config.retention.interval)} by one housekeeper per store",
                   err=True)
    if any(job.name == "sweep" for job in jobs):
        click.echo("kzr-wsgi: the bucket's leftovers (unfinished uploads, unindexed objects) "
                   "are swept daily by one housekeeper per store", err=True)
    # In the master, once the workers run (threads do not survive their fork).
    for hook, action in (("when_ready", keeper.start), ("on_exit", keeper.stop)):
        options[hook] = _then(options.get(hook), action)


def _then(before: Any, action: Any) -> Any:
    """A gunicorn hook (one argument, as gunicorn checks) running ``before``, then ``action``."""

    def hook(server: Any) -> None:
        if before is not None:
            before(server)
        action()

    return hook


def _metrics_dir(root: str) -> MultiprocessDir:
    """A private directory for the workers' metric files, removed when serve exits."""
    try:
        directory = MultiprocessDir.create(avoid=root)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    # Every way out of the master removes it (gunicorn's on_exit hook is one, this the
    # rest); a forked worker runs the same handler and leaves it alone.
    atexit.register(directory.remove)
    return directory


def _metrics(allow: tuple[str, ...], trusted_proxies: tuple[str, ...]) -> Metrics:
    from ..metrics import Metrics  # prometheus_client itself is imported when one is built

    try:
        return Metrics(allow=allow or LOOPBACK, trusted_proxies=trusted_proxies)
    except ImportError as exc:
        raise click.ClickException(
            f"--metrics needs prometheus_client: pip install 'kzr_wsgi[metrics]' ({exc})"
        ) from exc
    except RuntimeError as exc:  # prometheus_client imported before its directory was set
        raise click.ClickException(str(exc)) from exc


def _norm_prefix(prefix: str) -> str:
    return "/" + prefix.strip("/")


_NO_CATALOG = ("--ui needs a catalog to search: with --s3, add --catalog postgresql://… "
               "(one shared by every host on the bucket), or --root DIR for a local one")


def _ui_viewers(
    ui_prefix: str,
    *,
    upload_prefixes: tuple[str | None, ...],
    guard: Guard,
    viewers: tuple[str, ...],
    viewer_file: str | None,
    has_catalog: bool,
) -> Viewers:
    """``serve --ui``'s viewers, checked before any store is touched; or a refusal saying why."""
    from ..ui.viewers import Viewers, parse_viewer, read_viewer_file

    ui_prefix = _norm_prefix(ui_prefix)
    if ui_prefix == "/":
        raise click.UsageError("--ui-prefix must be a path of its own, such as /ui")
    for taken in upload_prefixes:
        if taken is not None and (_norm_prefix(taken) + "/").startswith(ui_prefix + "/"):
            raise click.UsageError(
                f"--ui-prefix {ui_prefix} would hide the uploads under {taken}: choose another")
    if not has_catalog:
        raise click.UsageError(_NO_CATALOG)
    try:
        listed = [parse_viewer(v) for v in viewers]
        if viewer_file is not None:
            listed += read_viewer_file(viewer_file)
        every = Viewers(listed)
    except ValueError as exc:
        raise click.UsageError(f"--viewer/--viewer-file: {exc}") from exc
    if not len(every):
        raise click.UsageError(
            "--ui needs a viewer: add --viewer USER:PASS (sees every account) or "
            "--viewer-file FILE (USER:PASS [ACCOUNT,...] a line), or KZR_VIEWER / "
            "KZR_VIEWER_FILE")
    for viewer in every:
        if guard.accepts_basic(viewer.user, viewer.password):
            raise click.UsageError(
                f"viewer {viewer.user!r} has the same credentials as an upload credential "
                "(--basic-auth): viewers must not be able to upload; give them their own")
    return every


def _with_ui(receiver: WSGIApplication, store: Store, ui_prefix: str, viewers: Viewers, *,
             secret: str | None) -> SearchUI:
    """The search page in front of the receiver, on the catalog the store writes."""
    from ..ui import SearchUI

    catalog = catalog_of(store)
    if catalog is None:
        raise click.UsageError(_NO_CATALOG)
    return SearchUI(catalog, store, viewers=viewers, prefix=_norm_prefix(ui_prefix),
                    app=receiver, secret=secret)


main.add_command(check_command)
main.add_command(catalog_commands.ls)
main.add_command(catalog_commands.reindex)
main.add_command(catalog_commands.verify)
main.add_command(sweep_command)
main.add_command(prune)
main.add_command(hold)
main.add_command(audit)
