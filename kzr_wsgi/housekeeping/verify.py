"""``kzr-wsgi verify``: read every stored copy back and prove it is what was stored.

Read-only. For each committed copy (from the store's index, not the catalog: the scrub
must not trust what it checks) it recomputes the sha256 and compares it, and the size,
with the sidecar; it inspects the audio again. A copy is reported *missing* (the file
or object is gone), *changed* (its bytes differ from what was stored: bit rot, an
edit) or *flagged* (its audio has flags; that alone is not a failure). Run by cron, it
is the scrub that finds bit rot before a court order does.

Given the catalog, it checks each done analysis too: the files kept beside the copy
(``.kzr.analysis.json``, ``.kzr.peaks.json``) must be there, with the sha256 the catalog
kept when they were written; one gone is *missing*, one whose bytes differ *changed*
(pending, failed and skipped analyses have none yet).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..catalog import Catalog, parse_when, row_id
from ..errors import KzrError
from ..stores.base import CompanionKeeper, CopyLister, CopyReader, CopyStore
from ..stores.readback import scan
from ..textenum import TextEnum


class Status(TextEnum):
    """What is wrong with a copy; the value is how ``kzr-wsgi verify`` names it."""

    #: The file or object is gone, or cannot be read.
    MISSING = "missing"
    #: Its bytes differ from what was stored.
    CHANGED = "changed"
    #: Its audio has flags (not a failure by itself).
    FLAGGED = "flagged"


@dataclass(frozen=True)
class Finding:
    """One copy that is not as it should be."""

    status: Status
    location: str
    #: A short, plain explanation (sizes and digests, or the flags).
    detail: str
    call_id: str | None = None


@dataclass
class VerifyReport:
    """The summary of a verify run."""

    checked: int = 0
    bytes_read: int = 0
    missing: int = 0
    changed: int = 0
    flagged: int = 0
    findings: list[Finding] = field(default_factory=list)
    #: Files of done analyses checked (none without a catalog).
    analysis_files: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing is missing or changed (flags alone do not fail a run)."""
        return self.missing == 0 and self.changed == 0

    def summary(self) -> str:
        """One line: what was checked and found."""
        line = (f"verified {self.checked} cop{'y' if self.checked == 1 else 'ies'} "
                f"({self.bytes_read} bytes): {self.missing} missing, {self.changed} changed, "
                f"{self.flagged} flagged")
        if self.analysis_files:
            line += f" (and {self.analysis_files} analysis file(s) beside them)"
        return line


def selected(store: CopyLister, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """The records verify looks at: all, or those received at or after ``since``."""
    for record in store.records():
        if since is not None:
            try:
                received = parse_when(str(record.get("received_at")))
            except ValueError:
                received = None
            if received is not None and received < since:
                continue
        yield record


def verify_analysis(store: CompanionKeeper, catalog: Catalog, record: dict[str, Any]
                    ) -> tuple[int, list[Finding]]:
    """Check the files of a copy's done analysis and transcription against the sha256s
    the catalog kept; the files checked, and what is wrong with them."""
    from ..catalog.jobs import JobQueue
    from ..catalog.transcript_state import TRANSCRIBE

    checked, findings = 0, []
    location, call_id = str(record.get("location")), record.get("call_id")
    for queue, what in ((catalog.jobs, "analysis"), (JobQueue(catalog, TRANSCRIBE),
                                                     "transcription")):
        try:
            done = queue.result_of(row_id(record))
        except (KeyError, ValueError, TypeError):
            return 0, []  # not a usable sidecar: the copy's own check says so
        if done is None:
            continue
        checked += len(done.files)
        for suffix, digest in sorted(done.files.items()):
            try:
                data = store.get_companion(record, suffix)
            except KzrError as exc:
                findings.append(Finding(Status.MISSING, location + suffix,
                                        f"the done {what}'s file is gone: {exc}", call_id))
                continue
            found = hashlib.sha256(data).hexdigest()
            if found != digest:
                findings.append(Finding(Status.CHANGED, location + suffix,
                                        f"written with sha256 {digest}, now {found}", call_id))
    return checked, findings


def verify_record(store: CopyReader, record: dict[str, Any]) -> tuple[int, list[Finding]]:
    """Check one copy; return the bytes read and what is wrong with it (often nothing)."""
    location = str(record.get("location"))
    call_id = record.get("call_id")
    try:
        stream = store.open_copy(record)
    except KzrError as exc:
        return 0, [Finding(Status.MISSING, location, str(exc) or "gone", call_id)]
    try:
        found = scan(stream, record)
    except OSError as exc:
        return 0, [Finding(Status.MISSING, location, f"cannot be read: {exc}", call_id)]
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    findings = []
    if found.sha256 != record.get("sha256") or found.size != record.get("size"):
        findings.append(Finding(
            Status.CHANGED, location,
            f"stored {record.get('size')} bytes sha256 {record.get('sha256')}, "
            f"now {found.size} bytes sha256 {found.sha256}", call_id))
    if found.audio is not None and found.audio.flags:
        findings.append(Finding(Status.FLAGGED, location, ",".join(found.audio.flags),
                                call_id))
    return found.size, findings


def verify(
    store: CopyStore,
    *,
    since: datetime | None = None,
    on_finding: Callable[[Finding], None] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    records: Iterator[dict[str, Any]] | None = None,
    catalog: Catalog | None = None,
) -> VerifyReport:
    """Verify every copy (received at or after ``since``); see the module docstring.

    ``on_finding`` hears of each finding as it is made; ``progress`` of each record
    once checked. ``records`` replaces :func:`selected` (a caller that counted them).
    With ``catalog``, each done analysis's files are checked too.
    """
    report = VerifyReport()
    for record in records if records is not None else selected(store, since):
        size, findings = verify_record(store, record)
        if catalog is not None:
            files, more = verify_analysis(store, catalog, record)
            report.analysis_files += files
            findings += more
        report.checked += 1
        report.bytes_read += size
        for finding in findings:
            if finding.status is Status.MISSING:
                report.missing += 1
            elif finding.status is Status.CHANGED:
                report.changed += 1
            else:
                report.flagged += 1
            report.findings.append(finding)
            if on_finding is not None:
                on_finding(finding)
        if progress is not None:
            progress(record)
    return report
