"""The WSGI edge: recognise Kazoo's uploads, own them, pass everything else on.

>>> from kzr_wsgi import KazooRecordings, DirectoryStore
>>> app = KazooRecordings(app, DirectoryStore("/srv/recordings"))  # doctest: +SKIP

The flow of a request the receiver owns: URL (:mod:`kzr_wsgi.forms`) -> who may ask
(:mod:`kzr_wsgi.auth`) -> the body as a counted stream (:mod:`kzr_wsgi.body`) ->
:class:`~kzr_wsgi.recording.Recording` -> its audio inspected as the handler reads it
(:mod:`kzr_wsgi.audio`) -> the handler -> the reply. Every other
request goes to the wrapped app with the very same ``environ`` and
``start_response``: no key added, no byte read.

Errors are the project's own types; :data:`kzr_wsgi.errors.STATUS` maps them to replies
in one place. With ``metrics=``, scrapes are answered by a
:class:`~kzr_wsgi.metrics.MetricsApp` in front of the mount's own routing.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from . import errors
from .auth import TOKEN_PARAM, Guard
from .body import DEFAULT_MAX_SIZE, Body
from .errors import STATUS as STATUS  # documented here before errors.py held it
from .forms import DEFAULT_EXTENSIONS, DEFAULT_MAX_NAME_BYTES, Action, Router, Target
from .housekeeping.tombstones import RetryGuard
from .inspecting import InspectedStream
from .metadata import parse_metadata
from .metrics import UNKNOWN_KIND, Metrics, MetricsApp, ReadOutcome, UploadOutcome
from .multipart import MultipartUpload, boundary_from_content_type
from .naming import utcnow
from .recording import Handler, Kind, ReadableStore, Recording, Stored, is_self_test
from .sending import send_error, send_stored, send_text
from .uploadlog import log_upload

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


log = logging.getLogger("kzr_wsgi")

#: Called after a recording is committed: the recording (its stream already read) and
#: what the handler returned.
OnStored = Callable[[Recording, "Stored | None"], None]


class KazooRecordings:
    """WSGI middleware that receives Kazoo's call recordings.

    :param app: the WSGI app to wrap; it sees every request that is not a recording.
    :param handler: called with each :class:`~kzr_wsgi.recording.Recording`; see
        :mod:`kzr_wsgi.recording` for the contract. A :class:`DirectoryStore` is one.
    """

    __slots__ = (
        "app",
        "handler",
        "router",
        "max_size",
        "guard",
        "on_stored",
        "attachments_base64",
        "metrics",
        "inspect",
        "retries",
        "_front",
        "__weakref__",
    )

    app: WSGIApplication
    handler: Handler
    router: Router
    max_size: int
    guard: Guard | None
    on_stored: tuple[OnStored, ...]
    attachments_base64: bool
    metrics: Metrics | None
    inspect: bool
    #: The tombstones of erased recordings, or ``None`` (a handler that keeps no state).
    retries: RetryGuard | None
    _front: WSGIApplication | None

    def __init__(
        self,
        app: WSGIApplication,
        handler: Handler,
        *,
        # Where Kazoo's `url` points; the mount owns only recordings below it.
        prefix: str = "/",
        # record_caller's bare `<CALL_ID>.<EXT>` looks like any file route: opt in.
        accept_caller: bool = False,
        # Formats Kazoo records in; other `call_recording_` names are refused (400).
        extensions: Iterable[str] = DEFAULT_EXTENSIONS,
        # Larger bodies are refused (413) before a byte is stored.
        max_size: int = DEFAULT_MAX_SIZE,
        # Names longer than this (UTF-8 bytes) are refused (400).
        max_name_bytes: int = DEFAULT_MAX_NAME_BYTES,
        # Storage-plan attachments (handler "http") under this prefix; off when None.
        attachments_prefix: str | None = None,
        # Mirror the plan's `base64_encode_data`: nothing in the request says so.
        attachments_base64: bool = False,
        # Serve GET/HEAD on a recording's own upload URL (Kazoo's recordings API).
        read_back: bool = False,
        # Who may upload and read; None lets everyone (see kzr_wsgi.auth).
        guard: Guard | None = None,
        # Told once per newly stored recording, after the commit.
        on_stored: Sequence[OnStored] = (),
        # Count uploads, reads and failures, and answer scrapes at `metrics.path`
        # (see kzr_wsgi.metrics; needs prometheus_client). Off when None.
        metrics: Metrics | None = None,
        # False: count only; a MetricsApp composed in front answers scrapes (as serve does).
        answer_scrapes: bool = True,
        # Inspect MP3/WAV bodies as they stream by (recording.audio); off: audio is None.
        inspect: bool = True,
        # Answer a retry of a recording erased on request 200 without storing it, by the
        # store's tombstones (kzr_wsgi.housekeeping.tombstones); off when False.
        tombstones: bool = True,
    ) -> None:
        inner: Any = app
        if isinstance(inner, KazooRecordings) and inner.router.prefix == _norm(prefix):
            raise ValueError(f"the app is already wrapped by KazooRecordings at {prefix!r}")
        if (read_back or attachments_prefix is not None) and not isinstance(
            handler, ReadableStore
        ):
            raise errors.ReadNotSupported(
                f"{handler!r} cannot serve reads (no open()), but read_back or "
                "attachments_prefix asks for them"
            )
        if max_size <= 0:
            raise ValueError("max_size must be positive")
        self.app = app
        self.handler = handler
        self.router = Router(
            prefix,
            attachments_prefix=attachments_prefix,
            accept_caller=accept_caller,
            extensions=extensions,
            read_back=read_back,
            max_name_bytes=max_name_bytes,
        )
        self.max_size = max_size
        self.guard = guard
        self.on_stored = tuple(on_stored)
        self.attachments_base64 = attachments_base64
        self.metrics = metrics
        self._front = None
        if metrics is not None:
            for callback in self.on_stored:
                # Webhook senders report each outcome to the counters.
                add_listener = getattr(callback, "add_listener", None)
                if add_listener is not None:
                    add_listener(metrics.notification)
            if answer_scrapes:
                self._front = MetricsApp(_routing_of(self), metrics)
        self.inspect = inspect
        self.retries = RetryGuard.of(handler) if tombstones else None

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        if self._front is not None:  # answers scrapes, and hands the rest to _route
            return self._front(environ, start_response)
        return self._route(environ, start_response)

    def _route(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """Own the request when it is a recording's; else hand it to the wrapped app."""
        try:
            target = self.router.route(environ)
        except errors.KzrError as exc:
            if self.metrics is not None:
                self._count_unrouted(self.metrics, environ, exc)
            return send_error(exc, environ, start_response)
        if target is None:
            return self.app(environ, start_response)
        return self._own(target, environ, start_response)

    # -- requests we own --------------------------------------------------------------

    def _own(
        self, target: Target, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        try:
            if self.guard is not None:
                name = self.guard.check(environ, target.name, target.pairs)
                # A token in the query is a secret: it must not reach the handler,
                # the sidecar or the logs.
                pairs = tuple(p for p in target.pairs if p[0] != TOKEN_PARAM)
                target = replace(target, name=name, pairs=pairs)
            if target.action is Action.NOT_ALLOWED:
                return send_text(environ, start_response, 405, "method not allowed\n",
                                 [("Allow", ", ".join(target.allow))])
            if target.action is Action.READ:
                return self._read(target, environ, start_response)
            return self._upload(target, environ, start_response)
        except errors.KzrError as exc:
            if self.metrics is not None:
                self._count_refusal(self.metrics, target, exc)
            return send_error(exc, environ, start_response)

    def _count_refusal(self, metrics: Metrics, target: Target, exc: errors.KzrError) -> None:
        """Count a request answered with one of the project's errors: 4xx refused, 5xx failed."""
        status = errors.status_of(exc)
        if target.action is Action.UPLOAD:
            metrics.upload(target.name.kind.value, _refusal(status),
                           self_test=is_self_test(target.call_id))
        elif target.action is Action.READ:
            if isinstance(exc, errors.NotFound):
                metrics.read(ReadOutcome.NOT_FOUND)
            elif status < 500:
                metrics.read(ReadOutcome.REFUSED)
        if status >= 500:
            metrics.store_error(exc)

    def _count_unrouted(
        self, metrics: Metrics, environ: WSGIEnvironment, exc: errors.KzrError
    ) -> None:
        """Count an upload refused before its kind was known (a bad extension, a long name)."""
        if environ.get("REQUEST_METHOD", "GET").upper() in ("PUT", "POST"):
            metrics.upload(UNKNOWN_KIND, _refusal(errors.status_of(exc)))

    def _upload(
        self, target: Target, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        started = time.monotonic()
        label = (
            f"call_id={target.call_id!r}"
            if target.call_id is not None
            else f"attachment={'/'.join(target.name.key[1:])!r}"
        )
        body: Body | None = None
        try:
            body = Body.from_environ(environ, self.max_size)
            recording = Recording(
                name=target.name,
                call_id=target.call_id,
                ext=target.ext,
                content_type=environ.get("CONTENT_TYPE") or None,
                content_length=body.content_length,
                metadata=parse_metadata(target.pairs),
                query=_without_token(environ.get("QUERY_STRING", ""))
                if self.guard is not None
                else environ.get("QUERY_STRING", ""),
                remote_addr=environ.get("REMOTE_ADDR"),
                stream=body,
                received_at=utcnow(),
            )
            upload = self._prepare(recording)
            erased = self.retries.check(recording) if self.retries is not None else None
            if erased is not None:
                return self._erased(target, recording, body, started, label, erased,
                                    environ, start_response)
            inspected = self._inspecting(recording)
            result = self.handler(recording)
            if upload is not None and not upload.complete:
                raise RuntimeError("handler returned before reading the whole file part")
            _check_consumed(body)
            if inspected is not None:
                # A handler that read exactly the body's length never asked for the b"".
                inspected.conclude()
        except errors.KzrError as exc:
            status = errors.status_of(exc)
            log_upload(label, body, started, f"refused {status}: {exc}")
            if self.metrics is not None:
                self._count_refusal(self.metrics, target, exc)
            return send_error(exc, environ, start_response)
        except Exception as exc:
            log.exception("handler failed for %r", label)
            log_upload(label, body, started, "failed 500")
            if self.metrics is not None:
                self.metrics.upload(target.name.kind.value, UploadOutcome.FAILED,
                                    self_test=is_self_test(target.call_id))
                self.metrics.store_error(exc)
            return send_text(environ, start_response, 500,
                             "internal error: recording not stored\n")
        created = result is None or result.created
        log_upload(label, body, started, "stored" if created else "duplicate",
                    result.location if result else None,
                    recording if inspected is not None else None)
        if self.metrics is not None:
            self.metrics.upload(
                recording.kind.value,
                UploadOutcome.STORED if created else UploadOutcome.DUPLICATE,
                self_test=recording.self_test,
                size=result.size if result is not None else body.bytes_read,
                seconds=time.monotonic() - started,
                audio=recording.audio,
            )
        if created and not recording.self_test:
            # `kzr-wsgi check` uploads are stored like any other, but announced to nobody.
            self._notify(recording, result)
        headers = [("ETag", f'"{result.sha256}"')] if result is not None else []
        if created:
            return send_text(environ, start_response, 201, "stored\n", headers)
        return send_text(environ, start_response, 200, "already stored\n", headers)

    def _erased(self, target: Target, recording: Recording, body: Body, started: float,
                label: str, reference: str, environ: WSGIEnvironment,
                start_response: StartResponse) -> Iterable[bytes]:
        """Answer an erased recording's retry: ``200``, nothing stored, logged, counted."""
        log_upload(label, body, started, f"erased on request {reference!r}: not stored")
        if self.metrics is not None:
            self.metrics.upload(target.name.kind.value, UploadOutcome.ERASED,
                                self_test=recording.self_test)
        return send_text(environ, start_response, 200, "erased on request: not stored\n")

    def _prepare(self, recording: Recording) -> MultipartUpload | None:
        """Decode a multipart storage-plan body: the handler gets the file part only.

        Kazoo's ``send_multipart`` plans send the attachment's document as JSON, then
        the file; the document is kept as ``recording.document``.
        """
        if recording.kind is not Kind.ATTACHMENT:
            return None
        boundary = boundary_from_content_type(recording.content_type)
        if boundary is None:
            return None
        upload = MultipartUpload(recording.stream, boundary, base64=self.attachments_base64)
        recording.stream = upload.file
        recording.document = upload.document
        recording.content_type = upload.part_content_type
        recording.content_length = None
        recording.extras.update(
            multipart=True,
            base64=self.attachments_base64,
            document_name=upload.document_name,
            part_name=upload.part_name,
        )
        return upload

    def _inspecting(self, recording: Recording) -> InspectedStream | None:
        """Put the inspector between the handler and the (decoded) body, when inspecting."""
        if not self.inspect:
            return None
        stream = InspectedStream(recording)
        recording.stream = stream
        return stream

    def _notify(self, recording: Recording, result: Stored | None) -> None:
        for callback in self.on_stored:
            try:
                callback(recording, result)
            except Exception:
                # A notification must never turn a stored recording into a failure.
                log.exception("on_stored callback %r failed", callback)

    def _read(
        self, target: Target, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        assert isinstance(self.handler, ReadableStore)
        recording_id = next((v for k, v in target.pairs if k == "recording_id" and v), None)
        stored = self.handler.open(target.name, recording_id)
        if self.metrics is not None:
            self.metrics.read(ReadOutcome.OK)
        return send_stored(environ, start_response, stored)


def _routing_of(mount: KazooRecordings) -> WSGIApplication:
    """``mount``'s own routing as a WSGI app that does not keep ``mount`` alive.

    A strong reference would be a cycle (mount -> front -> mount): the mount, its
    handler and a store's housekeeping thread would outlive their last user until the
    next garbage collection.
    """
    ref = weakref.ref(mount)

    def routing(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        alive = ref()
        assert alive is not None, "called through a mount that is gone"
        return alive._route(environ, start_response)

    return routing


def _without_token(query: str) -> str:
    """The raw query minus any ``token`` parameter (however its name is encoded)."""
    return "&".join(
        item for item in query.split("&") if item and unquote(item.partition("=")[0]) != TOKEN_PARAM
    )


def _check_consumed(body: Body) -> None:
    """After the handler returned: was the whole body read? A 2xx must mean all of it."""
    if body.complete:
        return
    before = body.bytes_read
    body.drain()  # raises BodyIncomplete when the client sent less than announced
    if body.bytes_read != before:
        raise RuntimeError(
            f"handler returned after reading {before} of {body.bytes_read} bytes"
        )


def _refusal(status: int) -> UploadOutcome:
    """The upload outcome of an answer with ``status``: ``refused`` (4xx) or ``failed``."""
    return UploadOutcome.REFUSED if status < 500 else UploadOutcome.FAILED


def _norm(prefix: str) -> tuple[str, ...]:
    return tuple(s for s in prefix.split("/") if s)
