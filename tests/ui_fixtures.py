"""What the UI tests share: a receiver with the UI mounted beside it, and uploads into it.

``UIWorld`` is a real :class:`~kzr_wsgi.DirectoryStore` under a temporary root with its
catalog, the middleware taking uploads and :class:`~kzr_wsgi.ui.SearchUI` in front of
it, driven in process with werkzeug's test client (the same app ``serve --ui`` runs).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from werkzeug.test import Client, TestResponse

from kzr_wsgi import DirectoryStore, KazooRecordings
from kzr_wsgi.auth import Guard
from kzr_wsgi.catalog import Catalog
from kzr_wsgi.cli import not_found
from kzr_wsgi.ui import SearchUI, Viewer

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
        self.catalog = Catalog()
        receiver = KazooRecordings(not_found, self.store, guard=Guard(basic=[":".join(UPLOADER)]))
        self.ui = SearchUI(self.catalog, self.store, viewers=self.viewers, prefix=self.prefix,
                           app=receiver)
        self.client = Client(self.ui)

    def upload(self, call_id: str, body: bytes = b"\xff\xfb\x90\x00" * 64, *, ext: str = "mp3",
               account_id: str | None = "acct-acme", start: int | None = None,
               content_type: str = "audio/mpeg", **fields: str) -> dict[str, Any]:
        """PUT one recording as Kazoo 4.x does; return its sidecar."""
        self.uploads += 1
        query: dict[str, str] = {"from": "1001@acme.example", "to": "1002@acme.example",
                                 "caller_id_name": "Alice", "caller_id_number": "+15550001",
                                 "duration_ms": "5000", **fields}
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
        import json
        found = None
        for sidecar in self.root.rglob("*.kzr.json"):
            if ".kzr" in sidecar.relative_to(self.root).parts[:1]:
                continue
            record = json.loads(sidecar.read_text())
            record["location"] = str(self.root / record["path"])
            record.setdefault("metadata", {})
            self.catalog.add(record)
            if record.get("call_id") == call_id:
                found = record
        assert found is not None
        return found

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
