"""Why a transcription failed, as types: a caller retries or gives up by type alone.

Every engine raises one of these (a plug-in should too); the queue retries a
:class:`TranscribeError` whose ``retryable`` is true, with backoff, and marks the job
``failed`` at once otherwise. Each error also names its **outcome**, the label of the
``kzr_transcribe_requests_total{outcome}`` counter (:data:`OUTCOMES`), so the metrics
code maps an exception to a label with :func:`outcome_of` and nothing else.

A message never holds a secret: engines build it from the status, the URL without
credentials and a bounded, scrubbed excerpt of the server's answer.

>>> outcome_of(EngineTimeout("no answer in 300s"))
'timeout'
>>> outcome_of(None)
'ok'
>>> EngineUnauthorized("401").retryable
False
"""

from __future__ import annotations

from ..errors import KzrError

#: Every outcome an engine request can have: the labels of the request counter.
OUTCOMES: tuple[str, ...] = ("ok", "error", "timeout", "refused", "unauthorized")


class TranscribeError(KzrError):
    """A transcription request failed. Subclasses say how; ``retryable`` says what next."""

    #: True when the same request may succeed later (engine down, busy, slow).
    retryable: bool = False
    #: The metrics label (one of :data:`OUTCOMES`).
    outcome: str = "error"


class EngineRefused(TranscribeError):
    """The engine could not be reached: connection refused, no route, name not found."""

    retryable = True
    outcome = "refused"


class EngineTimeout(TranscribeError):
    """The engine took longer than ``timeout`` to connect or to answer."""

    retryable = True
    outcome = "timeout"


class EngineBusy(TranscribeError):
    """The engine answered ``5xx``, ``408`` or ``429``, or the connection broke mid-request."""

    retryable = True


class EngineUnauthorized(TranscribeError):
    """The engine answered ``401`` or ``403``: the key is missing or wrong. Not retried."""

    outcome = "unauthorized"


class EngineRejected(TranscribeError):
    """The engine refused the request (another ``4xx``, a redirect) or answered nonsense.

    Not retried: the same request would fail the same way (a wrong URL, model or
    language, a server that is not OpenAI-compatible).
    """


class EngineUnavailable(TranscribeError):
    """The engine cannot run here at all (a missing extra, an unknown plug-in, a bad setting)."""


def outcome_of(error: BaseException | None) -> str:
    """The metrics outcome of a request that raised ``error`` (``None``: it succeeded).

    An exception that is not a :class:`TranscribeError` (a bug in an engine) counts
    as ``error``.
    """
    if error is None:
        return "ok"
    if isinstance(error, TranscribeError):
        return error.outcome
    return "error"
