"""Prometheus metrics (extra ``metrics``): what the receiver took, refused and lost.

>>> from kzr_wsgi.metrics import Metrics
>>> metrics = Metrics(allow=["10.0.0.0/8"])                  # doctest: +SKIP
>>> app = KazooRecordings(app, store, metrics=metrics)       # doctest: +SKIP

The mount then answers ``GET /metrics`` (Prometheus' text format) before anything
else, to clients in ``allow`` only (loopback by default; others get ``403``);
upload credentials do not apply there, and ``/metrics`` is never an upload or a read.
It does so through :class:`MetricsApp`, the small WSGI app that answers scrapes and
passes every other request on; ``kzr-wsgi serve --metrics`` composes one in front of
everything it serves, and counts across gunicorn's worker processes.

The metrics (names and labels are fixed; no label ever carries an id or a number):

* ``kzr_uploads_total{kind, outcome}``: ``stored``, ``duplicate`` (a retry already
  stored), ``refused`` (answered ``4xx``), ``failed`` (answered ``5xx``); kind
  ``unknown`` for an upload refused before its kind was known (a bad extension, a name
  too long);
* ``kzr_selftest_uploads_total{outcome}``: ``kzr-wsgi check``'s own uploads, counted
  here *instead* of in the metrics above, so a self-test never moves an alert;
* ``kzr_upload_bytes_total{kind}`` and ``kzr_upload_seconds{kind}`` (a histogram):
  bytes and time of the uploads that were stored;
* ``kzr_audio_flags_total{flag}``: one per stored recording per audio flag;
* ``kzr_reads_total{outcome}``: read-back and attachments, ``ok``, ``not_found``,
  ``refused``;
* ``kzr_notifications_total{outcome}``: webhooks ``delivered``, ``retried`` (an
  attempt that failed and will be tried again), ``given_up``;
* ``kzr_catalog_errors_total``: catalog writes that failed (the upload did not);
* ``kzr_store_errors_total{error}``: ``disk_full``, ``store_unavailable``, ``other``.

**Several processes.** prometheus_client's multiprocess mode keeps each process's
values in files under ``PROMETHEUS_MULTIPROC_DIR`` and sums them when scraped. It is
chosen when prometheus_client is first imported, so the directory must be set before
that: :class:`MultiprocessDir` makes a private one and sets the variable; this module
imports prometheus_client only when a :class:`Metrics` is built.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Response

from . import errors
from .audio import FLAGS
from .auth import Guard, parse_network
from .notify import NotificationOutcome
from .sending import send_error, send_text
from .textenum import TextEnum

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from prometheus_client import CollectorRegistry

    from .audio import AudioInfo

#: Who may scrape when nothing else is said: this host only.
LOOPBACK = ("127.0.0.0/8", "::1/128")

#: Where the mount answers scrapes.
DEFAULT_PATH = "/metrics"



class UploadOutcome(TextEnum):
    """How an upload ended: the ``outcome`` label of ``kzr_uploads_total``."""

    #: A new recording, answered ``201``.
    STORED = "stored"
    #: A retry of one already stored, answered ``200``.
    DUPLICATE = "duplicate"
    #: Answered ``4xx``.
    REFUSED = "refused"
    #: Answered ``5xx``: nothing was kept.
    FAILED = "failed"
    #: A retry of a recording erased on request (a tombstone matched): answered ``200``,
    #: not stored.
    ERASED = "erased"


class ReadOutcome(TextEnum):
    """How a read (read-back, an attachment) ended: the label of ``kzr_reads_total``."""

    OK = "ok"
    NOT_FOUND = "not_found"
    #: Credentials or network.
    REFUSED = "refused"


#: The fixed label values (pre-created at zero, so alerts see a series from the start).
KINDS = ("call", "caller", "attachment")
#: The ``kind`` of an upload refused before the receiver knew which kind it was (a bad
#: extension, a name too long): ``kzr_uploads_total`` only, never stored.
UNKNOWN_KIND = "unknown"
UPLOAD_KINDS = (*KINDS, UNKNOWN_KIND)
UPLOAD_OUTCOMES = tuple(o.value for o in UploadOutcome)
READ_OUTCOMES = tuple(o.value for o in ReadOutcome)
NOTIFICATION_OUTCOMES = tuple(o.value for o in NotificationOutcome)
STORE_ERRORS = ("disk_full", "store_unavailable", "other")

#: Upload times run from a short call on loopback to a three-hour recording trickling
#: in: sub-second buckets for the common case, then minutes up to an hour.
SECONDS_BUCKETS = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
)

_ENV = "PROMETHEUS_MULTIPROC_DIR"


def store_error_label(exc: BaseException) -> str:
    """The ``error`` label for a store failure: one of :data:`STORE_ERRORS`."""
    if isinstance(exc, errors.StorageFull):
        return "disk_full"
    if isinstance(exc, errors.StoreUnavailable):
        return "store_unavailable"
    return "other"


class Metrics:
    """The receiver's counters, and the ``/metrics`` page that shows them.

    :param allow: CIDRs that may scrape (the client address is found as for the
        upload allowlist, ``trusted_proxies`` included). Default: loopback only.
    :param trusted_proxies: proxies whose ``X-Forwarded-For`` is believed (as
        :class:`~kzr_wsgi.auth.Guard`'s).
    :param path: where the mount answers scrapes.
    :raises RuntimeError: ``PROMETHEUS_MULTIPROC_DIR`` is set but prometheus_client was
        imported before it was (its multiprocess mode can no longer be chosen).

    Build one per process: catalog write failures are process-wide, so every live
    ``Metrics`` counts each, and in multiprocess mode two would write the same files.
    """

    def __init__(
        self,
        *,
        allow: Iterable[str] = LOOPBACK,
        trusted_proxies: Iterable[str] = (),
        path: str = DEFAULT_PATH,
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram, values

        if not path.startswith("/"):
            raise ValueError(f"metrics path must start with '/': {path!r}")
        self.path = path
        self._allow = tuple(parse_network(c) for c in allow)
        # Only its address logic is used: the networks are the scrape allowlist.
        self._proxies = Guard(trusted_proxies=trusted_proxies)
        directory = os.environ.get(_ENV)
        self.multiprocess = bool(directory)
        if self.multiprocess and not getattr(values.ValueClass, "_multiprocess", False):
            raise RuntimeError(
                f"{_ENV} is set but prometheus_client was imported before it: "
                "set it before the first import (kzr_wsgi.metrics.MultiprocessDir)"
            )
        self.registry: CollectorRegistry = CollectorRegistry()
        own: CollectorRegistry | None = self.registry
        if self.multiprocess:
            from prometheus_client.multiprocess import MultiProcessCollector

            # Each process writes its own files; a scrape sums every process's, the
            # dead workers' included, so counters never go back.
            MultiProcessCollector(self.registry, path=directory)  # type: ignore[no-untyped-call]
            own = None
        self.uploads = Counter("kzr_uploads", "Uploads by kind and outcome.",
                               ["kind", "outcome"], registry=own)
        self.selftest = Counter("kzr_selftest_uploads",
                                "kzr-wsgi check's own uploads (kzr-check- call ids), by outcome.",
                                ["outcome"], registry=own)
        self.upload_bytes = Counter("kzr_upload_bytes", "Bytes of stored uploads.",
                                    ["kind"], unit="bytes", registry=own)
        self.upload_seconds = Histogram("kzr_upload_seconds",
                                        "Time to receive and store an upload that was stored.",
                                        ["kind"], buckets=SECONDS_BUCKETS, registry=own)
        self.audio_flags = Counter("kzr_audio_flags", "Stored recordings per audio flag.",
                                   ["flag"], registry=own)
        self.reads = Counter("kzr_reads", "Read-back and attachment reads by outcome.",
                             ["outcome"], registry=own)
        self.notifications = Counter("kzr_notifications", "Webhook notifications by outcome.",
                                     ["outcome"], registry=own)
        self.catalog_errors = Counter("kzr_catalog_errors",
                                      "Catalog writes that failed (the upload did not).",
                                      registry=own)
        self.store_errors = Counter("kzr_store_errors", "Store failures by kind of error.",
                                    ["error"], registry=own)
        for kind in UPLOAD_KINDS:
            for outcome in UPLOAD_OUTCOMES:
                self.uploads.labels(kind, outcome)
        for kind in KINDS:
            self.upload_bytes.labels(kind)
            self.upload_seconds.labels(kind)
        for outcome in UPLOAD_OUTCOMES:
            self.selftest.labels(outcome)
        for flag in FLAGS:
            self.audio_flags.labels(flag)
        for outcome in READ_OUTCOMES:
            self.reads.labels(outcome)
        for outcome in NOTIFICATION_OUTCOMES:
            self.notifications.labels(outcome)
        for error in STORE_ERRORS:
            self.store_errors.labels(error)
        _CatalogHook.attach(self)

    def __repr__(self) -> str:
        return (f"Metrics(path={self.path!r}, allow={[str(n) for n in self._allow]}, "
                f"multiprocess={self.multiprocess})")

    # -- counting ---------------------------------------------------------------------

    def upload(
        self,
        kind: str,
        outcome: UploadOutcome | str,
        *,
        self_test: bool = False,
        size: int = 0,
        seconds: float = 0.0,
        audio: AudioInfo | None = None,
    ) -> None:
        """Count one upload's outcome; a stored one also adds its bytes, time and flags.

        ``kind`` is a :class:`~kzr_wsgi.recording.Kind`'s value, or :data:`UNKNOWN_KIND`.
        """
        if outcome not in UPLOAD_OUTCOMES:
            raise ValueError(f"unknown upload outcome {outcome!r}")
        outcome = UploadOutcome(outcome)
        if self_test:
            self.selftest.labels(outcome).inc()
            return
        self.uploads.labels(kind, outcome).inc()
        if outcome is not UploadOutcome.STORED:
            return
        self.upload_bytes.labels(kind).inc(size)
        self.upload_seconds.labels(kind).observe(seconds)
        if audio is not None:
            for flag in audio.flags:
                self.audio_flags.labels(flag).inc()

    def read(self, outcome: ReadOutcome | str) -> None:
        """Count one read (:class:`ReadOutcome`: ``ok``, ``not_found`` or ``refused``)."""
        if outcome not in READ_OUTCOMES:
            raise ValueError(f"unknown read outcome {outcome!r}")
        self.reads.labels(outcome).inc()

    def notification(self, outcome: NotificationOutcome | str) -> None:
        """Count one webhook event; a :class:`~kzr_wsgi.notify.WebhookNotifier` listener."""
        if outcome not in NOTIFICATION_OUTCOMES:
            raise ValueError(f"unknown notification outcome {outcome!r}")
        self.notifications.labels(outcome).inc()

    def catalog_error(self, *_: Any) -> None:
        """Count one failed catalog write (extra arguments, e.g. the error, are ignored)."""
        self.catalog_errors.inc()

    def store_error(self, exc: BaseException) -> None:
        """Count one store failure, labelled by :func:`store_error_label`."""
        self.store_errors.labels(store_error_label(exc)).inc()

    # -- scraping ---------------------------------------------------------------------

    def allowed(self, environ: dict[str, Any]) -> bool:
        """True when the request's client may scrape."""
        client = self._proxies.client_address(environ)
        return client is not None and any(client in net for net in self._allow)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The page and its content type (OpenMetrics when the scraper asks for it)."""
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class MetricsApp:
    """A WSGI app that answers scrapes at ``metrics.path`` and passes on every other request.

    >>> app = MetricsApp(SearchUI(catalog, store, viewers=v, app=mount), metrics)  # doctest: +SKIP

    A scrape is ``GET`` or ``HEAD`` from a client :meth:`Metrics.allowed` lets in
    (``403`` otherwise, whatever credentials it carries; ``405`` for other methods): the
    path is never an upload or a read, however the apps behind are mounted.
    """

    __slots__ = ("app", "metrics")

    app: WSGIApplication
    metrics: Metrics

    def __init__(self, app: WSGIApplication, metrics: Metrics) -> None:
        inner: Any = app
        if isinstance(inner, MetricsApp) and inner.metrics.path == metrics.path:
            raise ValueError(f"the app already answers scrapes at {metrics.path!r}")
        self.app = app
        self.metrics = metrics

    def __repr__(self) -> str:
        return f"MetricsApp({self.app!r}, {self.metrics!r})"

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != self.metrics.path:
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if method not in ("GET", "HEAD"):
            return send_text(environ, start_response, 405, "method not allowed\n",
                             [("Allow", "GET, HEAD")])
        if not self.metrics.allowed(environ):
            return send_error(errors.Forbidden("client address may not read metrics"),
                              environ, start_response)
        page, content_type = self.metrics.render(environ.get("HTTP_ACCEPT"))
        response = Response(page, content_type=content_type,
                            headers=[("Cache-Control", "no-store")])
        return response(environ, start_response)


class _CatalogHook:
    """Tells one :class:`Metrics` of each failed catalog write, without keeping it alive.

    The catalog counts its failures process-wide (``kzr_wsgi.catalog.WRITE_FAILURES``,
    written from whichever store's thread failed); a mount's metrics listen there.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._ref = weakref.ref(metrics)

    @classmethod
    def attach(cls, metrics: Metrics) -> None:
        from .catalog import WRITE_FAILURES

        hooks = WRITE_FAILURES.hooks
        # Metrics that are gone leave no hook behind (tests build many).
        hooks[:] = [h for h in hooks if not (isinstance(h, cls) and h._ref() is None)]
        hooks.append(cls(metrics))

    def __call__(self, exc: BaseException) -> None:
        metrics = self._ref()
        if metrics is not None:
            metrics.catalog_error(exc)


class MultiprocessDir:
    """A private directory for prometheus_client's multiprocess files, for one server.

    :meth:`create` makes it (``mkdtemp``: two servers on one host never share one) and
    sets ``PROMETHEUS_MULTIPROC_DIR`` for this process and the workers it forks, before
    any metric exists. :meth:`child_exit` is gunicorn's hook of that name;
    :meth:`remove` deletes the directory, only in the process that made it (a forked
    worker unwinding through the same stack must not).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._owner = os.getpid()

    @classmethod
    def create(cls, *, avoid: str | os.PathLike[str] | None = None) -> MultiprocessDir:
        """Make the directory and point ``PROMETHEUS_MULTIPROC_DIR`` at it.

        :param avoid: a directory it must not be under (the store's root): refused
            with :class:`ValueError` if the temporary directory lands there.
        """
        # A value inherited from the environment could be another server's: never reuse it.
        path = Path(tempfile.mkdtemp(prefix="kzr-wsgi-metrics-")).resolve()
        if avoid is not None:
            root = Path(avoid).resolve()
            if path == root or root in path.parents:
                shutil.rmtree(path, ignore_errors=True)
                raise ValueError(f"the metrics directory {path} would be under the store's "
                                 f"root {root}: point TMPDIR elsewhere")
        os.environ[_ENV] = str(path)
        return cls(path)

    def child_exit(self, server: Any, worker: Any) -> None:
        """gunicorn's ``child_exit`` hook: a worker died, drop its live-gauge files."""
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(worker.pid, str(self.path))  # type: ignore[no-untyped-call]

    def on_exit(self, server: Any) -> None:
        """gunicorn's ``on_exit`` hook: the master is stopping."""
        self.remove()

    def remove(self) -> None:
        """Delete the directory (in the process that made it; elsewhere nothing)."""
        if os.getpid() != self._owner:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        if os.environ.get(_ENV) == str(self.path):
            with contextlib.suppress(KeyError):
                del os.environ[_ENV]

    def gunicorn_hooks(self) -> dict[str, Any]:
        """The gunicorn settings that tie the directory to the server's life."""
        return {"child_exit": self.child_exit, "on_exit": self.on_exit}
