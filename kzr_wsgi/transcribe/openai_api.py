"""The ``openai`` engine: any server with OpenAI's ``POST {url}/audio/transcriptions``.

whisper.cpp's server (``--inference-path /v1/audio/transcriptions``), speaches
(faster-whisper-server), vLLM, LocalAI and OpenAI itself take the same request: a
``multipart/form-data`` body with ``file`` (here a 16 kHz, 16-bit mono WAV of one
piece of one channel), ``model``, ``response_format=verbose_json``, both
``timestamp_granularities[]`` (``segment`` and ``word``) and ``language`` when set,
with ``Authorization: Bearer KEY`` when a key is set. Their answers differ; see
:mod:`kzr_wsgi.transcribe.verbose_json`.

Call audio is personal data, so:

* a plain ``http://`` URL to a host that is not loopback is refused when the engine
  is built, unless ``insecure``; a URL holding a user name or password is refused
  always (secrets stay out of URLs);
* redirects are never followed: a ``3xx`` is an error (the audio would go where the
  operator did not send it);
* the key goes in the ``Authorization`` header only: never in a log line, an
  exception's message or a ``repr`` (a server that echoes it back has it scrubbed).

The HTTP client is urllib3 (already installed with boto3 and requests, well kept,
thread-safe pools): one pool per engine, no retries of its own (the queue retries,
with backoff, by the error's type). ``timeout`` bounds connecting (at most 30 s of
it) and each wait for the server's data: a server that answers nothing for that long
is a timeout.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from ..auth import is_loopback_host
from .engine import Transcriber
from .errors import (
    EngineBusy,
    EngineRefused,
    EngineRejected,
    EngineTimeout,
    EngineUnauthorized,
    TranscribeError,
)
from .model import Transcript
from .pcm import wav_bytes
from .settings import ENGINE_RATE, Settings
from .verbose_json import parse_answer

log = logging.getLogger("kzr_wsgi.transcribe")

#: The path under ``url`` that takes the audio.
TRANSCRIPTIONS_PATH = "/audio/transcriptions"
#: How much of an error answer's body goes into the error's message.
ERROR_EXCERPT = 300
#: The largest answer read; a transcript of the longest piece, words and all, is far
#: smaller.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
#: Statuses after which the same request may succeed: timeouts, rate limits, 5xx.
RETRYABLE_STATUSES = frozenset({408, 425, 429})


class OpenAITranscriber(Transcriber):
    """Transcribe through an OpenAI-compatible server. Settings: ``url`` and ``model``
    (required), ``key``, ``language``, ``timeout``, ``ca_file``, ``insecure``,
    ``concurrency`` (the connection pool's size).

    Raises ``ValueError`` at construction for a missing or unsafe ``url`` or a
    missing ``model``.
    """

    name = "openai"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.endpoint = endpoint_url(settings.url, insecure=settings.insecure)
        if not settings.model:
            raise ValueError("the openai engine needs a model (--transcribe-model), "
                             "e.g. whisper-1 or the name the server was started with")
        import urllib3

        self._pool = urllib3.PoolManager(
            num_pools=1,
            maxsize=settings.concurrency,
            block=True,  # at most `concurrency` connections: wait for one, never open more
            retries=False,
            timeout=urllib3.Timeout(connect=min(settings.timeout, 30.0), read=settings.timeout),
            cert_reqs="CERT_REQUIRED",
            ca_certs=settings.ca_file,
        )

    def transcribe(self, samples: Any, rate: int, language: str | None) -> Transcript:
        """Send one piece; its transcript in the piece's time (see :class:`Transcriber`)."""
        audio = wav_bytes(samples, rate)
        duration = (len(audio) - 44) / (2 * ENGINE_RATE)
        started = time.monotonic()
        status, body = self._post(audio, language)
        log.debug("transcription request: %s, %.1fs of audio, answer %s in %.1fs",
                  self.endpoint, duration, status, time.monotonic() - started)
        return parse_answer(body, duration=duration, engine=self.name, model=self.model,
                            language=language)

    def close(self) -> None:
        """Close the pool's connections."""
        self._pool.clear()

    def __repr__(self) -> str:
        return f"<OpenAITranscriber {self.endpoint} model={self.model!r}>"

    def _post(self, audio: bytes, language: str | None) -> tuple[int, bytes]:
        import urllib3
        from urllib3 import exceptions as u3

        fields: list[tuple[str, Any]] = [
            ("file", ("audio.wav", audio, "audio/wav")),
            ("model", self.model),
            ("response_format", "verbose_json"),
            ("timestamp_granularities[]", "segment"),
            ("timestamp_granularities[]", "word"),
        ]
        if language:
            fields.append(("language", language))
        body, content_type = urllib3.encode_multipart_formdata(fields)
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        if self.settings.key:
            headers["Authorization"] = f"Bearer {self.settings.key}"
        try:
            response = self._pool.request("POST", self.endpoint, body=body, headers=headers,
                                          redirect=False, preload_content=False)
            try:
                data = response.read(MAX_ANSWER_BYTES + 1)
            except BaseException:
                response.close()  # half-read: the connection cannot be used again
                raise
            if len(data) > MAX_ANSWER_BYTES:
                response.close()
            else:
                response.release_conn()
        # NewConnectionError is a ConnectTimeoutError subclass: test it first.
        except u3.NewConnectionError as exc:
            raise EngineRefused(f"cannot reach {self.endpoint}: {_reason(exc)}") from None
        except (u3.ConnectTimeoutError, u3.ReadTimeoutError):
            raise EngineTimeout(f"no answer from {self.endpoint} in "
                                f"{self.settings.timeout:g}s") from None
        except u3.SSLError as exc:
            raise EngineRejected(f"TLS with {self.endpoint} failed: {_reason(exc)}") from None
        except (u3.ProtocolError, u3.HTTPError) as exc:
            raise EngineBusy(f"the connection to {self.endpoint} broke: "
                             f"{_reason(exc)}") from None
        if len(data) > MAX_ANSWER_BYTES:
            raise EngineRejected(f"{self.endpoint} answered more than {MAX_ANSWER_BYTES} bytes")
        return response.status, self._checked(response.status, data)

    def _checked(self, status: int, data: bytes) -> bytes:
        if 200 <= status < 300:
            return data
        said = self._scrub(_excerpt(data))
        where = f"{self.endpoint} answered {status}"
        error: TranscribeError
        if status in (401, 403):
            error = EngineUnauthorized(f"{where}: the key is "
                                       f"{'wrong' if self.settings.key else 'missing'}: {said}")
        elif 300 <= status < 400:
            error = EngineRejected(f"{where}, a redirect, which is not followed: point "
                                   f"--transcribe-url at the server itself")
        elif status >= 500 or status in RETRYABLE_STATUSES:
            error = EngineBusy(f"{where}: {said}")
        else:
            error = EngineRejected(f"{where}: {said}")
        raise error

    def _scrub(self, text: str) -> str:
        key = self.settings.key
        return text.replace(key, "[key]") if key else text


def endpoint_url(url: str | None, *, insecure: bool = False) -> str:
    """``url`` + ``/audio/transcriptions`` (a query string kept), checked for safety.

    Raises ``ValueError`` for no URL, a scheme other than ``http``/``https``, a user
    name or password in it, a fragment, or plain ``http`` to a host that is not
    loopback without ``insecure``.

    >>> endpoint_url("https://gpu1:8000/v1/")
    'https://gpu1:8000/v1/audio/transcriptions'
    >>> endpoint_url("http://10.0.0.5:8000/v1")
    Traceback (most recent call last):
    ...
    ValueError: refusing plain http:// to 10.0.0.5, which is not loopback: call audio ...
    """
    if not url:
        raise ValueError("the openai engine needs a URL (--transcribe-url), e.g. "
                         "https://gpu1:8000/v1")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"transcribe url {_safe(parts)!r}: an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("transcribe url: no user name or password in the URL (put the key "
                         "in --transcribe-key-file)")
    if parts.fragment:
        raise ValueError("transcribe url: no #fragment")
    if parts.scheme == "http" and not insecure and not is_loopback_host(parts.hostname):
        raise ValueError(f"refusing plain http:// to {parts.hostname}, which is not loopback: "
                         f"call audio would cross the network unencrypted (use https://, or "
                         f"--transcribe-insecure)")
    path = parts.path.rstrip("/") + TRANSCRIPTIONS_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _safe(parts: SplitResult) -> str:
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else host


def _excerpt(data: bytes) -> str:
    """A server's error answer, as one line of bounded plain text (OpenAI's
    ``{"error": {"message": …}}`` reduced to the message)."""
    text = data.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
        if isinstance(doc, dict):
            inner = doc.get("error", doc.get("detail", doc.get("message")))
            if isinstance(inner, dict):
                inner = inner.get("message", inner)
            text = inner if isinstance(inner, str) else json.dumps(inner)
    except ValueError:
        pass
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat[:ERROR_EXCERPT] + ("…" if len(flat) > ERROR_EXCERPT else "") or "(no body)"


def _reason(exc: BaseException) -> str:
    # urllib3 wraps the OS error; its own text repeats the pool's repr. The innermost
    # cause says it plainly ("[Errno 111] Connection refused").
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    return f"{type(exc).__name__}: {exc}"[:ERROR_EXCERPT]


__all__ = [
    "ERROR_EXCERPT",
    "MAX_ANSWER_BYTES",
    "TRANSCRIPTIONS_PATH",
    "OpenAITranscriber",
    "endpoint_url",
]
