"""``POST {ui}/api/export``: chosen recordings, or every one a search matches, as one ZIP.

The body says which, in one of two forms:

* JSON (scripts, with HTTP Basic): ``{"ids": ["ROW-ID", ...]}`` or
  ``{"filters": {"q": "...", "flag": ["silent", "empty"], ...}}`` (the listing's
  parameters but ``limit`` and ``cursor``);
* a form (the page, whose download is a form post: a ``fetch`` would hold the whole ZIP
  in the browser's memory): repeated ``id`` fields, or the listing's parameters; and the
  session's ``csrf`` token.

A scoped viewer's export holds only its accounts: ids it may not see are ``404`` (as
for one item), filters are applied within its scope. More than ``export_max``
recordings is a ``400`` that says so. The answer is ``application/zip``, streamed as it
is made (:func:`kzr_wsgi.ui.export.export_zip`: constant memory, ZIP64 past 4 GB); the
access log gets the count, the recording ids and the NAMES of the filters, never their
values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from werkzeug.wrappers import Request, Response

from .. import errors
from ..catalog import Catalog, Query, Row
from ..stores.base import StoredOpener
from .access import AccessAction, AccessLog, access_event
from .api import BadParameter, content_disposition, parse_filters
from .export import TranscriptMaker, export_zip
from .gate import CSRF_FIELD, MAX_FORM_BODY, Caller
from .responses import secure

#: The most recordings one export holds unless ``--export-max`` says otherwise.
DEFAULT_EXPORT_MAX = 10_000
#: The largest request body read (10,000 ids of 64 characters, as JSON, fit).
MAX_BODY = MAX_FORM_BODY
#: Longest id looked up (as for one item).
_MAX_ID = 200
#: Rows read from the catalog at a time for a filtered export.
_PAGE = 1000


class TooMany(errors.BadRequest):
    """More recordings than one export may hold."""


@dataclass(frozen=True)
class Selection:
    """What an export asks for: ids, or the listing's filters (as decoded pairs)."""

    ids: tuple[str, ...] | None = None
    filters: tuple[tuple[str, str], ...] = ()

    @property
    def filter_names(self) -> list[str]:
        """The names of the filters given (for the access log: never their values)."""
        return sorted({name for name, value in self.filters if value != ""})


def parse_selection(content_type: str, body: bytes) -> Selection:
    """A request body -> :class:`Selection`; :raises BadParameter: naming what is wrong."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise BadParameter("body", "not JSON") from None
        if not isinstance(data, dict) or set(data) - {"ids", "filters"} or len(data) > 1:
            raise BadParameter("body", 'give {"ids": [...]} or {"filters": {...}}')
        if "ids" in data:
            ids = data["ids"]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise BadParameter("ids", "a list of recording ids")
            return Selection(ids=tuple(ids))
        given = data.get("filters") or {}
        if not isinstance(given, dict):
            raise BadParameter("filters", "an object of the listing's parameters")
        pairs: list[tuple[str, str]] = []
        for name, value in given.items():
            values = value if isinstance(value, list) else [value]
            if not all(isinstance(v, (str, bool, int)) for v in values):
                raise BadParameter(str(name), "a text value, or a list of them")
            pairs += [(str(name), _text(v)) for v in values]
        return _filters(pairs)
    if kind in ("application/x-www-form-urlencoded", ""):
        from urllib.parse import parse_qsl

        try:
            form = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise BadParameter("body", "not UTF-8") from None
        pairs = [(k, v) for k, v in form if k != CSRF_FIELD]
        ids = [v for k, v in pairs if k == "id"]
        if ids:
            if len(ids) != len(pairs):
                raise BadParameter("id", "give ids or filters, not both")
            return Selection(ids=tuple(ids))
        return _filters(pairs)
    raise BadParameter("body", "send JSON or a form")


def _filters(pairs: list[tuple[str, str]]) -> Selection:
    for name, _value in pairs:
        if name in ("limit", "cursor"):
            raise BadParameter(name, "not an export filter: an export holds every match")
    parse_filters(pairs)  # checked now: a bad filter is a 400 before anything is sent
    return Selection(filters=tuple(pairs))


def _text(value: str | bool | int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def capped(rows: Iterable[Row], maximum: int) -> list[Row]:
    """``rows`` as a list; :raises TooMany: when there are more than ``maximum``."""
    taken: list[Row] = []
    for row in rows:
        if len(taken) >= maximum:
            raise TooMany(f"more than {maximum:,} recordings match: narrow the search "
                          f"(an export holds at most {maximum:,})")
        taken.append(row)
    return taken


def matching(catalog: Catalog, query: Query) -> Iterator[Row]:
    """Every row ``query`` matches, newest first, a page of :data:`_PAGE` at a time."""
    from dataclasses import replace

    return catalog.iter_search(replace(query, limit=_PAGE))


def zip_name(now: datetime | None = None) -> str:
    """``recordings-YYYYMMDDTHHMMSSZ.zip``."""
    return f"recordings-{(now or datetime.now(timezone.utc)):%Y%m%dT%H%M%SZ}.zip"


class Exports:
    """The export route of one UI."""

    def __init__(self, catalog: Catalog, store: StoredOpener, *,
                 export_max: int = DEFAULT_EXPORT_MAX,
                 transcripts: TranscriptMaker | None = None,
                 access: AccessLog | None = None) -> None:
        self.catalog = catalog
        self.store = store
        self.export_max = export_max
        self.transcripts = transcripts
        self.access = access

    def post(self, caller: Caller, request: Request) -> Response:
        """The ZIP of what the request selects, as the caller may see it."""
        length = request.content_length
        if length is not None and length > MAX_BODY:
            raise BadParameter("body", f"larger than {MAX_BODY} bytes")
        request.max_content_length = MAX_BODY
        body = request.get_data(cache=True)
        if len(body) > MAX_BODY:
            raise BadParameter("body", f"larger than {MAX_BODY} bytes")
        selection = parse_selection(request.content_type or "", body)
        rows = self.rows(caller, selection)
        if self.access is not None:
            self.access.record(access_event(
                AccessAction.EXPORT, viewer=caller.viewer.user, address=caller.address,
                ids=[r.id for r in rows], count=len(rows), via=caller.via,
                filters=["ids"] if selection.ids is not None else selection.filter_names))
        stream = export_zip(rows, lambda r: self.store.open_stored(r.location, r.sha256),
                            transcript=self.transcripts)
        response = Response(stream, mimetype="application/zip", direct_passthrough=True)
        response.headers["Content-Disposition"] = content_disposition(zip_name())
        response.headers["Cache-Control"] = "no-store"
        return secure(response)

    def rows(self, caller: Caller, selection: Selection) -> list[Row]:
        """The rows ``selection`` names that the caller may see (at most ``export_max``)."""
        viewer = caller.viewer
        if selection.ids is not None:
            if len(selection.ids) > self.export_max:
                raise TooMany(f"{len(selection.ids):,} ids: an export holds at most "
                              f"{self.export_max:,}")
            rows: dict[str, Row] = {}
            for row_id in selection.ids:
                row = self.catalog.get(row_id) if len(row_id) <= _MAX_ID else None
                if row is None or not viewer.sees(row.account_id):
                    raise errors.NotFound(f"no such recording: {row_id[:_MAX_ID]!r}")
                rows.setdefault(row.id, row)
            return list(rows.values())
        filters = parse_filters(selection.filters)
        query = Query(**filters.query_fields(), scope=viewer.accounts)
        return capped(matching(self.catalog, query), self.export_max)

