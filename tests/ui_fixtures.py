"""What the UI tests share: a receiver with the UI mounted beside it, and uploads into it.

``UIWorld`` is a real :class:`~kzr_wsgi.DirectoryStore` under a temporary root with its
catalog, the middleware taking uploads and :class:`~kzr_wsgi.ui.SearchUI` in front of
it, driven in process with werkzeug's test client (the same app ``serve --ui`` runs).
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from audio_samples import freeswitch_mp3
from servers import Server
from werkzeug.test import Client, TestResponse

from kzr_wsgi import DirectoryStore, KazooRecordings
from kzr_wsgi.auth import Guard
from kzr_wsgi.catalog import Catalog, Query
from kzr_wsgi.catalog.transcripts import restore
from kzr_wsgi.cli import not_found
from kzr_wsgi.transcribe.model import Segment, Transcript
from kzr_wsgi.ui import SearchUI, Viewer

#: One second of what FreeSWITCH writes (8 kHz mono MPEG-2.5): the default body.
SECOND = freeswitch_mp3(1.0, rate=8000, channels=1)
#: Kazoo counts Gregorian seconds: Unix time + this.
GREGORIAN = 62167219200
UPLOADER = ("kazoo", "upload-secret")
OPS = Viewer("ops", "ops-pw")
ACME = Viewer("acme", "acme-pw", ("acct-acme",))
BOTH = Viewer("both", "both-pw", ("acct-acme", "acct-beta"))


def basic(user: str, password: str) -> dict[str, str]:
    """An Authorization header."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass
class UIWorld:
    """A receiver with the UI, and helpers to upload and to ask as a viewer."""

    root: Path
    viewers: tuple[Viewer, ...] = (OPS, ACME, BOTH)
    prefix: str = "/ui"
    store: DirectoryStore = field(init=False)
    catalog: Catalog = field(init=False)
    ui: SearchUI = field(init=False)
    client: Client = field(init=False)
    uploads: int = 0

    def __post_init__(self) -> None:
        self.store = DirectoryStore(self.root)
        assert self.store.catalog is not None
        self.catalog = self.store.catalog
        receiver = KazooRecordings(not_found, self.store, guard=Guard(basic=[":".join(UPLOADER)]))
        self.ui = SearchUI(self.catalog, self.store, viewers=self.viewers, prefix=self.prefix,
                           app=receiver)
        self.client = Client(self.ui)

    def upload(self, call_id: str, body: bytes | None = None, *, ext: str = "mp3",
               account_id: str | None = "acct-acme", start: int | None = None,
               content_type: str = "audio/mpeg", **fields: str) -> dict[str, Any]:
        """PUT one recording as Kazoo 4.x does (a 1 s LAME MP3 unless ``body``); its row."""
        self.uploads += 1
        if body is None:
            body = SECOND
        query: dict[str, str] = {"from": "1001@acme.example", "to": "1002@acme.example",
                                 "caller_id_name": "Alice", "caller_id_number": "+15550001",
                                 "duration_ms": "1000", **fields}
        if account_id is not None:
            query["account_id"] = account_id
        if start is not None:
            query["start"] = str(start + GREGORIAN)
        url = f"/call_recording_{quote(call_id, safe='')}.{ext}?{urlencode(query, quote_via=quote)}"
        reply = self.client.put(url, data=body, headers={
            **basic(*UPLOADER), "Content-Type": content_type, "Content-Length": str(len(body))},
            environ_overrides={"CONTENT_LENGTH": str(len(body))})
        assert reply.status_code == 201, reply.text
        return self._sync(call_id)

    def _sync(self, call_id: str) -> dict[str, Any]:
        """The catalog row the store wrote for ``call_id`` before its 2xx, as JSON."""
        page = self.catalog.search(Query(call_id=call_id, self_test=True, limit=500))
        assert page.items, f"no row for {call_id!r}"
        newest = max(page.items, key=lambda r: r.seq)
        return newest.to_json()

    def get(self, path: str, viewer: Viewer | None = OPS, **kwargs: Any) -> TestResponse:
        """GET ``prefix + path`` as ``viewer`` (None: no credentials)."""
        headers = dict(kwargs.pop("headers", {}))
        if viewer is not None:
            headers.update(basic(viewer.user, viewer.password))
        return self.client.get(self.prefix + path, headers=headers, **kwargs)

    def list(self, viewer: Viewer = OPS, params: Iterable[tuple[str, str]] = ()) -> Any:
        """The JSON of ``/api/recordings?params`` (asserting 200)."""
        reply = self.get("/api/recordings?" + urlencode(list(params)), viewer)
        assert reply.status_code == 200, reply.text
        return reply.json

    def ids(self, viewer: Viewer = OPS, **params: str) -> list[str]:
        """The call ids one listing returns, in order."""
        return [i["call_id"] for i in self.list(viewer, params.items())["items"]]


# -- for the browser tests and the screenshot: real servers, real MP3s -----------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]
#: An onerror payload: if the page ever parsed a caller name as markup, it would set the flag.
HOSTILE_NAME = '<img src=x onerror="window.__pwned=1">Mallory</b>'


@dataclass
class Uploaded:
    """One recording a test sent."""

    call_id: str
    account_id: str
    body: bytes


def upload(server: Server, call_id: str, body: bytes, *, account_id: str, start: int,
           uploader: tuple[str, str] = ("kazoo", "upload-pw"), **fields: str) -> Uploaded:
    """PUT a recording to a running ``serve`` as Kazoo 4.x does (Basic, metadata query)."""
    query = {"from": "1001@acme.example", "to": "1002@acme.example", "caller_id_name": "Alice",
             "caller_id_number": "+15550001", "duration_ms": "6000", "account_id": account_id,
             "start": str(start + GREGORIAN), **fields}
    path = f"/call_recording_{quote(call_id, safe='')}.mp3?{urlencode(query, quote_via=quote)}"
    token = base64.b64encode(":".join(uploader).encode()).decode()
    conn = http.client.HTTPConnection(server.host, server.port, timeout=20)
    try:
        conn.request("PUT", path, body=body, headers={
            "Authorization": f"Basic {token}", "Content-Type": "audio/mpeg"})
        reply = conn.getresponse()
        assert reply.status == 201, reply.read()
    finally:
        conn.close()
    return Uploaded(call_id, account_id, body)




def api_json(server: Server, path: str, viewer: tuple[str, str]) -> Any:
    """The JSON of a UI API path on a running ``serve``, as a script asks (HTTP Basic)."""
    request = urllib.request.Request(server.url + path, headers=basic(*viewer))
    with urllib.request.urlopen(request, timeout=20) as reply:
        return json.loads(reply.read())


def wait_analysed(server: Server, row_id: str, viewer: tuple[str, str],
                  timeout: float = 90) -> dict[str, Any]:
    """The item once ``serve``'s background worker has analysed it (its peaks exist)."""
    deadline = time.monotonic() + timeout
    while True:
        item = api_json(server, f"/ui/api/recordings/{row_id}", viewer)
        analysis = item.get("analysis") or {}
        if analysis.get("state") == "done":
            return dict(item)
        assert analysis.get("state") == "pending", analysis
        assert time.monotonic() < deadline, f"not analysed in {timeout}s: {analysis}"
        time.sleep(0.3)


def transcribed(catalog: Catalog, row_id: str, segments: Iterable[Segment]) -> None:
    """Give a catalogued recording a done transcription of ``segments``, as ``reindex``
    puts one back from its file (the job done, the segments indexed: no engine)."""
    row = catalog.get(row_id)
    assert row is not None and row.sha256
    doc = Transcript("en", "pocketsphinx", "en-us", tuple(segments)).to_json(
        {"left": "caller", "right": "callee", "mono": "all"})
    assert restore(catalog, row_id, row.sha256, json.dumps(doc).encode())


def conversation_segments(gap: float = 0.6) -> list[Segment]:
    """The transcript of :func:`speech_samples.conversation`: each sentence at its place
    (they follow each other ``gap`` seconds apart), even ones left, odd ones right."""
    from speech_samples import SENTENCES, VOICES, seconds_of, sentence

    segments, at = [], 0.0
    for index, text in enumerate(SENTENCES):
        length = seconds_of(sentence(index, VOICES[index % 2], 16000))
        segments.append(Segment(round(at, 3), round(at + length, 3), text,
                                "left" if index % 2 == 0 else "right"))
        at += length + gap
    return segments


# -- a browser in process: its cookies, its Sec-Fetch headers ---------------------------

#: What a browser sends with a navigation, and with the page's own fetch.
NAVIGATE = {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document",
            "Sec-Fetch-User": "?1"}
FETCH = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}
_CSRF_FIELD = re.compile(r'name="csrf" value="([^"]*)"')


def form_csrf(html: str) -> str:
    """The CSRF token a page's form carries."""
    found = _CSRF_FIELD.search(html)
    assert found, "no csrf field in the page"
    return found.group(1)


class Browser:
    """One browser (its own cookie jar) talking to an app in process, from one address."""

    def __init__(self, app: Any, prefix: str = "/ui", address: str = "192.0.2.10") -> None:
        self.client = Client(app)
        self.prefix = prefix
        self.address = address

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                **kwargs: Any) -> TestResponse:
        """``method prefix+path`` as the page's own fetch (unless ``headers`` say otherwise)."""
        sent = {**FETCH, **(headers or {})}
        overrides = {"REMOTE_ADDR": self.address, **kwargs.pop("environ_overrides", {})}
        return self.client.open(self.prefix + path, method=method, headers=sent,
                                environ_overrides=overrides, **kwargs)

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("GET", path, **kwargs)

    def navigate(self, path: str = "/") -> TestResponse:
        return self.request("GET", path, headers=NAVIGATE)

    def sign_in(self, user: str, password: str) -> TestResponse:
        """Open the sign-in form and send it, as a person would."""
        form = self.navigate("/signin")
        assert form.status_code == 200, form.status_code
        return self.request("POST", "/signin", headers={**NAVIGATE, "Sec-Fetch-Site":
                                                       "same-origin"},
                            data={"username": user, "password": password,
                                  "csrf": form_csrf(form.text)})

    def csrf(self) -> str:
        """The session's CSRF token, as the page's script gets it."""
        reply = self.get("/api/session")
        assert reply.status_code == 200, reply.text
        token = reply.json["csrf"]
        assert isinstance(token, str)
        return token

    def cookie(self, name: str = "kzr_session") -> str | None:
        found = self.client.get_cookie(name, path=self.prefix)
        return None if found is None else found.value
