"""The JSON API's pure parts: query parameters -> filters, rows -> items, download names.

No I/O here: :mod:`kzr_wsgi.ui.app` feeds it a request's parameters and the
catalog's rows. Every bad parameter is a :class:`BadParameter` naming it, which the
edge answers ``400`` (a :class:`~kzr_wsgi.errors.BadRequest`) with
``{"error": ..., "parameter": ...}``.

>>> f = parse_filters([("q", "+15551234567"), ("flag", "empty"), ("flag", "silent")])
>>> f.q, f.flags, f.limit
('+15551234567', ('empty', 'silent'), 50)
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from ..catalog import Row, parse_when
from ..catalog.analysis import ALL_FLAGS
from ..catalog.text import Match
from ..errors import BadRequest

#: Items per page unless ``limit`` says otherwise, and the most ``limit`` may ask for.
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: Longest value a text parameter may have (a call id is at most ~1,000 characters).
MAX_VALUE = 1024

#: Parameters that take one text value, as the API and the catalog's Query name them
#: (``text``: words said, the catalog's grammar; any text is a valid query).
_TEXT = ("q", "call_id", "number", "account_id", "text")
_KNOWN = frozenset((*_TEXT, "since", "until", "flag", "flagged", "self_test", "limit",
                    "cursor"))
_TRUE = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
#: Content types an audio URL may answer with; anything else is sent as bytes.
AUDIO_TYPES = frozenset((
    "audio/mpeg", "audio/mp3", "audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave",
    "audio/mp4", "audio/ogg", "audio/webm", "audio/aac", "audio/flac",
))
_BY_FORMAT = {"mp3": "audio/mpeg", "wav": "audio/wav"}
_BY_EXT = {"mp3": "audio/mpeg", "wav": "audio/wav", "mp4": "audio/mp4", "m4a": "audio/mp4",
           "ogg": "audio/ogg", "flac": "audio/flac"}


class BadParameter(BadRequest, ValueError):
    """A query parameter the API cannot take; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


@dataclass(frozen=True)
class Filters:
    """A listing's filters, parsed and checked; ``canonical`` is what a cursor is bound to."""

    q: str | None = None
    call_id: str | None = None
    number: str | None = None
    account_id: str | None = None
    #: Words said in the recording (see the manual's catalog page).
    text: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    flags: tuple[str, ...] = ()
    flagged: bool = False
    #: Include ``kzr-wsgi check``'s own uploads (hidden unless asked for, as in ``ls``).
    self_test: bool = False
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None

    @property
    def canonical(self) -> str:
        """Every filter but ``limit`` and ``cursor``, as one stable text."""
        return json.dumps([
            self.q, self.call_id, self.number, self.account_id,
            self.since.isoformat() if self.since else None,
            self.until.isoformat() if self.until else None,
            sorted(self.flags), self.flagged, self.self_test, self.text,
        ], separators=(",", ":"))

    def query_fields(self) -> dict[str, Any]:
        """The keyword arguments of the catalog's ``Query`` these filters give."""
        return {
            "q": self.q, "call_id": self.call_id, "number": self.number,
            "account_id": self.account_id, "text": self.text, "since": self.since,
            "until": self.until,
            "flags": self.flags, "flagged": self.flagged, "self_test": self.self_test,
            "limit": self.limit,
        }


def parse_filters(pairs: Iterable[tuple[str, str]]) -> Filters:
    """A request's query parameters (decoded pairs, in order) -> :class:`Filters`.

    Empty values count as absent (an HTML form sends its empty fields). Unknown
    parameters are refused rather than ignored: a misspelt filter would otherwise
    widen the search without a word.
    """
    values: dict[str, str] = {}
    flags: list[str] = []
    for name, value in pairs:
        if name == "":
            continue  # a stray "&=" or "&&": nothing asked for
        if name not in _KNOWN:
            raise BadParameter(name, "unknown parameter")
        if len(value) > MAX_VALUE:
            raise BadParameter(name, f"longer than {MAX_VALUE} characters")
        if any(unicodedata.category(c) == "Cc" for c in value):
            raise BadParameter(name, "holds a control character")
        if value == "":
            continue
        if name == "flag":
            if value not in ALL_FLAGS:
                raise BadParameter("flag", f"not one of {', '.join(ALL_FLAGS)}")
            if value not in flags:
                flags.append(value)
            continue
        if name in values:
            raise BadParameter(name, "given more than once")
        values[name] = value
    fields: dict[str, Any] = {k: values[k] for k in _TEXT if k in values}
    for name in ("since", "until"):
        if name in values:
            try:
                when = parse_when(values[name], end=name == "until")
            except (ValueError, OverflowError):
                raise BadParameter(name, "not a date (YYYY-MM-DD) or an ISO 8601 time") from None
            fields[name] = when
    for name in ("flagged", "self_test"):
        if name in values:
            chosen = _TRUE.get(values[name].lower())
            if chosen is None:
                raise BadParameter(name, "must be true or false")
            fields[name] = chosen
    if "limit" in values:
        text = values["limit"]
        if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            raise BadParameter("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
        fields["limit"] = int(text)
    if "cursor" in values:
        fields["cursor"] = values["cursor"]
    return Filters(flags=tuple(flags), **fields)


def item(row: Row, audio_url: str, caller: str = "left",
         matches: Sequence[Match] | None = None) -> dict[str, Any]:
    """The API's view of a row: its keys but ``location``, plus ``audio_url``; ``caller``
    is the side the caller is on, for its ``analysis``'s speakers. A row found by words
    has its ``matches`` (``[{"start", "end", "speaker", "snippet", "highlights"}]``,
    snippets plain text, highlights offsets into them)."""
    data = row.to_json(caller)
    data.pop("location", None)
    data["audio_url"] = audio_url
    if matches is not None:
        data["matches"] = [m.to_json() for m in matches]
    return data


def audio_type(row: Row) -> str:
    """The ``Content-Type`` a row's bytes are served with: an audio type, or plain bytes.

    What the uploader claimed is used only when it is an audio type; otherwise the
    inspected format or the extension decide, and failing both the bytes go out as
    ``application/octet-stream``, so a stored HTML page is never rendered.
    """
    audio = row.audio
    if audio is not None and "not_audio" in audio.flags:
        return "application/octet-stream"
    claimed = (row.content_type or "").split(";")[0].strip().lower()
    if claimed in AUDIO_TYPES:
        return claimed
    if audio is not None and audio.format in _BY_FORMAT:
        return _BY_FORMAT[audio.format]
    return _BY_EXT.get(_extension(row), "application/octet-stream")


_UNSAFE = re.compile(r"[^\w.+@-]+", re.UNICODE)
_ASCII_UNSAFE = re.compile(r"[^A-Za-z0-9.+@_-]+")


def download_name(row: Row) -> str:
    """``YYYYMMDDTHHMMSSZ_from_to_callid.ext``: what a download is saved as.

    The time is the row's (Kazoo's ``start``, else when it was received) in UTC;
    ``from``/``to`` lose any ``@realm``. Every part is reduced to letters, digits and
    ``.+@-`` (anything else becomes ``-``), so no quote, slash or newline survives.

    >>> from types import SimpleNamespace as R
    >>> download_name(R(sort_at=datetime(2026, 3, 1, 9, 5, 7, tzinfo=timezone.utc),
    ...     from_="+1555@x.example", to="200", call_id='a"b\\nc', filename="r.mp3",
    ...     content_type="audio/mpeg"))
    '20260301T090507Z_+1555_200_a-b-c.mp3'
    """
    when = row.sort_at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    parts = [when]
    numbers = [(v or "").partition("@")[0] for v in (row.from_, row.to)]
    for text in (*numbers, row.call_id or ""):
        cleaned = _UNSAFE.sub("-", text).strip("-.")[:80] or "unknown"
        parts.append(cleaned)
    ext = _extension(row) or "bin"
    return "_".join(parts) + "." + ext


def content_disposition(name: str) -> str:
    """``attachment; filename="ascii"; filename*=UTF-8''…`` for ``name`` (RFC 6266).

    The ASCII fallback drops accents (NFKD) and replaces what is left with ``_``; the
    UTF-8 form is percent-encoded. Neither can hold a quote, a backslash or a newline.

    >>> print(content_disposition("José_200.mp3"))
    attachment; filename="Jose_200.mp3"; filename*=UTF-8''Jos%C3%A9_200.mp3
    """
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    fallback = _ASCII_UNSAFE.sub("_", folded) or "recording"
    encoded = quote(name, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def _extension(row: Row) -> str:
    ext = (row.filename or "").rpartition(".")[2].lower() if "." in (row.filename or "") else ""
    if ext.isascii() and ext.isalnum() and len(ext) <= 5:
        return ext
    for known, ctype in (("mp3", "audio/mpeg"), ("wav", "audio/wav"), ("mp4", "audio/mp4")):
        if (row.content_type or "").startswith(ctype):
            return known
    return ""


def error_body(exc: BadParameter) -> dict[str, Any]:
    """The JSON answer to a bad parameter."""
    return {"error": str(exc), "parameter": exc.parameter}
