"""The JSON API's reads: a listing (filters, a signed cursor), one item, scope on each.

``GET {ui}/api/recordings`` and ``GET {ui}/api/recordings/{id}`` (see the manual's UI
page): a scoped viewer sees only rows of its accounts, everywhere, and another account's
recording is ``404`` exactly as one that does not exist. A catalog that cannot be
reached is :class:`~kzr_wsgi.errors.StoreUnavailable` (``503``), never a leaked driver
error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from werkzeug.wrappers import Request, Response

from .. import errors
from ..catalog import Catalog, Query, Row
from ..catalog.text import Match
from ..pipeline.settings import CallerMap
from .api import BadParameter, Filters, parse_filters
from .api import item as api_item
from .cursor import BadCursor, CursorSigner
from .responses import json_response
from .viewers import Viewer

log = logging.getLogger("kzr_wsgi.ui")
_T = TypeVar("_T")
#: Longest row id looked up (ids are short digests; anything longer is not one).
MAX_ID = 200


class Searching:
    """Listings and items of ``catalog`` for viewers; ``signer`` signs paging cursors."""

    def __init__(self, catalog: Catalog, signer: CursorSigner,
                 callers: CallerMap | None = None) -> None:
        self.catalog = catalog
        self.signer = signer
        #: Which side of a stereo recording the caller is on (the [analysis] table's).
        self.callers = callers or CallerMap()

    def item(self, row: Row, url: str, matches: Sequence[Match] | None = None, *,
             scoped: bool = True) -> dict[str, Any]:
        """The API's item for ``row`` (audio at ``url``), its analysis's speakers named;
        ``matches``: where its transcript holds the words searched for. A ``scoped``
        viewer (or a share link) sees a generic transcription error, not the engine's."""
        data = api_item(row, url, self.callers.caller_for(row.account_id, row.kind), matches)
        if scoped and row.transcript is not None:
            data["transcript"] = row.transcript.to_json(scoped=True)
        return data

    def listing(self, request: Request, viewer: Viewer, base: str) -> Response:
        """One page of the viewer's rows matching the request's filters."""
        filters = parse_filters(request.args.items(multi=True))
        query = self._query(filters, viewer)
        page = self.catalog_call(lambda: self.catalog.search(query))
        next_cursor = None
        if page.next is not None and page.next.after is not None:
            next_cursor = self.signer.dump(
                viewer.user, filters.canonical, page.next.after, page.next.max_seq)
        return json_response(200, {
            "items": [self.item(row, audio_url(base, row),
                                page.matches.get(row.id) if query.text else None,
                                scoped=viewer.accounts is not None)
                      for row in page.items],
            "next": next_cursor,
        })

    def visible(self, viewer: Viewer, row_id: str) -> Row:
        """The row, if this viewer may see it; else NotFound, exactly as a missing id."""
        if len(row_id) > MAX_ID:
            raise errors.NotFound("no such recording")
        row = self.catalog_call(lambda: self.catalog.get(row_id))
        if row is None or not viewer.sees(row.account_id):
            raise errors.NotFound("no such recording")
        return row

    def _query(self, filters: Filters, viewer: Viewer) -> Query:
        after = max_seq = None
        if filters.cursor is not None:
            try:
                after, max_seq = self.signer.load(filters.cursor, viewer.user, filters.canonical)
            except BadCursor as exc:
                raise BadParameter("cursor", str(exc)) from None
        return Query(**filters.query_fields(), scope=viewer.accounts, after=after,
                     max_seq=max_seq)

    @staticmethod
    def catalog_call(call: Callable[[], _T]) -> _T:
        """``call()``; a database gone away is the catalog being unavailable (``503``)."""
        try:
            return call()
        except errors.KzrError:
            raise
        except Exception as exc:
            log.exception("catalog query failed")
            raise errors.StoreUnavailable("the catalog cannot be reached") from exc


def audio_url(base: str, row: Row) -> str:
    """A row's audio URL under the UI's ``base`` (its prefix as the browser sees it)."""
    return f"{base}/api/recordings/{quote(row.id, safe='')}/audio"
