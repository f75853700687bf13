"""``GET {ui}/api/recordings/{id}/transcript`` and a share link's ``/s/{token}/transcript``.

The transcript view's segments, in time order, as the catalog keeps them for search by
words (:meth:`~kzr_wsgi.catalog.Catalog.segments`): ``{"segments": [{"start", "end",
"channel", "speaker", "text"}]}`` (seconds). ``404`` while a recording has none (not
transcribed yet, or nothing said). Scoped like the audio: the app answers it only for a
row the viewer may see, and a share link only for its own recording. Segment text is
what a caller said: the page shows it as text, never as markup.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .. import errors
from ..analysis.channels import CALLER_SIDES, speakers
from ..catalog import Catalog, Row
from ..catalog.text import default_speaker
from ..pipeline.settings import CallerMap
from .responses import json_response
from .share_routes import Listener

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


class Transcripts:
    """Sends a recording's transcript segments; ``callers`` names each side's speaker."""

    def __init__(self, catalog: Catalog, callers: CallerMap | None = None) -> None:
        self.catalog = catalog
        self.callers = callers or CallerMap()

    def speaker(self, row: Row, channel: str) -> str:
        """Who speaks on ``channel`` of ``row``: the analysis's naming (caller, callee)."""
        if channel in CALLER_SIDES:
            side = self.callers.caller_for(row.account_id, row.kind)
            return speakers(CALLER_SIDES, side)[channel]
        return default_speaker(row, channel)

    def send(self, row: Row, environ: WSGIEnvironment, start_response: StartResponse,
             _listener: Listener, _part: str = "transcript") -> Iterable[bytes]:
        """The row's segments as JSON; ``404`` without any."""
        segments = self.catalog.segments(row.id, self.speaker)
        if not segments:
            raise errors.NotFound("no transcript (yet) for this recording")
        return json_response(200, {"segments": segments})(environ, start_response)
