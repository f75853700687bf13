"""The search-and-listen WSGI app: the page, its JSON API and the audio, behind viewers.

>>> ui = SearchUI(catalog, store, viewers=["ops:s3cret"], prefix="/ui",
...               app=KazooRecordings(not_found, store))        # doctest: +SKIP

Everything under ``prefix`` is the UI's (so no URL of it is ever taken for an upload:
mount it *outside* the middleware, as ``serve --ui`` and the Flask extension do);
every other request goes to ``app`` unchanged (``404`` when there is none).

Under the prefix (all ``GET``/``HEAD``, all behind a viewer's HTTP Basic credentials):

* ``/`` the page, ``/static/…`` its script and style (package data: no CDN);
* ``/api/recordings`` a listing (:mod:`kzr_wsgi.ui.api` parses its parameters);
* ``/api/recordings/{id}`` one item; ``/api/recordings/{id}/audio`` its bytes
  (``Range`` answered ``206``; ``?download=1`` as an attachment with a readable name);
  ``/api/recordings/{id}/peaks`` its waveform once its analysis is done (``404`` until
  then), read from beside the recording.

Every answer carries a ``Content-Security-Policy`` that allows no inline script and
``X-Content-Type-Options: nosniff``: caller names come from SIP headers anyone can set.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.exceptions import NotFound as RouteNotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .. import errors
from ..catalog import Catalog, Query, Row
from ..forms import url_prefix
from ..naming import PEAKS_SUFFIX
from ..pipeline.settings import CallerMap
from ..sending import send_stored
from ..stores.base import CompanionKeeper
from ..stores.base import StoredOpener as StoredOpener  # the page's need, re-exported
from .api import (
    BadParameter,
    Filters,
    audio_type,
    content_disposition,
    download_name,
    error_body,
    parse_filters,
)
from .api import item as api_item
from .cursor import BadCursor, CursorSigner
from .viewers import Viewer, Viewers

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("kzr_wsgi.ui")
_T = TypeVar("_T")

#: No inline script or style, nothing from elsewhere: markup that slips into the page
#: through a caller name has nothing it could run or load.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
#: Sent with every answer under the prefix.
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html",
                 ".svg": "image/svg+xml"}
#: Longest row id looked up (ids are short digests; anything longer is not one).
_MAX_ID = 200


class SearchUI:
    """The page, API and audio for ``catalog``'s recordings, served from ``store``.

    :param catalog: what is searched (:class:`kzr_wsgi.catalog.Catalog`).
    :param store: where the bytes are (``open_stored``): the store that writes the catalog.
    :param viewers: who may look (:class:`Viewer`, ``"user:pass"`` or :class:`Viewers`).
    """

    __slots__ = ("catalog", "store", "viewers", "prefix", "app", "callers", "_signer", "_map",
                 "_static")

    def __init__(
        self,
        catalog: Catalog,
        store: StoredOpener,
        *,
        viewers: Viewers | Iterable[Viewer | str],
        # Where the UI lives; everything below it is the UI's.
        prefix: str = "/ui",
        # Gets every request outside the prefix (the receiver); None answers 404.
        app: WSGIApplication | None = None,
        # Signs paging cursors; random per process unless given (several hosts: give one).
        secret: bytes | str | None = None,
        # Which side of a stereo recording the caller is on (the [analysis] table's).
        callers: CallerMap | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.viewers = viewers if isinstance(viewers, Viewers) else Viewers(viewers)
        if not len(self.viewers):
            raise ValueError("the UI needs at least one viewer (USER:PASS)")
        self.prefix = url_prefix(prefix)
        if self.prefix == "/":
            raise ValueError("the UI needs a prefix of its own, such as /ui")
        self.app = app
        self.callers = callers or CallerMap()
        self._signer = CursorSigner(secret)
        self._map = Map([
            Rule("/", endpoint="page"),
            Rule("/static/<name>", endpoint="static"),
            Rule("/api/recordings", endpoint="list"),
            Rule("/api/recordings/<row_id>", endpoint="item"),
            Rule("/api/recordings/<row_id>/audio", endpoint="audio"),
            Rule("/api/recordings/<row_id>/peaks", endpoint="peaks"),
        ], strict_slashes=False, merge_slashes=False,
            redirect_defaults=False)
        self._static = _load_static()

    def __repr__(self) -> str:
        return f"SearchUI(prefix={self.prefix!r}, {self.viewers!r})"

    def owns(self, path: str) -> bool:
        """True when ``path`` (a ``PATH_INFO``) is the UI's."""
        return path == self.prefix or path.startswith(self.prefix + "/")

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        if not self.owns(environ.get("PATH_INFO", "")):
            if self.app is None:
                return _error(errors.NotFound("not found"))(environ, start_response)
            return self.app(environ, start_response)
        try:
            return self._dispatch(environ, start_response)
        except HTTPException as exc:
            allow = [(k, v) for k, v in exc.get_headers(environ) if k.lower() == "allow"]
            return _json(exc.code or 500, {"error": exc.name}, allow)(environ, start_response)

    # -- routing ----------------------------------------------------------------------

    def _dispatch(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        sub = path[len(self.prefix):]
        script = environ.get("SCRIPT_NAME", "").rstrip("/")
        try:
            viewer = self.viewers.authenticate(environ)
        except errors.Unauthorized as exc:
            return _json(errors.status_of(exc), {"error": str(exc)}, [
                ("WWW-Authenticate", 'Basic realm="kzr_wsgi recordings", charset="UTF-8"'),
            ])(environ, start_response)
        if sub == "":
            # The page's relative URLs need the trailing slash.
            location = quote(script + self.prefix + "/")
            return _secure(Response("", 308, headers=[("Location", location)]))(
                environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            raise MethodNotAllowed(valid_methods=["GET", "HEAD"])
        adapter = self._map.bind("ui", path_info=sub, url_scheme="http")
        request = Request(environ)
        base = f"{script}{self.prefix}"
        try:
            try:
                endpoint, args = adapter.match(sub, method="GET")
            except RouteNotFound:
                raise errors.NotFound("not found") from None
            if endpoint == "page":
                return self._send_static("index.html", request, environ, start_response)
            if endpoint == "static":
                return self._send_static(args["name"], request, environ, start_response)
            if endpoint == "list":
                return self._list(request, viewer, base)(environ, start_response)
            row = self._visible(viewer, args["row_id"])
            if endpoint == "item":
                return _json(200, self._item(row, base))(environ, start_response)
            if endpoint == "peaks":
                return self._peaks(row)(environ, start_response)
            return self._audio(row, request, environ, start_response)
        except BadParameter as exc:
            return _json(errors.status_of(exc), error_body(exc))(environ, start_response)
        except errors.KzrError as exc:
            return _error(exc)(environ, start_response)

    # -- endpoints --------------------------------------------------------------------

    def _list(self, request: Request, viewer: Viewer, base: str) -> Response:
        filters = parse_filters(request.args.items(multi=True))
        query = self._query(filters, viewer)
        page = self._catalog_call(lambda: self.catalog.search(query))
        next_cursor = None
        if page.next is not None and page.next.after is not None:
            next_cursor = self._signer.dump(
                viewer.user, filters.canonical, page.next.after, page.next.max_seq)
        return _json(200, {
            "items": [self._item(row, base) for row in page.items],
            "next": next_cursor,
        })

    def _item(self, row: Row, base: str) -> dict[str, Any]:
        caller = self.callers.caller_for(row.account_id, row.kind)
        return api_item(row, _audio_url(base, row), caller)

    def _peaks(self, row: Row) -> Response:
        """The waveform kept beside the recording: ``404`` until its analysis is done."""
        store: object = self.store
        if row.analysis is None or not row.analysis.done or not isinstance(
                store, CompanionKeeper):
            raise errors.NotFound("no waveform (yet) for this recording")
        body = store.get_companion(row.copy_record(), PEAKS_SUFFIX)
        response = Response(body, mimetype="application/json")
        response.headers["Cache-Control"] = "private, no-cache"
        return _secure(response)

    def _query(self, filters: Filters, viewer: Viewer) -> Query:
        after = max_seq = None
        if filters.cursor is not None:
            try:
                after, max_seq = self._signer.load(filters.cursor, viewer.user, filters.canonical)
            except BadCursor as exc:
                raise BadParameter("cursor", str(exc)) from None
        return Query(**filters.query_fields(), scope=viewer.accounts, after=after,
                     max_seq=max_seq)

    def _visible(self, viewer: Viewer, row_id: str) -> Row:
        """The row, if this viewer may see it; else NotFound, exactly as a missing id."""
        if len(row_id) > _MAX_ID:
            raise errors.NotFound("no such recording")
        row = self._catalog_call(lambda: self.catalog.get(row_id))
        if row is None or (viewer.accounts is not None and row.account_id not in viewer.accounts):
            raise errors.NotFound("no such recording")
        return row

    def _audio(self, row: Row, request: Request, environ: WSGIEnvironment,
               start_response: StartResponse) -> Iterable[bytes]:
        stored = self.store.open_stored(row.location, row.sha256)
        headers = [*SECURITY_HEADERS, ("Cache-Control", "private, no-cache")]
        if request.args.get("download", "") not in ("", "0", "false"):
            headers.append(("Content-Disposition", content_disposition(download_name(row))))
        return send_stored(environ, start_response, stored, mimetype=audio_type(row),
                           headers=headers)

    def _send_static(self, name: str, request: Request, environ: WSGIEnvironment,
                     start_response: StartResponse) -> Iterable[bytes]:
        found = self._static.get(name)
        if found is None:
            raise errors.NotFound("not found")
        body, mimetype, etag = found
        response = Response(body, mimetype=mimetype)
        response.set_etag(etag)
        response.headers["Cache-Control"] = "private, no-cache"
        response = response.make_conditional(request)
        return _secure(response)(environ, start_response)

    def _catalog_call(self, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except errors.KzrError:
            raise
        except Exception as exc:
            # A database gone away is the catalog being unavailable, not a bug to leak.
            log.exception("catalog query failed")
            raise errors.StoreUnavailable("the catalog cannot be reached") from exc


def _audio_url(base: str, row: Row) -> str:
    return f"{base}/api/recordings/{quote(row.id, safe='')}/audio"


def _secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS:
        response.headers[name] = value
    return response


def _error(exc: errors.KzrError) -> Response:
    """One of the project's errors as JSON, with the status :data:`kzr_wsgi.errors.STATUS`
    gives it (a 5xx says only "unavailable": what failed behind is not the viewer's)."""
    status = errors.status_of(exc)
    return _json(status, {"error": str(exc) if status < 500 else "unavailable"})


def _json(status: int, data: Any, headers: Sequence[tuple[str, str]] = ()) -> Response:
    response = Response(json.dumps(data, separators=(",", ":")), status=status,
                        mimetype="application/json", headers=list(headers))
    response.headers["Cache-Control"] = "no-store"
    return _secure(response)


def _load_static() -> dict[str, tuple[bytes, str, str]]:
    """The page and its files, read once: name -> (bytes, type, etag)."""
    files: dict[str, tuple[bytes, str, str]] = {}
    folder = resources.files(__package__).joinpath("static")
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _STATIC_TYPES:
            body = entry.read_bytes()
            files[entry.name] = (body, _STATIC_TYPES[suffix], hashlib.sha256(body).hexdigest())
    return files
