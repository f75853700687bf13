"""``kzr-wsgi worker``: work through the queue of analyses on its own (see the manual's
analysis and scaling pages).

::

    kzr-wsgi worker --root /srv/recordings                       # until stopped
    kzr-wsgi worker --s3 s3://rec/kazoo --catalog postgresql://… --processes 4
    kzr-wsgi worker --root /srv/recordings --backfill --once     # a store from before
    kzr-wsgi worker --root /srv/recordings --retry-failed --account 4a1b…
    kzr-wsgi worker --root /srv/recordings --reanalyze --flag one_way_audio --once

``serve`` runs the same workers in the background (:func:`start_workers`); this command
runs them on hosts of their own, or drains a backlog once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..building import catalog_of
from ..catalog import Catalog, Query
from ..catalog.analysis import JobState, Origin
from ..configfile import ANALYSIS, TRANSCRIBE
from ..pipeline.settings import DEFAULT_SETTINGS, PipelineSettings
from ..pipeline.spool import DEFAULT_SPOOL, Spool
from ..pipeline.supervisor import NAME_ENV, Supervisor, orphaned
from ..stores.base import Store
from .filters import any_filter, filter_options
from .options import StoreSpec, store_options
from .transcribing import redactor_of, transcribe_options, transcribe_settings, worker_env
from .worker_transcribe import queue_transcriptions, redact_again, transcriber

if TYPE_CHECKING:
    from ..transcribe import Settings as TranscribeSettings

#: How ``serve`` and this command log (one format for the receiver and its workers).
LOG_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


@click.command("worker")
@click.option("--processes", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes, each working on one recording at a time.")
@click.option("--once", is_flag=True,
              help="Work until no job is due, then exit (a backlog drained).")
@click.option("--backfill", is_flag=True,
              help="First queue every catalogued recording that has no analysis job yet "
                   "(a store from before the analysis, or stored with serve --no-analyze).")
@click.option("--retry-failed", is_flag=True,
              help="First queue again the failed analyses the filters select (all by "
                   "default), with their attempts counted from 0.")
@click.option("--reanalyze", is_flag=True,
              help="First queue again the done analyses the filters select, to be decoded "
                   "again (after a change of the [analysis] thresholds, say).")
@click.option("--retranscribe", is_flag=True,
              help="First queue again the done transcriptions the filters select, to be "
                   "made again by the engine (after a change of engine or model, say).")
@click.option("--reredact", is_flag=True,
              help="First apply the redaction rules as they are now (--transcribe-redact, "
                   "[transcribe] redact and redact-patterns) to the stored transcripts the "
                   "filters select: their files, earlier versions on a versioned bucket, "
                   "and their search rows. No engine is asked.")
@filter_options
@click.option("--spool-dir", type=click.Path(file_okay=False), default=str(DEFAULT_SPOOL),
              show_default=True,
              help="Where recordings from a bucket are copied while they are decoded "
                   "(one file per worker process at most, mode 0600, removed after).")
@click.option("--idle/--no-idle", default=True, show_default=True,
              help="Run at the lowest CPU priority (SCHED_IDLE, else nice 19) and in the "
                   "idle I/O class, so anything else on the host comes first.")
@transcribe_options
@store_options(tables=(ANALYSIS, TRANSCRIBE), keys=("country",))
def worker(spec: StoreSpec, processes: int, once: bool, backfill: bool, retry_failed: bool,
           reanalyze: bool, retranscribe: bool, reredact: bool, filters: dict[str, Any],
           spool_dir: str, idle: bool, transcribe: dict[str, Any]) -> None:
    """Analyse (and transcribe) stored recordings: work through the queue kept in the
    catalog."""
    stream: Any = sys.stderr
    if processes == 1:
        from ..pipeline.process import capture_stderr

        stream = capture_stderr()  # libsndfile's and mpg123's words reach the log
    logging.basicConfig(level=logging.INFO, stream=stream, format=LOG_FORMAT)
    if any_filter(filters) and not (retry_failed or reanalyze or retranscribe or reredact):
        raise click.UsageError("the filters select what --retry-failed, --reanalyze, "
                               "--retranscribe or --reredact act on: give one of them")
    transcription = transcribe_settings(transcribe, spec.config)
    if retranscribe and transcription is None:
        raise click.UsageError("--retranscribe needs --transcribe ENGINE (or [transcribe])")
    store, where = spec.open_store()
    catalog = catalog_of(store)
    if catalog is None:
        raise click.UsageError("the queue is kept in the catalog: with --s3, add --catalog "
                               "postgresql://… (the one every host shares)")
    settings = ANALYSIS.of(spec.config) or DEFAULT_SETTINGS
    _queue(catalog, backfill, retry_failed, reanalyze, Query(**filters))
    if reredact:
        redact_again(store, catalog, redactor_of(transcribe, spec.config), settings.callers,
                     Query(**filters))
    queue_transcriptions(catalog, transcription is not None, backfill=backfill,
                         retry_failed=retry_failed, retranscribe=retranscribe,
                         query=Query(**filters))
    if processes > 1:
        env = child_env(spec, spool_dir, idle, once=once)
        env.update(worker_env(transcribe))
        _supervise(Supervisor(processes, env, restart=not once,
                              released=catalog.jobs.release), once)
        return
    _work(store, catalog, settings, Spool(spool_dir), once=once, idle=idle, where=where,
          transcription=transcription)


def _queue(catalog: Catalog, backfill: bool, retry_failed: bool, reanalyze: bool,
           query: Query) -> None:
    """What the command queues before it works, each said on a line."""
    jobs = catalog.jobs
    if backfill:
        click.echo(f"kzr-wsgi: queued {jobs.backfill()} recording(s) without an analysis",
                   err=True)
    if retry_failed:
        count = jobs.requeue([JobState.FAILED], query, Origin.RETRY)
        click.echo(f"kzr-wsgi: queued {count} failed analysis(es) again", err=True)
    if reanalyze:
        count = jobs.requeue([JobState.DONE], query, Origin.REANALYZE)
        click.echo(f"kzr-wsgi: queued {count} done analysis(es) to be made again", err=True)


def _work(store: Store, catalog: Catalog, settings: PipelineSettings, spool: Spool, *,
          once: bool, idle: bool, where: str, transcription: TranscribeSettings | None
          ) -> None:
    """One worker in this process, until stopped (or, with ``once``, the queue is empty)."""
    from ..pipeline.worker import Worker

    log = logging.getLogger("kzr_wsgi.pipeline")
    if idle:
        from ..pipeline.process import lower_priority

        log.info("priority: %s", "; ".join(lower_priority()))
    metrics = _metrics()
    work = Worker(store, catalog, settings=settings, spool=spool,
                  name=os.environ.get(NAME_ENV), metrics=metrics,
                  transcription=transcriber(transcription, store, catalog, settings, spool,
                                            metrics))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: work.stop.set())
    threading.Thread(target=_watch_parent, args=(work.stop,), daemon=True,
                     name="kzr-parent").start()
    try:
        work.prepare()
        log.info("worker %s: ready, analysing the recordings stored %s (catalog %s, spool "
                 "%s)", work.name, where, catalog.url, spool.directory)
        done = work.run(once=once)
    finally:
        try:
            work.queue.release(work.name)  # what it held is due again at once
        except Exception:
            log.warning("the leases of %s could not be ended: they end by themselves",
                        work.name)
        if work.transcription is not None:
            work.transcription.close()
        catalog.close()
    log.info("worker %s: %d job(s) worked on", work.name, done)


def _watch_parent(stop: threading.Event) -> None:
    """Stop the worker should the process that started it go (a killed ``serve``)."""
    while not stop.wait(1.0):
        if orphaned():
            stop.set()


def _supervise(supervisor: Supervisor, once: bool) -> None:
    """Run the children until they are done (``once``) or this process is told to stop."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    supervisor.start()
    try:
        if once:
            ok = supervisor.wait()
            if not ok:
                raise click.ClickException("a worker ended with an error (see above)")
            return
        stop.wait()
    finally:
        supervisor.stop()


def _metrics() -> Any:
    """The worker's counters when ``serve --metrics`` started it (else ``None``)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    try:
        from ..pipeline.metrics import WorkerMetrics

        return WorkerMetrics()
    except ImportError:
        return None


def child_env(spec: StoreSpec, spool_dir: str | Path, idle: bool, *,
              once: bool = False) -> dict[str, str]:
    """The environment of a worker process started for ``spec``'s store: the options as
    ``KZR_WORKER_…`` (never on a command line, where ``ps`` shows them), and no other
    value of the worker's options from this process's environment."""
    env = dict(os.environ)
    for param in worker.params:
        names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
        for name in names:
            env.pop(str(name), None)
    given = {
        "ROOT": str(Path(spec.root).absolute()) if (spec.root_given or spec.s3_url is None)
        else None,
        "S3": spec.s3_url, "S3_ENDPOINT": spec.s3_endpoint, "CATALOG": spec.catalog_url,
        "CONFIG": str(spec.config.path) if spec.config is not None else None,
        "SPOOL_DIR": str(spool_dir), "IDLE": "true" if idle else "false",
        "PROCESSES": "1", "ONCE": "true" if once else None,
    }
    env.update({f"KZR_WORKER_{key}": value for key, value in given.items() if value is not None})
    return env
