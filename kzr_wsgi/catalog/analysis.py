"""A recording's analysis as the catalog keeps it, and every flag a row can carry (pure).

A row's analysis is the state of its ``analyse`` job (:mod:`kzr_wsgi.catalog.jobs`):
``pending`` (queued, waiting for a retry, or being worked on), ``done``, ``failed``
(its error kept), ``skipped`` (its reason kept, never retried). A done job keeps a
summary of the result (:func:`summary_of`): what searches and listings show, without
the speech intervals the file beside the recording holds. :class:`AnalysisState` is
what a :class:`~kzr_wsgi.catalog.rows.Row` carries; who spoke on each channel is
derived when it is shown (:meth:`AnalysisState.to_json`'s ``caller``), never stored.

The flags: a row's are its upload's inspection flags (:data:`kzr_wsgi.audio.FLAGS`)
and its analysis's (:data:`kzr_wsgi.analysis.channels.FLAGS`), one vocabulary
(:data:`ALL_FLAGS`, ``silent`` meaning one thing in both). The *defects*
(:data:`DEFECT_FLAGS`: every inspection flag, and ``one_way_audio``, ``silent``,
``clipped``) are what "flagged" means; ``dead_air`` and ``no_speech`` are facts.

>>> state = AnalysisState("done", 1, summary={"channel_names": ["left", "right"],
...     "talk_ms": {"left": 9000, "right": 0}, "longest_silence_ms": 1200,
...     "flags": ["one_way_audio"]})
>>> state.to_json(caller="right")["speakers"]
{'left': 'callee', 'right': 'caller'}
>>> state.defects
('one_way_audio',)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..analysis.channels import DEFECTS as ANALYSIS_DEFECTS
from ..analysis.channels import FLAGS as ANALYSIS_FLAGS
from ..analysis.channels import speakers
from ..audio import FLAGS as AUDIO_FLAGS
from ..textenum import TextEnum

#: Every flag a row can carry: the inspection's, then the analysis's own, in that order.
ALL_FLAGS: tuple[str, ...] = (*AUDIO_FLAGS, *(f for f in ANALYSIS_FLAGS if f not in AUDIO_FLAGS))
#: The flags that are defects of a recording (what ``--flagged`` and ``flagged=true``
#: mean): every inspection flag, and the analysis's defects.
DEFECT_FLAGS: tuple[str, ...] = tuple(
    f for f in ALL_FLAGS if f in AUDIO_FLAGS or f in ANALYSIS_DEFECTS)
#: The bit of each flag in a row's ``flag_bits`` (inspection) and ``analysis_bits``
#: columns: one bit per flag, ``silent``'s shared.
FLAG_BITS: dict[str, int] = {flag: 1 << i for i, flag in enumerate(ALL_FLAGS)}
#: The bits of the defects.
DEFECT_MASK = sum(FLAG_BITS[f] for f in DEFECT_FLAGS)
#: The job that analyses a recording (the one job kind so far; a ``transcribe`` job is
#: another row of the same queue).
ANALYSE = "analyse"
#: What a done summary keeps of an analysis document (``<name>.kzr.analysis.json``).
SUMMARY_KEYS = ("version", "settings", "format", "sample_rate", "channels", "duration_ms",
                "channel_names", "talk_ms", "longest_silence_ms", "flags")


class JobState(TextEnum):
    """A job's state: the ``state`` of a row's ``analysis``."""

    #: Queued, waiting for its retry, or being worked on (under a lease).
    PENDING = "pending"
    DONE = "done"
    #: Failed ``attempts`` times; its error is kept. ``kzr-wsgi worker --retry-failed``.
    FAILED = "failed"
    #: Not analysed, for its ``reason``; never retried.
    SKIPPED = "skipped"


class Origin(TextEnum):
    """Why a job was queued: only an upload's analysis counts its flags in the metrics."""

    UPLOAD = "upload"
    #: ``kzr-wsgi worker --backfill`` (a store from before the analysis).
    BACKFILL = "backfill"
    #: Restored from the file beside the recording by ``kzr-wsgi reindex``.
    REINDEX = "reindex"
    #: ``kzr-wsgi worker --retry-failed``.
    RETRY = "retry"
    #: ``kzr-wsgi worker --reanalyze``: decoded again, never copied from another copy.
    REANALYZE = "reanalyze"


def bits_of(flags: tuple[str, ...] | list[str]) -> int:
    """The bits of ``flags`` (unknown ones are refused with ``ValueError``).

    >>> bits_of(["empty", "silent"]) == FLAG_BITS["empty"] | FLAG_BITS["silent"]
    True
    """
    bits = 0
    for flag in flags:
        if flag not in FLAG_BITS:
            raise ValueError(f"unknown flag {flag!r}; known: {', '.join(ALL_FLAGS)}")
        bits |= FLAG_BITS[flag]
    return bits


def summary_of(document: Mapping[str, Any]) -> dict[str, Any]:
    """What the catalog keeps of an analysis document (:data:`SUMMARY_KEYS`)."""
    return {key: document[key] for key in SUMMARY_KEYS if key in document}


_J = TypeVar("_J", bound="JobView")


@dataclass(frozen=True)
class JobView:
    """A row's job of one kind (its analysis, its transcription): the job's state and,
    once done, the summary of its result."""

    state: str
    attempts: int = 0
    reason: str | None = None
    error: str | None = None
    #: The done result's summary (e.g. :func:`summary_of`); ``None`` until done.
    summary: Mapping[str, Any] | None = field(default=None, compare=False)

    @classmethod
    def from_db(cls: type[_J], state: str, attempts: int | None, reason: str | None,
                error: str | None, result: str | None) -> _J:
        """From a job row's columns (``result`` is JSON text)."""
        summary = json.loads(result) if result else None
        return cls(str(state), int(attempts or 0), reason, error,
                   summary if isinstance(summary, dict) else None)


class AnalysisState(JobView):
    """A row's analysis: its job's state and, once done, the summary of its result."""

    @property
    def done(self) -> bool:
        """True once the analysis is done."""
        return self.state == JobState.DONE and self.summary is not None

    @property
    def flags(self) -> tuple[str, ...]:
        """The analysis's flags (none until done)."""
        if not self.done or self.summary is None:
            return ()
        return tuple(str(f) for f in self.summary.get("flags") or ())

    @property
    def defects(self) -> tuple[str, ...]:
        """The flags that are defects."""
        return tuple(f for f in self.flags if f in ANALYSIS_DEFECTS)

    def to_json(self, caller: str = "left") -> dict[str, Any]:
        """The ``analysis`` object of ``ls --json`` and the API; ``caller`` is the side
        the caller is on (the ``[analysis]`` table's, for this recording)."""
        summary = self.summary if self.done else None
        names = tuple(summary.get("channel_names") or ()) if summary else ()
        return {
            "state": self.state,
            "attempts": self.attempts,
            "channels": len(names) if summary else None,
            "speakers": speakers(names, caller) if summary else {},
            "talk_ms": dict(summary.get("talk_ms") or {}) if summary else {},
            "longest_silence_ms": summary.get("longest_silence_ms") if summary else None,
            "flags": list(self.flags),
            "reason": self.reason,
            "error": self.error,
        }

    def line(self) -> str:
        """How ``ls`` shows it: ``analysis=done[one_way_audio]``, ``analysis=failed``."""
        text = f"analysis={self.state}"
        if self.flags:
            text += "[" + ",".join(self.flags) + "]"
        elif self.reason:
            text += f"({self.reason})"
        return text


@dataclass(frozen=True)
class Restored:
    """A done analysis read back from the files beside a recording (``reindex``)."""

    summary: Mapping[str, Any]
    #: Ending -> sha256 of each file beside the recording.
    files: Mapping[str, str]
    fingerprint: str
