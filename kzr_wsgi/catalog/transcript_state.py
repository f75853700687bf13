"""A recording's transcription as a row carries it: its state and its summary (pure).

The queueing, and the answers kept per piece, are in :mod:`kzr_wsgi.catalog.transcripts`.

>>> TranscriptState("failed", 5, error="HTTP 500: model crashed").to_json(scoped=True)["error"]
'the transcription failed (see the log)'
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from .analysis import JobView

#: The job that transcribes a recording.
TRANSCRIBE = "transcribe"
#: The error a scoped viewer sees in place of the engine's own message.
GENERIC_ERROR = "the transcription failed (see the log)"
#: What a done summary keeps.
SUMMARY_KEYS = ("engine", "model", "language", "chars", "segments", "words")


def fingerprint(engine: str, model: str) -> str:
    """The done job's fingerprint: which engine and model made the transcript."""
    return hashlib.sha256(f"{engine}\0{model}".encode()).hexdigest()[:32]


def summary_of(document: Mapping[str, Any]) -> dict[str, Any]:
    """What the catalog keeps of a transcript document (``<name>.kzr.transcript.json``)."""
    return {"engine": document.get("engine"), "model": document.get("model"),
            "language": document.get("language"), "chars": len(document.get("text") or ""),
            "segments": len(document.get("segments") or ()),
            "words": len(document.get("words") or ())}


class TranscriptState(JobView):
    """A row's transcription: its job's state, and once done the summary of its result."""

    def to_json(self, *, scoped: bool = False) -> dict[str, Any]:
        """The ``transcript`` object of ``ls --json`` and the API: ``{"state",
        "attempts", "engine", "model", "language", "chars", "reason", "error"}``. A
        ``scoped`` viewer sees :data:`GENERIC_ERROR` rather than the engine's message."""
        summary = self.summary if self.state == "done" and self.summary else {}
        error = self.error
        if error is not None and scoped:
            error = GENERIC_ERROR
        return {"state": self.state, "attempts": self.attempts,
                "engine": summary.get("engine"), "model": summary.get("model"),
                "language": summary.get("language"), "chars": summary.get("chars"),
                "reason": self.reason, "error": error}

    def line(self) -> str:
        """How ``ls`` shows it: ``transcript=done(1234)``, ``transcript=skipped(no_speech)``."""
        if self.state == "done" and self.summary:
            return f"transcript=done({self.summary.get('chars', 0)})"
        return f"transcript={self.state}" + (f"({self.reason})" if self.reason else "")


__all__ = ["GENERIC_ERROR", "SUMMARY_KEYS", "TRANSCRIBE", "TranscriptState", "fingerprint",
           "summary_of"]
