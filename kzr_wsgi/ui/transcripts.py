"""``GET {ui}/api/recordings/{id}/transcript`` (and a share link's ``/s/{token}/transcript``):
a recording's transcript, scoped like its audio.

JSON by default (``{"segments": [{"start", "end", "channel", "speaker", "text"}],
"engine", "model", "language", "text"}``, speakers named with the ``[analysis]``
mapping when read); ``?format=vtt``, ``srt`` or ``txt`` for the renderings of
:mod:`kzr_wsgi.transcribe.render`. ``404`` until the transcription is done. Everything
comes from the catalog: the store is not read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.wrappers import Request, Response

from .. import errors
from ..catalog import Catalog, Row
from ..catalog.transcripts import view
from ..pipeline.settings import CallerMap
from ..transcribe.render import FORMATS, render
from .api import BadParameter
from .responses import json_response, secure
from .share_routes import Listener

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


class Transcripts:
    """Sends transcripts from ``catalog``; ``callers`` names the speakers."""

    def __init__(self, catalog: Catalog, callers: CallerMap | None = None) -> None:
        self.catalog = catalog
        self.callers = callers or CallerMap()

    def document(self, row: Row) -> dict[str, object] | None:
        """The transcript view of ``row`` (``None`` until done)."""
        return view(self.catalog, row.id, self.callers.speaker)

    def vtt(self, row: Row) -> str | None:
        """``row``'s transcript as WebVTT (what an export holds), ``None`` without one."""
        doc = self.document(row)
        return None if doc is None else render("vtt", doc["segments"])  # type: ignore[arg-type]

    def send(self, row: Row, environ: WSGIEnvironment, start_response: StartResponse,
             _listener: Listener, _part: str = "transcript") -> Iterable[bytes]:
        """Answer with ``row``'s transcript in the format asked for."""
        fmt = Request(environ).args.get("format", "json")
        if fmt not in FORMATS:
            raise BadParameter("format", f"must be one of {', '.join(FORMATS)}")
        doc = self.document(row)
        if doc is None:
            raise errors.NotFound("no transcript (yet) for this recording")
        if fmt == "json":
            response = json_response(200, doc)
        else:
            response = secure(Response(render(fmt, doc["segments"]),  # type: ignore[arg-type]
                                       content_type=FORMATS[fmt]))
            response.headers["Cache-Control"] = "no-store"
        return response(environ, start_response)


__all__ = ["Transcripts"]
