"""Share links over HTTP: making, listing and revoking them, and what a link opens.

For viewers (the right to ``share`` needed, else ``403``):

* ``POST {ui}/api/recordings/{id}/shares`` ``{"expires_in": "7d"}`` -> ``201``
  ``{"url", "id", "expires_at"}`` (the only time the token is ever told);
* ``GET {ui}/api/shares`` -> ``{"items": [...]}``: the viewer's own links (an unscoped
  viewer's: everyone's), newest first, never a token;
* ``DELETE {ui}/api/shares/{id}`` -> ``204``; ``404`` for a link the viewer may not see.

For anyone holding a link, no sign-in (:meth:`ShareRoutes.resolve` checks every use):

* ``GET {ui}/s/{token}`` the link's page (player and transcript, nothing else);
* ``GET {ui}/s/{token}/api`` the recording's item, its URLs pointing under the link;
* ``GET|HEAD {ui}/s/{token}/audio`` its bytes (``Range``), and every other part of a
  recording the UI registers (:attr:`ShareRoutes.parts`: the peaks, a transcript).

A link is ``404`` (the same answer as one that never existed) when it is unknown,
expired or revoked, when its recording is gone (pruned, erased), and when its maker is
no longer in the viewer file, has lost the right to share, or may no longer see the
recording's account. Nothing else is reachable with a token: the routes above take the
recording from the link, never from the request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from werkzeug.wrappers import Request, Response

from .. import errors
from ..catalog import Catalog, Row
from .access import AccessAction, AccessLog, access_event
from .api import BadParameter
from .api import item as api_item
from .gate import CSRF_FIELD, Caller, Gate
from .pages import gone_page, share_page
from .responses import html_response, json_response, secure
from .shares import (
    Share,
    ShareStore,
    is_share_id,
    is_token,
    new_share_id,
    new_token,
    now_utc,
    parse_expires_in,
    share_path,
    share_url,
    token_hash,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("kzr_wsgi.ui")

#: Links that ended (expired, revoked) longer ago than this are forgotten by the sweep.
KEEP_ENDED = timedelta(days=30)


@dataclass(frozen=True)
class Listener:
    """Who a recording's part is served to, as the access log names them."""

    viewer: str
    address: str | None
    #: Tells one listener's plays apart (a session, a Basic viewer, a link).
    key: str
    via: str
    share_id: str | None = None


#: Serves one part of a recording (``audio``, ``peaks``, ...) to a listener.
PartSender = Callable[[Row, "WSGIEnvironment", "StartResponse", Listener, str], Iterable[bytes]]


class ShareRoutes:
    """The share routes of one UI (see the module docs).

    :param base_of: the UI's prefix as the browser sees it, for a request.
    :param public_url: ``--public-url``; without it the API answers the link's path.
    """

    def __init__(self, shares: ShareStore, catalog: Catalog, gate: Gate, *,
                 base_of: Callable[[Mapping[str, Any]], str],
                 access: AccessLog | None = None, public_url: str | None = None) -> None:
        self.shares = shares
        self.catalog = catalog
        self.gate = gate
        self.base_of = base_of
        self.access = access
        self.public_url = public_url
        #: Part name -> its sender; ``audio`` is the UI's, other parts are registered.
        self.parts: dict[str, PartSender] = {}
        #: A row as the API shows it (audio at a URL); the UI's names the speakers.
        self.item_of: Callable[[Row, str], dict[str, Any]] = api_item

    # -- a viewer's links -----------------------------------------------------------------

    def make(self, caller: Caller, row: Row, body: Mapping[str, Any],
             environ: Mapping[str, Any]) -> Response:
        """A new link to ``row`` (which the caller may see)."""
        self._may_share(caller)
        expires_in = parse_expires_in(body)
        token = new_token()
        now = now_utc()
        share = Share(new_share_id(), token_hash(token), row.id, caller.viewer.user, now,
                      now + expires_in)
        self.shares.create(share)
        self._log(AccessAction.SHARE_MADE, caller.viewer.user, caller.address, row.id,
                  share.id, caller.via)
        return json_response(201, {
            "url": share_url(self.base_of(environ), token, public_url=self.public_url),
            "id": share.id,
            "expires_at": share.to_json(now)["expires_at"],
        })

    def listed(self, caller: Caller) -> Response:
        """The caller's links (an unscoped viewer's: everyone's)."""
        self._may_share(caller)
        maker = None if caller.viewer.accounts is None else caller.viewer.user
        now = now_utc()
        return json_response(200, {"items": [s.to_json(now) for s in self.shares.listed(maker)]})

    def revoke(self, caller: Caller, share_id: str) -> Response:
        """Revoke a link: ``404`` at once on every worker and host."""
        self._may_share(caller)
        share = self.shares.by_id(share_id) if is_share_id(share_id) else None
        if share is None or (caller.viewer.accounts is not None
                             and share.maker != caller.viewer.user):
            raise errors.NotFound("no such share link")
        if self.shares.revoke(share.id, now_utc()):
            self._log(AccessAction.SHARE_REVOKED, caller.viewer.user, caller.address,
                      share.recording, share.id, caller.via)
        return secure(Response(status=204))

    # -- what a link opens --------------------------------------------------------------

    def resolve(self, token: str) -> tuple[Share, Row]:
        """The live link with this token and its recording; :raises NotFound: otherwise."""
        share = self.shares.by_token_hash(token_hash(token)) if is_token(token) else None
        if share is None or not share.live(now_utc()):
            raise errors.NotFound("no such share link")
        maker = self.gate.viewers.get(share.maker)
        if maker is None or not maker.share:
            raise errors.NotFound("no such share link")
        row = self.catalog.get(share.recording)
        if row is None or not maker.sees(row.account_id):
            raise errors.NotFound("no such share link")
        return share, row

    def page(self, environ: WSGIEnvironment, token: str) -> Response:
        """The link's page, or the page that says it does not work (``404``)."""
        base = self.base_of(environ)
        try:
            share, row = self.resolve(token)
        except errors.NotFound:
            return html_response(404, gone_page(base), [("X-Robots-Tag", "noindex")])
        if environ.get("REQUEST_METHOD") != "HEAD":
            self._log(AccessAction.SHARE_USED, share.maker, self.gate.address(environ), row.id,
                      share.id, "share")
        return html_response(200, share_page(base, share_path(base, token)),
                             [("X-Robots-Tag", "noindex")])

    def item(self, environ: WSGIEnvironment, token: str) -> Response:
        """``/s/{token}/api``: the recording's item, its URLs under the link."""
        _share, row = self.resolve(token)
        under = share_path(self.base_of(environ), token)
        data = self.item_of(row, f"{under}/audio")
        data["parts"] = {name: f"{under}/{quote(name)}" for name in self.parts}
        return json_response(200, data, [("X-Robots-Tag", "noindex")])

    def part(self, environ: WSGIEnvironment, start_response: StartResponse, token: str,
             name: str) -> Iterable[bytes]:
        """``/s/{token}/{part}``: one part of the link's recording."""
        share, row = self.resolve(token)
        sender = self.parts.get(name)
        if sender is None:
            raise errors.NotFound("not found")
        listener = Listener(share.maker, self.gate.address(environ), "share:" + share.id,
                            "share", share.id)
        return sender(row, environ, start_response, listener, name)

    # -- helpers ------------------------------------------------------------------------

    @staticmethod
    def _may_share(caller: Caller) -> None:
        if not caller.viewer.share:
            raise errors.Forbidden("this viewer may not share recordings")

    def sweep(self) -> int:
        """Forget links that ended more than :data:`KEEP_ENDED` ago; how many."""
        return self.shares.delete_ended(now_utc() - KEEP_ENDED)

    def _log(self, action: AccessAction, viewer: str, address: str | None, recording: str,
             share_id: str, via: str) -> None:
        if self.access is not None:
            self.access.record(access_event(action, viewer=viewer, address=address,
                                            ids=[recording], share_id=share_id, via=via))


def share_options(request: Request) -> dict[str, Any]:
    """A link's options from the request body: JSON (a script, the page's fetch), a form
    (its ``csrf`` field aside), or nothing."""
    if request.mimetype == "application/json":
        try:
            data = json.loads(request.get_data(cache=True)[:65536] or b"{}")
        except ValueError:
            raise BadParameter("body", "not JSON") from None
        if not isinstance(data, dict):
            raise BadParameter("body", "a JSON object")
        return data
    return {k: v for k, v in request.form.items() if k != CSRF_FIELD}
