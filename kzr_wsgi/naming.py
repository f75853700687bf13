"""Turning names that are data into path components and keys that cannot escape.

Pure: no I/O. Used by every store, so that a call id like ``../../etc/passwd`` or
``a/b%2Fc`` is always one harmless component, two different ids never share one,
and what a layout template produces is a relative path made only of such components.
The same data shown on a terminal goes through :func:`shown`.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
from collections.abc import Mapping
from datetime import datetime, timezone
from urllib.parse import quote

from .recording import Name, Recording

#: Longest component a store writes (most filesystems allow 255 bytes; the rest is
#: room for a ``~N`` suffix and the ``.kzr.json`` sidecar ending).
MAX_COMPONENT = 200

#: Sidecar files end with this; no stored data file ever does (see :func:`safe_component`).
SIDECAR_SUFFIX = ".kzr.json"

#: A recording's analysis beside it: ``<name>.kzr.analysis.json`` (see the manual's
#: analysis page).
ANALYSIS_SUFFIX = ".kzr.analysis.json"
#: Its waveform beside it: ``<name>.kzr.peaks.json``.
PEAKS_SUFFIX = ".kzr.peaks.json"
#: Its transcript beside it: ``<name>.kzr.transcript.json``.
TRANSCRIPT_SUFFIX = ".kzr.transcript.json"
#: The files a store keeps beside a recording, part of it (never recordings of their own),
#: written and removed with it: the analysis, the waveform, the transcript.
COMPANION_SUFFIXES = (ANALYSIS_SUFFIX, PEAKS_SUFFIX, TRANSCRIPT_SUFFIX)
#: Endings no upload's name may have: a file stored under such a name would stand where
#: another recording's companion file stands. Uploads so named are refused (400);
#: :func:`safe_component` encodes them (and the sidecar's ending) all the same.
RESERVED_SUFFIXES = COMPANION_SUFFIXES
#: Endings no stored data file has (see :func:`safe_component`).
_NEVER_STORED = (SIDECAR_SUFFIX, *COMPANION_SUFFIXES)

#: The store's own folder under its root (disk) or key prefix under its prefix (S3):
#: temporary files, the index, markers, the catalog, holds, the audit trail. No
#: recording can be filed there: :func:`safe_component` never starts with a dot.
STATE_DIR = ".kzr"

#: Default layout: bounded directories by kind, account and day (Kazoo's ``start`` when
#: given, so a retry days later lands where the original did).
DEFAULT_LAYOUT = "{kind}/{account_id}/{yyyy}/{mm}/{dd}"

_CONTENT_TYPES = {"mp3": "audio/mpeg", "wav": "audio/x-wav", "mp4": "audio/mp4"}


def safe_component(text: str) -> str:
    """One path component that stands for ``text`` and nothing else.

    Percent-encodes every byte but ``A-Z a-z 0-9 _ . - ~`` (so ``/``, ``\\``, ``%`` and
    NUL are encoded and the mapping is one-to-one), never starts with a dot (no
    ``.``, ``..`` or hidden files), never ends with the sidecar's ending nor one of
    :data:`COMPANION_SUFFIXES`, and is hashed when too long.

    >>> safe_component("../x/y")
    '%2E.%2Fx%2Fy'
    >>> safe_component("")
    '%'
    >>> safe_component("x.mp3.kzr.peaks.json")
    'x.mp3%2Ekzr%2Epeaks%2Ejson'
    """
    if text == "":
        # "%" alone is never the output of quote(), so it stands only for "".
        return "%"
    out = quote(text.encode("utf-8", "surrogateescape"), safe="")
    if out.startswith("."):
        out = "%2E" + out[1:]
    for suffix in _NEVER_STORED:
        if out.endswith(suffix):
            # The dots of the ending encoded: one-to-one still (quote() leaves dots).
            out = out[: -len(suffix)] + suffix.replace(".", "%2E")
            break
    if len(out) > MAX_COMPONENT:
        digest = hashlib.sha256(out.encode("ascii")).hexdigest()
        # "#" is never produced by quote(), so hashed names cannot meet encoded ones.
        out = out[:80] + "#" + digest
    return out


def with_suffix(component: str, n: int) -> str:
    """``component`` with ``~n`` before its extension, for a second body under one name.

    >>> with_suffix("call_recording_x.mp3", 2)
    'call_recording_x~2.mp3'
    """
    if n <= 1:
        return component
    stem, dot, ext = component.rpartition(".")
    if not dot or not stem:
        return f"{component}~{n}"
    return f"{stem}~{n}.{ext}"


def name_digest(name: Name) -> str:
    """A stable hex digest of a :class:`Name`: the key under which copies are indexed."""
    blob = json.dumps(list(name.key), ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


def layout_fields(recording: Recording) -> dict[str, str]:
    """The values a layout template may use, each already a safe component.

    ``{kind}``, ``{account_id}`` (Kazoo's field; else the first path segment, which is
    the account in storage-plan URLs and the documented per-user URLs; else ``unknown``),
    ``{yyyy}``, ``{mm}``, ``{dd}`` (from Kazoo's ``start``, else the time received,
    UTC), ``{owner_id}`` and ``{segments}`` (the path segments, each encoded, joined
    by ``/``; ``_`` when there are none).
    """
    when = recording.metadata.start or recording.received_at
    when = when.astimezone(timezone.utc)
    meta = recording.metadata
    segments = "/".join(safe_component(s) for s in recording.segments) or "_"
    return {
        "kind": recording.kind.value,
        "account_id": safe_component(meta.account_id)
        if meta.account_id
        else safe_component(recording.segments[0])
        if recording.segments and recording.segments[0]
        else "unknown",
        "owner_id": safe_component(meta.owner_id) if meta.owner_id else "unknown",
        "yyyy": f"{when.year:04d}",
        "mm": f"{when.month:02d}",
        "dd": f"{when.day:02d}",
        "segments": segments,
    }


def render_layout(template: str, fields: Mapping[str, str]) -> str:
    """Fill a layout template; the result is a relative path of safe components.

    Empty parts are dropped, so a leading ``/`` or ``//`` cannot make it absolute.
    Raises ``ValueError`` for a template that names an unknown field or would climb
    out (``..``).
    """
    try:
        path = template.format_map(dict(fields))
    except KeyError as exc:
        raise ValueError(f"layout names an unknown field: {exc}") from None
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"layout {template!r} climbs out of the store")
    return "/".join(parts)


def content_type_for(recording: Recording) -> str:
    """The type to keep and serve: what the client sent, else one guessed from the name."""
    sent = recording.content_type
    # Form types are what a client sends when it names none (curl --data-binary).
    if sent and not sent.lower().startswith(("multipart/", "application/x-www-form-urlencoded")):
        return sent
    return guess_type(recording.filename, recording.ext)


def guess_type(filename: str, ext: str) -> str:
    """A content type for a stored name (``audio/mpeg`` for ``.mp3``, …)."""
    if ext.lower() in _CONTENT_TYPES:
        return _CONTENT_TYPES[ext.lower()]
    guessed, _enc = mimetypes.guess_type("x." + ext) if ext else (None, None)
    return guessed or "application/octet-stream"


def utcnow() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(timezone.utc)


def shown(text: str | None) -> str:
    """``text`` safe for a terminal: control and other unprintable characters escaped.

    What ``kzr-wsgi ls`` and ``kzr-wsgi audit`` print of anything an upload carried (a
    call id, a caller name): each unprintable character as Python writes it in a string
    (``\\x1b``, ``\\n``, ``\\u202e``), every other one as itself, so a call id can be
    searched for as Kazoo sent it and cannot move the cursor or recolour the screen.
    ``None`` is shown as ``""``.

    >>> print(shown("a\\x1b[2Jb@pbx/1%2F"))
    a\\x1b[2Jb@pbx/1%2F
    """
    if text is None:
        return ""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
