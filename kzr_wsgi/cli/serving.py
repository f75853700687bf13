"""What ``kzr-wsgi serve`` builds from its options: the store, the WSGI app, the housekeeper.

:func:`build_app` turns checked options into a :class:`Served` (the app gunicorn runs,
and what :mod:`~kzr_wsgi.cli.announce` says about it); :func:`start_housekeeping` hooks
the periodic jobs into gunicorn's master. Every refusal is a click error naming the
option.
"""

from __future__ import annotations

import atexit
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from ..ages import format_age
from ..auth import Guard, read_secrets
from ..building import catalog_of
from ..configfile import ANALYSIS, RETENTION
from ..errors import KzrError, StoreUnavailable
from ..metrics import LOOPBACK, MetricsApp, MultiprocessDir
from ..middleware import KazooRecordings
from ..notify import WebhookNotifier
from ..pipeline.settings import DEFAULT_SETTINGS
from ..stores.base import Store
from .options import StoreSpec
from .ui_serving import UIOptions, build_ui, check_ui_prefix, read_viewers, viewer_reloader

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..metrics import Metrics
    from ..ui import SearchUI
    from ..ui.viewers import Viewers


def not_found(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    """The app behind ``serve``: whatever is not a recording is ``404``."""
    body = b"not a Kazoo recording URL\n"
    start_response(
        "404 Not Found",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


@dataclass(frozen=True)
class ServeOptions:
    """``serve``'s own options (the store's are a :class:`~kzr_wsgi.cli.options.StoreSpec`)."""

    host: str
    port: int
    prefix: str
    workers: int
    threads: int
    max_size: int
    accept_caller: bool
    attachments_prefix: str | None
    attachments_base64: bool
    read_back: bool
    basic_auth: tuple[str, ...]
    basic_auth_file: str | None
    token: tuple[str, ...]
    token_file: str | None
    allow: tuple[str, ...]
    trust_proxy: tuple[str, ...]
    notify_urls: tuple[str, ...]
    metrics_on: bool
    metrics_allow: tuple[str, ...]
    ui_on: bool
    ui_prefix: str
    viewers: tuple[str, ...]
    viewer_file: str | None
    ui_secret: str | None
    session_idle: timedelta
    session_max: timedelta
    public_url: str | None
    export_max: int
    access_retention: timedelta
    access_log: str | None
    certfile: str | None
    keyfile: str | None
    inspect: bool
    background_workers: int = 1
    analyze: bool = True
    spool_dir: str | None = None
    #: The transcription options as given (field -> value; see
    #: :mod:`~kzr_wsgi.cli.transcribing`).
    transcribe: Mapping[str, Any] = field(default_factory=dict)
    #: Where national forms of searched numbers are read (the one number rule).
    country: str | None = None

    @property
    def ui(self) -> UIOptions:
        """The options of the search page."""
        return UIOptions(self.ui_prefix, self.viewers, self.viewer_file, self.ui_secret,
                         self.trust_proxy, self.session_idle, self.session_max,
                         self.public_url, self.export_max)


@dataclass(frozen=True)
class Served:
    """What :func:`build_app` built: the app to run, and what start-up says of it."""

    #: What gunicorn runs: the receiver, or the search page in front of it.
    app: WSGIApplication
    store: Store
    #: Where the store is, as a line (``under /srv/recordings``).
    where: str
    guard: Guard
    #: The search page's viewers; ``None`` without ``--ui``.
    viewers: Viewers | None
    #: What the buckets said before listening (a bucket without versioning, …).
    warnings: list[str]
    #: Who may read ``/metrics`` (with ``--metrics``).
    metrics_allow: tuple[str, ...]
    #: What start-up says of the analysis pipeline (on, off, and why).
    analysis: tuple[str, ...] = ()
    #: The search page (``--ui``): its upkeep and its ``SIGHUP`` reread are gunicorn's hooks.
    ui: SearchUI | None = None
    #: What start-up says about the viewers' secrets (plaintext, weak bcrypt).
    viewer_warnings: tuple[str, ...] = ()


def build_app(options: ServeOptions, spec: StoreSpec) -> Served:
    """The store and the app ``options`` describe; a click error when they cannot be."""
    try:
        guard = Guard(
            basic=[*options.basic_auth,
                   *(read_secrets(options.basic_auth_file) if options.basic_auth_file else ())],
            tokens=[*options.token,
                    *(read_secrets(options.token_file) if options.token_file else ())],
            allow=options.allow,
            trusted_proxies=options.trust_proxy,
        )
        viewers: Viewers | None = None
        viewer_warnings: list[str] = []
        if options.ui_on:
            check_ui_prefix(options.ui_prefix, (options.prefix, options.attachments_prefix),
                            has_catalog=(spec.catalog_url is not None or spec.s3_url is None
                                         or spec.root_given))
            viewers, viewer_warnings = read_viewers(options.ui, guard)
        store, where = spec.open_store()
        warnings = _fail_fast(store)
        searched = catalog_of(store)
        if searched is not None:
            searched.country = options.country
        metrics = (_metrics(options.metrics_allow, options.trust_proxy)
                   if options.metrics_on else None)
        receiver = KazooRecordings(
            not_found,
            store,
            prefix=options.prefix,
            accept_caller=options.accept_caller,
            max_size=options.max_size,
            attachments_prefix=options.attachments_prefix,
            attachments_base64=options.attachments_base64,
            read_back=options.read_back,
            guard=guard if guard.enabled else None,
            # Built here, in the master: each worker starts its sender on first use.
            on_stored=[WebhookNotifier(url) for url in options.notify_urls],
            # Counted in the middleware; scrapes answered in front of everything.
            metrics=metrics, answer_scrapes=False,
            inspect=options.inspect,
        )
        analysis = _pipeline(options, store, metrics)
        app: WSGIApplication = receiver
        ui = None
        if viewers is not None:
            callers = (ANALYSIS.of(spec.config) or DEFAULT_SETTINGS).callers
            app = ui = build_ui(receiver, store, options.ui, viewers, callers=callers)
        if metrics is not None:
            app = MetricsApp(app, metrics)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    return Served(app=app, store=store, where=where, guard=guard, viewers=viewers,
                  warnings=warnings, metrics_allow=options.metrics_allow or LOOPBACK, ui=ui,
                  viewer_warnings=tuple(viewer_warnings), analysis=analysis)


def _pipeline(options: ServeOptions, store: Store, metrics: Metrics | None) -> tuple[str, ...]:
    """Turn the catalog's queueing on or off as ``options`` say; what start-up says of it.

    The queue is kept in the catalog: a store without one (``--s3`` alone) has no
    pipeline. With ``--background-workers 0`` jobs are still queued, for other hosts.
    """
    catalog = catalog_of(store)
    if catalog is None:
        return ("analysis off: the queue is kept in the catalog, and --s3 alone keeps none "
                "(add --catalog postgresql://… to analyse the recordings)",)
    if not options.analyze:
        catalog.pipeline = False
        return ("analysis off (--no-analyze): recordings are stored without analysis jobs "
                "(`kzr-wsgi worker --backfill` queues them later)",)
    if metrics is not None:
        from ..pipeline.metrics import queue_collector

        metrics.registry.register(queue_collector(catalog))
    if options.background_workers == 0:
        return ("analysis: each recording's job is queued in the catalog for other hosts' "
                "workers (--background-workers 0: none runs here)",)
    return (f"analysis: {options.background_workers} background worker(s) at the lowest "
            f"CPU and I/O priority; spool {options.spool_dir}",)


def start_workers(settings: dict[str, Any], store: Store, spec: StoreSpec,
                  options: ServeOptions) -> None:
    """Run the background workers from gunicorn's master, once its workers run, and stop
    them on the way out (see :mod:`kzr_wsgi.pipeline.supervisor`)."""
    catalog = catalog_of(store)
    if catalog is None or not catalog.pipeline or options.background_workers == 0:
        return
    from ..pipeline.spool import DEFAULT_SPOOL
    from ..pipeline.supervisor import Supervisor
    from .transcribing import worker_env
    from .worker import child_env

    env = child_env(spec, options.spool_dir or DEFAULT_SPOOL, idle=True)
    env.update(worker_env(options.transcribe))
    supervisor = Supervisor(options.background_workers, env, released=catalog.jobs.release)
    for hook, action in (("when_ready", supervisor.start), ("on_exit", supervisor.stop)):
        settings[hook] = _then(settings.get(hook), action)


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


def metrics_dir(root: str) -> MultiprocessDir:
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


def start_housekeeping(settings: dict[str, Any], store: Store, spec: StoreSpec, *,
                       served: Served | None = None,
                       options: ServeOptions | None = None) -> None:
    """Run the periodic jobs (pruning by ``[retention]``, …) from gunicorn's master.

    One process among all serving the store does them (see
    :mod:`kzr_wsgi.housekeeping.housekeeper`); ``settings`` gets gunicorn hooks that
    start it once the workers run and stop it on the way out. With the search page
    (``served.ui``), its upkeep is among the jobs, and its viewers are reread on
    ``SIGHUP`` (:func:`~kzr_wsgi.cli.ui_serving.viewer_reloader`).
    """
    from ..housekeeping.housekeeper import TICK, Housekeeper, jobs_for, lease_for

    ui = served.ui if served is not None else None
    if ui is not None and options is not None and served is not None:
        settings["on_reload"] = _then(settings.get("on_reload"),
                                      viewer_reloader(ui, options.ui, served.guard))
        if ui.access is not None:
            # Each worker writes what it has queued as it leaves (its atexit does too).
            settings["worker_exit"] = _worker_then(settings.get("worker_exit"),
                                                   ui.access.close)
    _every_host(settings, store, spec, options)
    retention = options.access_retention if options is not None else timedelta(days=365)
    jobs = jobs_for(store, spec.config, ui=ui, access_retention=retention)
    if not jobs:
        return
    try:
        keeper = Housekeeper(jobs, lease_for(store, spec.catalog_url),
                             tick=min(TICK, *(job.every.total_seconds() for job in jobs)))
    except KzrError as exc:
        raise click.ClickException(str(exc)) from exc
    policy = RETENTION.of(spec.config)
    if policy is not None:
        click.echo(f"kzr-wsgi: retention {policy.describe()}; pruned every "
                   f"{format_age(policy.interval)} by one housekeeper per store", err=True)
    if any(job.name == "sweep" for job in jobs):
        click.echo("kzr-wsgi: the bucket's leftovers (unfinished uploads, unindexed objects) "
                   "are swept daily by one housekeeper per store", err=True)
    # In the master, once the workers run (threads do not survive their fork).
    for hook, action in (("when_ready", keeper.start), ("on_exit", keeper.stop)):
        settings[hook] = _then(settings.get(hook), action)


def _every_host(settings: dict[str, Any], store: Store, spec: StoreSpec,
                options: ServeOptions | None) -> None:
    """Start, on this host whatever the lease, applying erasures recorded in the catalog
    to its own disks and delivering the ``erased`` events (see
    :mod:`kzr_wsgi.housekeeping.erasures`)."""
    from ..housekeeping.erasures import EVERY, EveryHost, erasure_jobs
    from ..housekeeping.housekeeper import Housekeeper
    from ..housekeeping.tombstones import DEFAULT_TOMBSTONE

    try:
        store.state()
    except KzrError:
        return  # a store that keeps no state has nothing to apply
    urls = options.notify_urls if options is not None else ()
    keeper = Housekeeper(erasure_jobs(store, catalog_of(store), urls, DEFAULT_TOMBSTONE),
                         EveryHost(), tick=EVERY.total_seconds())
    for hook, action in (("when_ready", keeper.start), ("on_exit", keeper.stop)):
        settings[hook] = _then(settings.get(hook), action)


def _then(before: Any, action: Any) -> Any:
    """A gunicorn hook (one argument, as gunicorn checks) running ``before``, then ``action``."""

    def hook(server: Any) -> None:
        if before is not None:
            before(server)
        action()

    return hook


def _worker_then(before: Any, action: Any) -> Any:
    """A gunicorn worker hook (the arbiter and the worker) running ``before``, then ``action``."""

    def hook(server: Any, worker: Any) -> None:
        if before is not None:
            before(server, worker)
        action()

    return hook
