"""The search-and-listen WSGI app: the page, its JSON API, the audio, sign-in and share links.

>>> ui = SearchUI(catalog, store, viewers=["ops:$argon2id$..."], prefix="/ui",
...               app=KazooRecordings(not_found, store))        # doctest: +SKIP

Everything under ``prefix`` is the UI's (so no URL of it is ever taken for an upload:
mount it *outside* the middleware, as ``serve --ui`` and the Flask extension do);
every other request goes to ``app`` unchanged (``404`` when there is none).

Under the prefix (see the manual's page on the UI for each route's answers):

* open to anyone: ``/static/…`` (the page's script and style), ``/`` without a session
  (the sign-in form, :mod:`~kzr_wsgi.ui.signin`), ``POST /signin``, and a share link's
  ``/s/{token}…`` (:mod:`~kzr_wsgi.ui.share_routes`);
* a viewer's (a session, or a script's HTTP Basic: :mod:`~kzr_wsgi.ui.gate`): ``/`` the
  page, ``/api/session``, ``/api/recordings[/{id}[/audio]]``,
  ``/api/recordings/{id}/transcript`` (JSON, ``?format=vtt|srt|txt``; ``404`` until
  the transcription is done: :mod:`~kzr_wsgi.ui.transcripts`);
  ``/api/recordings/{id}/peaks`` (the waveform once the analysis is done, ``404`` until
  then),
  ``/api/shares…``,
  ``POST /api/export`` (:mod:`~kzr_wsgi.ui.exporting`), ``POST /signout``. Every
  ``POST``/``DELETE`` of a session carries its CSRF token (else ``403``).

Every answer carries the policy of :mod:`~kzr_wsgi.ui.responses` (no inline script).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.exceptions import NotFound as RouteNotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .. import errors
from ..auth import Guard
from ..catalog import Catalog
from ..forms import url_prefix
from ..pipeline.settings import CallerMap
from ..stores.base import StoredOpener as StoredOpener  # the page's need, re-exported
from .access import AccessLog
from .api import BadParameter, error_body
from .cookies import (
    clear_session_cookie,
    cookie_path,
    is_browser_request,
    is_navigation,
    request_is_https,
    trusted_networks,
)
from .cursor import CursorSigner
from .export import TranscriptMaker
from .exporting import DEFAULT_EXPORT_MAX, Exports
from .gate import STATE_CHANGING, Caller, Gate, NoCredentials, SignedOut, form_token
from .listening import Listening, load_static
from .pages import fill_index
from .responses import (
    BASIC_CHALLENGE,
    CSP,
    SECURITY_HEADERS,
    error_response,
    html_response,
    json_response,
    secure,
)
from .searching import Searching, audio_url
from .sessions import Sessions
from .share_routes import Listener, ShareRoutes, share_options
from .shares import check_public_url
from .tables import CatalogSessionStore, CatalogShareStore, CatalogThrottleStore
from .throttle import Throttle
from .transcripts import Transcripts
from .viewers import Viewer, Viewers, ended_users

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["CSP", "SECURITY_HEADERS", "SearchUI", "StoredOpener"]

log = logging.getLogger("kzr_wsgi.ui")
_T = TypeVar("_T")
#: Longest row id looked up (ids are short digests; anything longer is not one).
_MAX_ID = 200
#: Routes anyone may reach; every other one needs a viewer.
_OPEN = frozenset(("static", "signin", "share_page", "share_api", "share_part"))
#: The order an ``Allow`` header lists methods in.
_METHODS = ("GET", "HEAD", "POST", "DELETE")
#: Tells ``SearchUI`` to keep the access log in the store's own state place.
FROM_STORE = "store"


class SearchUI:
    """The page, API, audio and share links for ``catalog``'s recordings, from ``store``.

    :param catalog: what is searched (:class:`kzr_wsgi.catalog.Catalog`); it also keeps
        the sessions, failed sign-ins and share links, so every worker and host agrees.
    :param store: where the bytes are (``open_stored``): the store that writes the catalog.
    :param viewers: who may look (:class:`Viewer`, ``"user:SECRET"`` or :class:`Viewers`).
    """

    __slots__ = ("catalog", "store", "prefix", "app", "gate", "signin", "shares", "exports",
                 "listening", "searching", "transcripts", "trusted", "_map", "_static")

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
        # Signed-in sessions; default: kept in the catalog, 30 minutes idle, 12 hours at most.
        sessions: Sessions | None = None,
        # Failed sign-ins; default: counted in the catalog (every worker and host together).
        throttle: Throttle | None = None,
        # Proxies whose X-Forwarded-For/-Proto are believed (the client's address, TLS).
        trusted_proxies: Iterable[str] = (),
        # Where share links point (https://rec.example.net); default: the path alone.
        public_url: str | None = None,
        # The most recordings one export holds.
        export_max: int = DEFAULT_EXPORT_MAX,
        # Who listened: an AccessLog, FROM_STORE (the store's state place), or None.
        access: AccessLog | str | None = FROM_STORE,
        # A recording's transcript as WebVTT, for exports.
        transcripts: TranscriptMaker | None = None,
        # Which side of a stereo recording the caller is on (the [analysis] table's).
        callers: CallerMap | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        listed = viewers if isinstance(viewers, Viewers) else Viewers(viewers)
        if not len(listed):
            raise ValueError("the UI needs at least one viewer (USER:SECRET)")
        self.prefix = url_prefix(prefix)
        if self.prefix == "/":
            raise ValueError("the UI needs a prefix of its own, such as /ui")
        self.app = app
        if isinstance(export_max, bool) or not isinstance(export_max, int) or export_max < 1:
            raise ValueError(f"export_max must be a whole number of at least 1, not "
                             f"{export_max!r}")
        self.trusted = trusted_networks(trusted_proxies)
        log_to = AccessLog.for_store(store) if access == FROM_STORE else access
        assert log_to is None or isinstance(log_to, AccessLog)
        self.gate = Gate(listed, sessions or Sessions(CatalogSessionStore(catalog)),
                         throttle or Throttle(CatalogThrottleStore(catalog)),
                         proxies=Guard(trusted_proxies=trusted_proxies), access=log_to)
        from .signin import SignIn

        self.signin = SignIn(self.gate, self.prefix, trusted=self.trusted)
        self.shares = ShareRoutes(CatalogShareStore(catalog), catalog, self.gate,
                                  base_of=self._base, access=log_to,
                                  public_url=check_public_url(public_url) if public_url
                                  else None)
        self.transcripts = Transcripts(catalog, callers)
        self.exports = Exports(catalog, store, export_max=export_max,
                               transcripts=transcripts or self.transcripts.vtt, access=log_to)
        self.listening = Listening(catalog, store, access=log_to)
        self.searching = Searching(catalog, CursorSigner(secret), callers)
        self.shares.item_of = self.searching.item
        self.shares.parts["audio"] = self.listening.send_audio
        self.shares.parts["peaks"] = self.listening.send_peaks
        self.shares.parts["transcript"] = self.transcripts.send
        self._map = Map([
            Rule("/", endpoint="page", methods=["GET"]),
            Rule("/static/<name>", endpoint="static", methods=["GET"]),
            Rule("/signin", endpoint="signin", methods=["GET", "POST"]),
            Rule("/signout", endpoint="signout", methods=["POST"]),
            Rule("/s/<token>", endpoint="share_page", methods=["GET"]),
            Rule("/s/<token>/api", endpoint="share_api", methods=["GET"]),
            Rule("/s/<token>/<part>", endpoint="share_part", methods=["GET"]),
            Rule("/api/session", endpoint="session", methods=["GET"]),
            Rule("/api/recordings", endpoint="list", methods=["GET"]),
            Rule("/api/recordings/<row_id>", endpoint="item", methods=["GET"]),
            Rule("/api/recordings/<row_id>/audio", endpoint="audio", methods=["GET"]),
            Rule("/api/recordings/<row_id>/peaks", endpoint="peaks", methods=["GET"]),
            Rule("/api/recordings/<row_id>/transcript", endpoint="transcript",
                 methods=["GET"]),
            Rule("/api/recordings/<row_id>/shares", endpoint="share_make", methods=["POST"]),
            Rule("/api/shares", endpoint="shares", methods=["GET"]),
            Rule("/api/shares/<share_id>", endpoint="share_revoke", methods=["DELETE"]),
            Rule("/api/export", endpoint="export", methods=["POST"]),
        ], strict_slashes=False, merge_slashes=False, redirect_defaults=False)
        self._static = load_static()

    def __repr__(self) -> str:
        return f"SearchUI(prefix={self.prefix!r}, {self.viewers!r})"

    @property
    def viewers(self) -> Viewers:
        """Who may look, now (:meth:`reload_viewers` replaces them)."""
        return self.gate.viewers

    @property
    def sessions(self) -> Sessions:
        """The signed-in sessions."""
        return self.gate.sessions

    @property
    def access(self) -> AccessLog | None:
        """The access log, when one is kept."""
        return self.gate.access

    def reload_viewers(self, viewers: Viewers) -> set[str]:
        """Take a reread viewer file; the viewers removed or with a new password are
        signed out on every worker and host. Returns their names."""
        ended = ended_users(self.gate.viewers, viewers)
        self.gate.viewers = viewers
        for user in sorted(ended):
            self.gate.sessions.end_for_user(user)
        return ended

    def sweep(self) -> str:
        """Forget ended sessions, old failed sign-ins, plays and links (the housekeeper's)."""
        sessions = self.gate.sessions.sweep()
        failures = self.gate.throttle.sweep()
        plays = self.listening.plays.delete_old()
        links = self.shares.sweep()
        return (f"{sessions} ended session(s), {failures} throttle entries, {plays} play(s) "
                f"and {links} ended share link(s) forgotten")

    def owns(self, path: str) -> bool:
        """True when ``path`` (a ``PATH_INFO``) is the UI's."""
        return path == self.prefix or path.startswith(self.prefix + "/")

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        if not self.owns(environ.get("PATH_INFO", "")):
            if self.app is None:
                return error_response(errors.NotFound("not found"))(environ, start_response)
            return self.app(environ, start_response)
        try:
            return self._dispatch(environ, start_response)
        except HTTPException as exc:
            allow = [(k, v) for k, v in exc.get_headers(environ) if k.lower() == "allow"]
            return json_response(exc.code or 500, {"error": exc.name}, allow)(
                environ, start_response)

    # -- routing ----------------------------------------------------------------------

    def _dispatch(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        sub = environ.get("PATH_INFO", "")[len(self.prefix):]
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            endpoint, args = ("slash", {}) if sub == "" else self._route(sub, method)
            request = Request(environ)
            if endpoint in _OPEN:
                return self._open(endpoint, args, environ, start_response)
            try:
                caller = self.gate.identify(environ)
            except errors.Unauthorized as exc:
                if endpoint == "signout":
                    return self.signin.sign_out(environ, None)(environ, start_response)
                return self._unauthorised(exc, endpoint, environ)(environ, start_response)
            if method in STATE_CHANGING and not self.gate.csrf_ok(
                    caller, environ, form_token(request)):
                raise errors.Forbidden(
                    "the CSRF token is missing or wrong (X-CSRF-Token)" if caller.session
                    else "send the request body as application/json")
            return self._viewer(endpoint, args, caller, request, start_response)
        except BadParameter as exc:
            return json_response(errors.status_of(exc), error_body(exc))(environ, start_response)
        except errors.KzrError as exc:
            return error_response(exc)(environ, start_response)
        except self.catalog.backend.transient as exc:
            # Sessions, throttling and links live in the catalog: one that is down is
            # the page being unavailable (503), not a bug to leak.
            log.error("catalog %s: %s", self.catalog.url, exc)
            unavailable = errors.StoreUnavailable("the catalog cannot be reached")
            return error_response(unavailable)(environ, start_response)

    def _route(self, sub: str, method: str) -> tuple[str, dict[str, Any]]:
        """The endpoint and its arguments; ``("refused", {"allow": [...]})`` for a path or
        method nothing here takes, which is answered only after the caller is known (to
        no viewer every URL under the prefix looks alike)."""
        adapter = self._map.bind("ui", path_info=sub, url_scheme="http")
        try:
            endpoint, args = adapter.match(sub, method=method)
            return str(endpoint), dict(args)
        except MethodNotAllowed as exc:
            allowed = set(exc.valid_methods or ())
            return "refused", {"allow": [m for m in _METHODS if m in allowed]}
        except RouteNotFound:
            # Nothing here takes another method (and never an upload).
            return "refused", {"allow": None if method in ("GET", "HEAD") else ["GET", "HEAD"]}

    def _open(self, endpoint: str, args: dict[str, Any], environ: WSGIEnvironment,
              start_response: StartResponse) -> Iterable[bytes]:
        if endpoint == "static":
            return self._send_static(args["name"], environ, start_response)
        if endpoint == "signin":
            if environ.get("REQUEST_METHOD") == "POST":
                return self.signin.post(environ)(environ, start_response)
            # The form, also to someone signed in (who signs in as another viewer).
            return self.signin.form(environ)(environ, start_response)
        if endpoint == "share_page":
            return self.shares.page(environ, args["token"])(environ, start_response)
        if endpoint == "share_api":
            return self.shares.item(environ, args["token"])(environ, start_response)
        return self.shares.part(environ, start_response, args["token"], args["part"])

    def _viewer(self, endpoint: str, args: dict[str, Any], caller: Caller, request: Request,
                start_response: StartResponse) -> Iterable[bytes]:
        environ = request.environ
        base = self._base(environ)
        if endpoint == "slash":
            # The page's relative URLs need the trailing slash.
            location = quote(base + "/")
            return secure(Response("", 308, headers=[("Location", location)]))(
                environ, start_response)
        if endpoint == "refused":
            if args["allow"] is None:
                raise errors.NotFound("not found")
            raise MethodNotAllowed(valid_methods=args["allow"])
        if endpoint == "page":
            page = fill_index(self._static["index.html"][0].decode("utf-8"),
                              csrf=caller.session.csrf if caller.session else None,
                              viewer=caller.viewer.user)
            return html_response(200, page)(environ, start_response)
        if endpoint == "signout":
            return self.signin.sign_out(environ, caller)(environ, start_response)
        if endpoint == "session":
            return json_response(200, caller.info(self.gate.sessions.idle))(
                environ, start_response)
        if endpoint == "list":
            return self.searching.listing(request, caller.viewer, base)(environ, start_response)
        if endpoint == "shares":
            return self.shares.listed(caller)(environ, start_response)
        if endpoint == "share_revoke":
            return self.shares.revoke(caller, args["share_id"])(environ, start_response)
        if endpoint == "export":
            return self.exports.post(caller, request)(environ, start_response)
        row = self.searching.visible(caller.viewer, args["row_id"])
        if endpoint == "item":
            return json_response(200, self.searching.item(
                row, audio_url(base, row), scoped=caller.viewer.accounts is not None))(
                environ, start_response)
        if endpoint == "share_make":
            return self.shares.make(caller, row, share_options(request), environ)(
                environ, start_response)
        listener = Listener(caller.viewer.user, caller.address, caller.listener, caller.via)
        if endpoint == "peaks":
            return self.listening.send_peaks(row, environ, start_response, listener)
        if endpoint == "transcript":
            return self.transcripts.send(row, environ, start_response, listener)
        return self.listening.send_audio(row, environ, start_response, listener, "audio")

    def _unauthorised(self, exc: errors.KzrError, endpoint: str,
                      environ: WSGIEnvironment) -> Response:
        """No viewer: the sign-in form for the page or a navigation, else a plain ``401``
        (with the Basic challenge only for a request no browser sent)."""
        signed_out = isinstance(exc, SignedOut)
        if endpoint == "page" and isinstance(exc, NoCredentials):
            return self.signin.form(environ, signed_out=signed_out)
        if is_navigation(environ):
            return self.signin.form(environ, status=401, signed_out=signed_out)
        headers = [] if is_browser_request(environ) else [BASIC_CHALLENGE]
        if signed_out:
            headers.append(("Set-Cookie", clear_session_cookie(
                path=self._base(environ), secure=request_is_https(environ, self.trusted))))
        return error_response(exc, headers)

    def _send_static(self, name: str, environ: WSGIEnvironment,
                     start_response: StartResponse) -> Iterable[bytes]:
        found = self._static.get(name)
        if found is None:
            raise errors.NotFound("not found")
        body, mimetype, etag = found
        response = Response(body, mimetype=mimetype)
        response.set_etag(etag)
        response.headers["Cache-Control"] = "no-cache"
        response = response.make_conditional(Request(environ))
        return secure(response)(environ, start_response)

    def _base(self, environ: WSGIEnvironment | Any) -> str:
        """The UI's prefix as the browser sees it (``SCRIPT_NAME`` + prefix)."""
        return cookie_path(environ, self.prefix)
