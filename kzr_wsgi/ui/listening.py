"""Serving a recording's audio to a listener, and telling a play from a seek.

``GET|HEAD …/audio`` (a viewer's, or a share link's) answers the stored bytes with
``Range`` (``206``), ``If-None-Match`` (the ETag is the sha256) and ``HEAD``; with
``?download=1`` as an attachment under its readable name. Audio is served with an audio
type only (:func:`~kzr_wsgi.ui.api.audio_type`), so a stored page is never rendered.

The access log gets a ``download`` for each download, and a ``play`` for the first audio
request of a listener (a session, a Basic viewer, a share link) for a recording within
:data:`PLAY_WINDOW`: a browser's player asks for many ranges while it plays and seeks,
and one play is one line. Which request was first is decided in the catalog
(:class:`~kzr_wsgi.ui.tables.CatalogPlays`), so two workers or hosts answering one
player's ranges still log it once; each process remembers its own recent plays so the
ranges that follow ask the catalog nothing.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable
from importlib import resources
from typing import TYPE_CHECKING

from werkzeug.wrappers import Request, Response

from .. import errors
from ..catalog import Catalog, Row
from ..naming import PEAKS_SUFFIX
from ..sending import send_stored
from ..stores.base import CompanionKeeper, StoredOpener
from .access import AccessAction, AccessLog, access_event
from .api import audio_type, content_disposition, download_name
from .responses import SECURITY_HEADERS, secure
from .share_routes import Listener
from .tables import CatalogPlays

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

#: A listener's requests for one recording within this many seconds are one play.
PLAY_WINDOW = 30 * 60.0
#: Plays remembered in the process at most (each a key and a time).
_REMEMBER_MAX = 10_000
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html",
                 ".svg": "image/svg+xml"}


class Listening:
    """Sends audio and logs plays and downloads (see the module docs)."""

    def __init__(self, catalog: Catalog, store: StoredOpener, *,
                 access: AccessLog | None = None, window: float = PLAY_WINDOW) -> None:
        self.store = store
        self.access = access
        self.plays = CatalogPlays(catalog, window)
        self.window = window
        self._recent: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def send_peaks(self, row: Row, environ: WSGIEnvironment, start_response: StartResponse,
                   _listener: Listener, _part: str = "peaks") -> Iterable[bytes]:
        """The waveform kept beside the recording; ``404`` until its analysis is done."""
        store: object = self.store
        if row.analysis is None or not row.analysis.done or not isinstance(
                store, CompanionKeeper):
            raise errors.NotFound("no waveform (yet) for this recording")
        body = store.get_companion(row.copy_record(), PEAKS_SUFFIX)
        response = secure(Response(body, mimetype="application/json"))
        response.headers["Cache-Control"] = "private, no-cache"
        return response(environ, start_response)

    def send_audio(self, row: Row, environ: WSGIEnvironment, start_response: StartResponse,
                   listener: Listener, _part: str = "audio") -> Iterable[bytes]:
        """Answer with the row's stored bytes (see the module docs)."""
        stored = self.store.open_stored(row.location, row.sha256)
        headers = [*SECURITY_HEADERS, ("Cache-Control", "private, no-cache")]
        download = Request(environ).args.get("download", "") not in ("", "0", "false")
        if download:
            headers.append(("Content-Disposition", content_disposition(download_name(row))))
        if environ.get("REQUEST_METHOD") == "GET" and self.access is not None:
            if download:
                self._log(AccessAction.DOWNLOAD, listener, row)
            elif self._starts_play(listener.key, row.id):
                self._log(AccessAction.PLAY, listener, row)
        return send_stored(environ, start_response, stored, mimetype=audio_type(row),
                           headers=headers)

    def _starts_play(self, listener: str, recording: str) -> bool:
        now = time.monotonic()
        key = (hashlib.sha256(listener.encode("utf-8", "surrogateescape")).hexdigest(),
               recording)
        with self._lock:
            seen = self._recent.get(key)
            if seen is not None and now - seen < self.window:
                return False
        claimed = self.plays.claim(listener, recording)
        with self._lock:
            if len(self._recent) >= _REMEMBER_MAX:
                self._recent = {k: t for k, t in self._recent.items()
                                if now - t < self.window}
                while len(self._recent) >= _REMEMBER_MAX:
                    del self._recent[next(iter(self._recent))]
            self._recent[key] = now
        return claimed

    def _log(self, action: AccessAction, listener: Listener, row: Row) -> None:
        assert self.access is not None
        self.access.record(access_event(action, viewer=listener.viewer,
                                        address=listener.address, ids=[row.id],
                                        share_id=listener.share_id, via=listener.via))


def load_static() -> dict[str, tuple[bytes, str, str]]:
    """The page and its files, read once: name -> (bytes, type, etag)."""
    files: dict[str, tuple[bytes, str, str]] = {}
    folder = resources.files(__package__).joinpath("static")
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _STATIC_TYPES:
            body = entry.read_bytes()
            files[entry.name] = (body, _STATIC_TYPES[suffix], hashlib.sha256(body).hexdigest())
    return files
