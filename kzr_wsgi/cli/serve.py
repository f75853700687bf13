"""``kzr-wsgi serve``: run the receiver on its own.

Three steps, each its own function: :func:`check_options` refuses what does not go
together before anything is touched; :func:`~kzr_wsgi.cli.serving.build_app` builds
the store and the WSGI app; :func:`~kzr_wsgi.cli.announce.announce` says what it built.
Then gunicorn runs it (:mod:`kzr_wsgi.server.gunicorn`).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from ..body import DEFAULT_MAX_SIZE
from ..configfile import ANALYSIS, RETENTION, TRANSCRIBE
from ..forms import url_prefix
from ..metrics import DEFAULT_PATH as METRICS_PATH
from ..pipeline.spool import DEFAULT_SPOOL
from ..server.gunicorn import (
    DEFAULT_THREADS,
    DEFAULT_WORKERS,
    MaskShareTokens,
    gunicorn_options,
    run,
)
from ..ui.exporting import DEFAULT_EXPORT_MAX
from .announce import announce
from .options import StoreSpec, store_options
from .params import Age, CountryCode, Size
from .serving import ServeOptions, build_app, metrics_dir, start_housekeeping, start_workers
from .transcribing import transcribe_options, transcribe_settings, transcribing_line


def check_options(options: ServeOptions) -> None:
    """Refuse, as a usage error naming the options, what does not go together.

    Before any store or bucket is touched; what needs a file read or the store is
    checked while building (:func:`~kzr_wsgi.cli.serving.build_app`).
    """
    if options.metrics_allow and not options.metrics_on:
        raise click.UsageError("--metrics-allow needs --metrics")
    if (options.ui_on and options.metrics_on
            and (METRICS_PATH + "/").startswith(url_prefix(options.ui_prefix) + "/")):
        # The UI owns everything under its prefix: /metrics would be a viewer's 401.
        raise click.UsageError(f"--ui-prefix {options.ui_prefix} would hide {METRICS_PATH}: "
                               "choose another")
    if (options.viewers or options.viewer_file or options.ui_secret
            or options.public_url) and not options.ui_on:
        raise click.UsageError("--viewer, --viewer-file, --ui-secret and --public-url need --ui")
    if options.public_url is not None:
        from ..ui.shares import check_public_url

        try:
            check_public_url(options.public_url)
        except ValueError as exc:
            raise click.UsageError(f"--public-url: {exc}") from exc
    if options.ui_secret is not None and len(options.ui_secret.encode("utf-8")) < 16:
        # Said here, naming the option, before any store or bucket is touched.
        raise click.UsageError("--ui-secret must be at least 16 bytes long "
                               "(e.g. the output of `openssl rand -hex 16`)")
    if (options.certfile is None) != (options.keyfile is None):
        raise click.UsageError("--certfile and --keyfile go together")


@click.command()
@store_options(serving=True, tables=(RETENTION, ANALYSIS, TRANSCRIBE))
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
# The envvars declared below are the names these were read under before the environment
# had one naming (kzr_wsgi.cli.environment keeps them as aliases).
@click.option("--notify-url", "notify_urls", multiple=True, metavar="URL",
              envvar=["KZR_NOTIFY_URL", "KZR_NOTIFY_URLS"],
              help="POST a JSON notification here after each newly stored recording, off "
                   "the request path (retried with backoff). Repeatable.")
@click.option("--metrics", "metrics_on", is_flag=True, envvar="KZR_METRICS_ON",
              help="Serve Prometheus metrics at /metrics, summed over every worker. "
                   "Needs the metrics extra (prometheus_client).")
@click.option("--metrics-allow", multiple=True, metavar="CIDR",
              help="Who may read /metrics (403 otherwise; upload credentials do not apply). "
                   "Repeatable. Default: loopback only. The client address is found as for "
                   "--allow, --trust-proxy included.")
@click.option("--ui", "ui_on", is_flag=True, envvar="KZR_UI_ON",
              help="Serve the search-and-listen page and its JSON API under --ui-prefix, "
                   "behind viewers (--viewer, --viewer-file). Needs a catalog.")
@click.option("--ui-prefix", default="/ui", show_default=True, metavar="PATH",
              help="URL path of the page; every URL below it is the UI's, never an upload.")
@click.option("--viewer", "viewers", multiple=True, metavar="USER:PASS", envvar="KZR_VIEWER",
              help="A viewer who sees every account (HTTP Basic; never an upload credential). "
                   "Repeatable. From KZR_VIEWER, several are split on whitespace.")
@click.option("--viewer-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="File of viewers, one a line: USER:SECRET (a bcrypt or argon2id hash, or "
                   "a password), then optionally the comma-separated account ids that viewer "
                   "may see (all when left out) and the word share. Reread on SIGHUP.")
@click.option("--ui-secret", default=None, metavar="SECRET",
              help="Signs the UI's paging cursors (default: random per start). Give every "
                   "host behind one balancer the same one.")
@click.option("--session-idle", type=Age(), default="30m", show_default=True,
              help="A viewer signed in through the page who makes no request for this long "
                   "must sign in again.")
@click.option("--session-max", type=Age(), default="12h", show_default=True,
              help="A session ends this long after sign-in, however busy.")
@click.option("--public-url", default=None, metavar="URL",
              help="The address people reach the receiver at (https://rec.example.net): share "
                   "links are made with it. Without it the API answers a link as a path, which "
                   "the page completes with its own address (never the request's Host).")
@click.option("--export-max", type=click.IntRange(1, 1_000_000), default=DEFAULT_EXPORT_MAX,
              show_default=True,
              help="The most recordings one export (a ZIP) may hold; more is refused (400).")
@click.option("--access-retention", type=Age(), default="1y", show_default=True,
              help="How long the UI's access log (sign-ins, plays, downloads, exports, share "
                   "links) is kept; older days are removed hourly by the housekeeper.")
@click.option("--access-log", default=None, metavar="FILE",
              help="Write an access log line for every request to FILE ('-': standard error). "
                   "Share-link tokens in paths are masked.")
@click.option("--certfile", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Serve HTTPS with this PEM certificate (chain) file; needs --keyfile.")
@click.option("--keyfile", type=click.Path(dir_okay=False, exists=True), default=None,
              help="The PEM private key for --certfile.")
@click.option("--inspect/--no-inspect", default=True, show_default=True,
              help="Inspect each MP3/WAV upload's audio as it streams in (format, duration, "
                   "flags such as empty, truncated, silent) and keep it in the sidecar under "
                   "`audio`; flagged recordings are logged at WARNING and still stored. "
                   "--no-inspect leaves `audio` null.")
@click.option("--background-workers", type=click.IntRange(0, 64), default=1, show_default=True,
              help="Analysis workers this serve runs beside the receiver, at the lowest CPU "
                   "and I/O priority (restarted if they die). 0: leave the work to other "
                   "hosts' workers (kzr-wsgi worker); the jobs are still queued.")
@click.option("--analyze/--no-analyze", "analyze", default=True, show_default=True,
              help="Queue each new recording's analysis (talk time, one-way audio, dead "
                   "air, silence, clipping, a waveform) in the catalog. --no-analyze turns "
                   "the pipeline off: no job is queued, no worker runs.")
@click.option("--spool-dir", type=click.Path(file_okay=False), default=str(DEFAULT_SPOOL),
              show_default=True,
              help="Where the background workers copy a recording from a bucket while they "
                   "decode it (one file per worker, mode 0600, removed after).")
@transcribe_options
@click.option("--country", type=CountryCode(), default=None, metavar="CC",
              help="Read national forms of the numbers searched on the page and its API in "
                   "this country (ISO 3166: US, GB); without it they are compared by their "
                   "digits (the one number rule, see the erasure page).")
def serve(spec: StoreSpec, **given: Any) -> None:
    """Run the receiver: store every Kazoo upload under ROOT (or in S3 with --s3)."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(MaskShareTokens())
    options = ServeOptions(**given)
    check_options(options)
    transcription = transcribe_settings(options.transcribe, spec.config)
    if transcription is not None and not options.analyze:
        raise click.UsageError("--transcribe needs the analysis (its speech and silences): "
                               "drop --no-analyze")
    # Made before prometheus_client is first imported: its multiprocess mode is chosen then.
    metrics = metrics_dir(spec.root) if options.metrics_on else None
    served = build_app(options, spec)
    announce(options, served, metrics)
    if transcription is not None:
        logging.getLogger("kzr_wsgi.serve").info("%s", transcribing_line(
            transcription, options.background_workers))
    settings = gunicorn_options(options.host, options.port, workers=options.workers,
                                threads=options.threads, certfile=options.certfile,
                                keyfile=options.keyfile, access_log=options.access_log)
    if metrics is not None:
        settings.update(metrics.gunicorn_hooks())
    start_housekeeping(settings, served.store, spec, served=served, options=options)
    start_workers(settings, served.store, spec, options)
    run(served.app, settings)
