"""After-commit notifications: tell another service that a recording has arrived.

:class:`WebhookNotifier` is an ``on_stored`` callback for
:class:`~kzr_wsgi.KazooRecordings`: it POSTs a JSON document (see
:func:`notification`) to a URL for every newly stored recording, off the request path::

    notifier = WebhookNotifier("https://indexer.example/hooks/recording")
    app = KazooRecordings(app, DirectoryStore("/srv/recordings"), on_stored=[notifier])

or ``kzr-wsgi serve --notify-url URL`` (repeatable).

**Kazoo never waits for it.** The callback only serialises the document and puts it on
a bounded in-memory queue; one daemon thread per process does the POSTs. A slow, dead
or failing webhook cannot delay or change Kazoo's ``2xx``, and the queue cannot grow
without bound: when ``max_queue`` notifications are waiting, new ones are dropped with
a log line.

**The delivery promise: at least once, while the process lives.**

* A notification is sent only after its recording is committed, and only for a newly
  stored one (a de-duplicated retry sends none).
* Each is POSTed until the webhook answers ``2xx``: a network error, a timeout,
  ``408``, ``425``, ``429`` or ``5xx`` is retried up to ``retries`` times, waiting
  ``backoff``, ``2 * backoff``, ``4 * backoff``, … (at most 5 minutes) in between. Any
  other answer (``3xx``, ``4xx``; redirects are not followed) will not change by
  retrying, so it is given up at once. Giving up is logged (logger
  ``kzr_wsgi.notify``, level ERROR) with the recording's call id and location.
* A webhook that answers ``2xx`` after the timeout, or whose answer is lost, sees the
  same notification again: every document carries a stable ``id`` (also sent as the
  ``Idempotency-Key`` header) for the receiver to drop repeats.
* **What is lost:** the queue lives in memory. A crash, ``SIGKILL`` or restart loses
  whatever is queued or being retried; a clean exit (``sys.exit``, a gunicorn worker
  stopping) first spends up to ``timeout`` seconds flushing. Recordings themselves are
  never lost this way, only the message about them: anything that must not miss one
  should also reconcile against the store (e.g. list it daily), or use a durable
  queue in its own ``on_stored`` callback (``examples/transcription_hook.py``).

**HTTP.** ``urllib.request``, so no extra dependency; proxies come from the
environment (``HTTPS_PROXY``, ``NO_PROXY``) as for any urllib client. Headers:
``Content-Type: application/json``, ``Idempotency-Key: <id>``, and any given.

**Processes.** Under gunicorn with ``preload_app`` the app (and so the notifier) is
built in the master, then forked into workers; a thread does not survive ``fork``.
The worker thread is therefore started lazily, on first use in each process (keyed on
``os.getpid()``), with a fresh queue: a child never inherits, and never repeats, what
its parent had queued.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import hashlib
import json
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from . import posting
from .recording import Recording, Stored
from .textenum import TextEnum

log = logging.getLogger("kzr_wsgi.notify")

#: The longest wait between two attempts, whatever ``backoff`` and the attempt number.
MAX_BACKOFF = 300.0


def notification(recording: Recording, result: Stored | None) -> dict[str, Any]:
    """The JSON document sent for one stored recording. Pure: no I/O.

    ``id`` is derived from where and what was stored, so a repeat of the same
    notification carries the same ``id``.

    >>> doc = notification(recording, result)                   # doctest: +SKIP
    >>> doc["event"], doc["recording"]["call_id"], doc["result"]["sha256"]  # doctest: +SKIP
    ('recording.stored', 'abc-123@pbx', '9f86d0…')
    """
    received_at = recording.received_at.isoformat()
    if result is not None:
        identity: list[Any] = ["stored", result.location, result.sha256]
    else:
        # A handler that returned None said nothing about where: identify the upload.
        identity = ["received", list(recording.name.key), recording.recording_id, received_at]
    blob = json.dumps(identity, ensure_ascii=True, separators=(",", ":"))
    return {
        "event": "recording.stored",
        "id": hashlib.sha256(blob.encode("ascii")).hexdigest()[:32],
        "recording": recording.describe(),
        "result": None if result is None else {
            "location": result.location,
            "size": result.size,
            "sha256": result.sha256,
            "also": list(result.also),
        },
    }


@dataclass(frozen=True)
class _Pending:
    """One queued notification: the encoded document and what the log lines name."""

    id: str
    body: bytes
    label: str


class NotificationOutcome(TextEnum):
    """What became of one attempt or notification, as a :data:`Listener` is told it."""

    #: The webhook answered ``2xx``.
    DELIVERED = "delivered"
    #: An attempt failed and another follows.
    RETRIED = "retried"
    #: Not delivered: refused, out of attempts, dropped or abandoned at close.
    GIVEN_UP = "given_up"


#: Told each notification's fate (a :class:`NotificationOutcome`, which is its text:
#: ``"delivered"``, ``"retried"``, ``"given_up"``). :meth:`WebhookNotifier.add_listener`;
#: e.g. the metrics.
Listener = Callable[[NotificationOutcome], None]

#: Every live notifier, so the fork hook can give each child fresh locks.
_INSTANCES: weakref.WeakSet[WebhookNotifier] = weakref.WeakSet()


class WebhookNotifier:
    """POST a JSON :func:`notification` for each newly stored recording; never block Kazoo.

    An ``on_stored`` callback: ``KazooRecordings(app, store, on_stored=[notifier])``.
    See the module docstring for the delivery promise.

    :param url: ``http://`` or ``https://`` URL; ``user:password@`` in it becomes an
        ``Authorization: Basic`` header (and is never logged).
    """

    def __init__(
        self,
        url: str,
        *,
        # Seconds one POST may take, connecting included; a slower webhook is retried.
        timeout: float = 5.0,
        # Attempts after the first, for errors that may pass (network, 408/429/5xx).
        retries: int = 5,
        # Seconds before the first retry; doubles each time (capped at MAX_BACKOFF).
        backoff: float = 1.0,
        # Notifications waiting beyond this are dropped (logged): memory stays bounded.
        max_queue: int = 10000,
        # Extra request headers, e.g. {"Authorization": "Bearer …"}.
        headers: Mapping[str, str] | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook URL must be http:// or https://: {url!r}")
        if timeout <= 0 or retries < 0 or backoff < 0 or max_queue < 1:
            raise ValueError("timeout and max_queue must be positive, retries and backoff >= 0")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_queue = max_queue
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": "kzr-wsgi-webhook",
            **(headers or {}),
        }
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            token = base64.b64encode(credentials.encode("utf-8")).decode("ascii")
            self._headers.setdefault("Authorization", f"Basic {token}")
        self._url = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        #: The URL as logged: without credentials.
        self.url = self._url
        self._opener = posting.opener()
        self._closed = False
        self._listeners: list[Listener] = []
        self._reset()
        _INSTANCES.add(self)

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.url!r})"

    def add_listener(self, listener: Listener) -> None:
        """Tell ``listener`` each outcome (see :data:`Listener`); it runs on the sender's thread."""
        self._listeners.append(listener)

    def _tell(self, outcome: NotificationOutcome) -> None:
        for listener in self._listeners:
            try:
                listener(outcome)
            except Exception:
                # Counting must never stop the sender.
                log.exception("webhook %s: listener %r failed", self.url, listener)

    def _reset(self) -> None:
        """Fresh per-process state: nothing queued, no worker, nothing inherited."""
        #: Counters for this process: delivered, given up after errors, dropped (queue full
        #: or closed) and abandoned at close.
        self.delivered = self.failed = self.dropped = self.abandoned = 0
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Pending | None] = queue.Queue(self.max_queue)
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._stopping = threading.Event()
        self._deadline = float("inf")

    # -- the request path ---------------------------------------------------------------

    def __call__(self, recording: Recording, result: Stored | None) -> None:
        """Queue the notification for ``recording`` and return at once."""
        doc = notification(recording, result)
        location = result.location if result is not None else "-"
        label = f"call_id={recording.call_id!r} location={location}"
        pending = _Pending(doc["id"], json.dumps(doc, ensure_ascii=True).encode("ascii"), label)
        if self._closed:
            self._count_drop()
            log.warning("webhook %s: closed, dropped notification %s (%s)",
                        self.url, pending.id, label)
            return
        q = self._ensure_worker()
        try:
            q.put_nowait(pending)
        except queue.Full:
            self._count_drop()
            log.error("webhook %s: %d notifications waiting, dropped %s (%s)",
                      self.url, self.max_queue, pending.id, label)

    def _ensure_worker(self) -> queue.Queue[_Pending | None]:
        if self._pid == os.getpid() and self._thread is not None:
            return self._queue
        with self._lock:
            if self._pid != os.getpid():
                # Forked without the at-fork hook (should not happen): start afresh.
                self._reset()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,),
                    name=f"kzr-webhook-{self.url}", daemon=True,
                )
                self._thread.start()
                # A clean exit flushes what it can; weak, so the notifier can be freed.
                ref = weakref.ref(self)
                atexit.register(_close_at_exit, ref, os.getpid())
            return self._queue

    def _count_drop(self) -> None:
        with self._lock:  # request threads race here
            self.dropped += 1
        self._tell(NotificationOutcome.GIVEN_UP)

    # -- the worker thread --------------------------------------------------------------

    def _run(self, q: queue.Queue[_Pending | None]) -> None:
        while True:
            pending = q.get()
            if pending is None:
                return
            if self._past_deadline():
                self.abandoned += 1
                self._tell(NotificationOutcome.GIVEN_UP)
                # Named one by one: these are the recordings to reconcile by hand.
                log.error("webhook %s: closing, abandoned notification %s (%s)",
                          self.url, pending.id, pending.label)
                continue
            try:
                self._deliver(pending)
            except Exception:
                # Never let one bad notification stop the thread for all later ones.
                self.failed += 1
                self._tell(NotificationOutcome.GIVEN_UP)
                log.exception("webhook %s: notification %s failed", self.url, pending.id)

    def _deliver(self, pending: _Pending) -> None:
        attempts = 1 + self.retries
        for attempt in range(1, attempts + 1):
            try:
                self._post(pending)
            except posting.GiveUp as exc:
                self.failed += 1
                self._tell(NotificationOutcome.GIVEN_UP)
                log.error("webhook %s: gave up on notification %s (%s) after %d attempt(s): %s",
                          self.url, pending.id, pending.label, attempt, exc)
                return
            except Exception as exc:  # network errors, timeouts, 5xx: worth another try
                if attempt == attempts:
                    self.failed += 1
                    self._tell(NotificationOutcome.GIVEN_UP)
                    log.error(
                        "webhook %s: gave up on notification %s (%s) after %d attempt(s): %s",
                        self.url, pending.id, pending.label, attempt, posting.describe(exc))
                    return
                delay = min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF)
                self._tell(NotificationOutcome.RETRIED)
                log.warning("webhook %s: notification %s attempt %d failed (%s); "
                            "retrying in %.1fs", self.url, pending.id, attempt,
                            posting.describe(exc), delay)
                if not self._sleep(delay):
                    self.abandoned += 1
                    self._tell(NotificationOutcome.GIVEN_UP)
                    log.error("webhook %s: closing, abandoned notification %s (%s) after "
                              "%d attempt(s)", self.url, pending.id, pending.label, attempt)
                    return
            else:
                self.delivered += 1
                self._tell(NotificationOutcome.DELIVERED)
                return

    def _post(self, pending: _Pending) -> None:
        timeout = self.timeout
        if self._stopping.is_set():
            timeout = max(0.1, min(timeout, self._deadline - time.monotonic()))
        posting.post(self._opener, self._url, pending.body,
                     {**self._headers, "Idempotency-Key": pending.id}, timeout)

    def _sleep(self, delay: float) -> bool:
        """Wait ``delay`` seconds before a retry; False when close()'s deadline comes first."""
        end = time.monotonic() + delay
        while True:
            stopping = self._stopping.is_set()
            limit = min(end, self._deadline) if stopping else end
            now = time.monotonic()
            if now >= limit:
                return not (stopping and now >= self._deadline)
            if stopping:
                time.sleep(limit - now)
            else:
                # close() sets the event: wake up to re-check against its deadline.
                self._stopping.wait(limit - now)

    def _past_deadline(self) -> bool:
        return self._stopping.is_set() and time.monotonic() >= self._deadline

    # -- shutting down ------------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> bool:
        """Stop taking notifications and deliver what is queued, for up to ``timeout`` s.

        Returns True when every queued notification was dealt with (delivered, or
        given up by the retry rules); False when some were abandoned at the deadline.
        Later calls of the notifier drop their notification (logged).
        """
        self._closed = True
        with self._lock:
            thread = self._thread if self._pid == os.getpid() else None
        if thread is None or not thread.is_alive():
            return True
        abandoned_before = self.abandoned
        self._deadline = time.monotonic() + timeout
        self._stopping.set()
        # When the queue is full the worker still checks the deadline between items.
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        thread.join(max(0.0, self._deadline - time.monotonic()) + 0.5)
        left = self._queue.qsize()
        if thread.is_alive() or left:
            log.error("webhook %s: closed with notifications not delivered", self.url)
            return False
        if self.abandoned > abandoned_before:
            log.error("webhook %s: closed, %d notification(s) abandoned undelivered",
                      self.url, self.abandoned - abandoned_before)
            return False
        return True


def _close_at_exit(ref: weakref.ref[WebhookNotifier], pid: int) -> None:
    notifier = ref()
    # atexit handlers survive fork: only the process that started the worker flushes.
    if notifier is not None and pid == os.getpid():
        notifier.close(notifier.timeout)


def _after_fork_in_child() -> None:
    # A lock held by another thread at fork time would stay held forever in the child.
    for notifier in list(_INSTANCES):
        notifier._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)
