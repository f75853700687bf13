"""``…/transcript`` for a viewer and for a share link, and the page's own files, in process.

The transcript is the catalog's segments of one recording (``404`` without any), scoped
like its audio: another account's recording is ``404`` exactly as a missing one, and a
share link's token opens its own recording's transcript only. The page's script modules
are served with a JavaScript type, and its words for the flags cover every flag the
server can set.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest
from test_ui_shares import SHARER, make, signed_in, token_of
from ui_fixtures import ACME, OPS, UIWorld, transcribed

from kzr_wsgi.catalog.analysis import ALL_FLAGS
from kzr_wsgi.transcribe.model import Segment
from kzr_wsgi.ui.app import CSP
from kzr_wsgi.ui.listening import load_static

T0 = 1767258000
#: The page's modules, each loaded by another (or by a page) under static/.
MODULES = ("app.js", "share.js", "dom.js", "player.js", "transcript.js", "detail.js",
           "search.js", "sharing.js", "exporting.js")


@pytest.fixture
def world(tmp_path: Path) -> UIWorld:
    return UIWorld(tmp_path / "rec", viewers=(OPS, ACME, SHARER))


def said(world: UIWorld, call_id: str, account_id: str) -> str:
    row = world.upload(call_id, account_id=account_id, start=T0)
    transcribed(world.catalog, row["id"], [
        Segment(4.0, 5.5, "and <b>the second</b>", "right"),
        Segment(0.5, 2.0, "hello first", "left")])
    return str(row["id"])


def test_a_viewer_gets_the_segments_in_order_scoped_like_the_audio(world: UIWorld) -> None:
    acme = said(world, "acme-1", "acct-acme")
    beta = said(world, "beta-1", "acct-beta")
    silent = world.upload("acme-2", start=T0 + 60)["id"]
    reply = world.get(f"/api/recordings/{quote(acme)}/transcript")
    assert reply.status_code == 200
    assert reply.headers["Content-Security-Policy"] == CSP
    assert reply.json["engine"] == "pocketsphinx" and reply.json["language"] == "en"
    assert reply.json["segments"] == [
        {"start": 0.5, "end": 2.0, "channel": "left", "speaker": "caller",
         "text": "hello first"},
        {"start": 4.0, "end": 5.5, "channel": "right", "speaker": "callee",
         "text": "and <b>the second</b>"}]
    assert world.get(f"/api/recordings/{quote(silent)}/transcript").status_code == 404
    assert world.get(f"/api/recordings/{quote(acme)}/transcript", ACME).status_code == 200
    for row in (beta, "no-such-id"):
        reply = world.get(f"/api/recordings/{quote(row)}/transcript", ACME)
        assert reply.status_code == 404, row
        assert "second" not in reply.text
    assert world.get(f"/api/recordings/{quote(acme)}/transcript", None).status_code == 401


def test_a_share_link_opens_its_own_transcript_only(world: UIWorld) -> None:
    acme = said(world, "acme-1", "acct-acme")
    said(world, "acme-3", "acct-acme")
    sharer = signed_in(world, SHARER)
    reply = make(sharer, acme)
    token = token_of(reply)
    item = world.get(f"/s/{token}/api", None)
    assert item.status_code == 200
    assert item.json["parts"]["transcript"] == f"/ui/s/{token}/transcript"
    shared = world.get(f"/s/{token}/transcript", None)
    assert shared.status_code == 200
    assert [s["text"] for s in shared.json["segments"]] == ["hello first", "and <b>the second</b>"]
    revoked = sharer.request("DELETE", f"/api/shares/{reply.json['id']}",  # type: ignore[attr-defined]
                             headers={"X-CSRF-Token": sharer.csrf()})
    assert revoked.status_code == 204
    assert world.get(f"/s/{token}/transcript", None).status_code == 404


def test_the_page_s_modules_are_served_as_javascript(world: UIWorld) -> None:
    page = world.get("/").text
    assert '<script type="module" src="static/app.js">' in page
    for name in MODULES:
        reply = world.get(f"/static/{name}", None)
        assert reply.status_code == 200, name
        assert reply.headers["Content-Type"].startswith("text/javascript"), name
    # Every module one imports is one the app serves.
    static = load_static()
    for name in MODULES:
        for imported in re.findall(r'from "\./([\w-]+\.js)"', static[name][0].decode()):
            assert imported in static, (name, imported)


def test_the_page_names_every_flag_in_words() -> None:
    dom = load_static()["dom.js"][0].decode()
    block = dom[dom.index("export const FLAG_WORDS"):]
    block = block[:block.index("};")]
    named = re.findall(r"^  (\w+): \[", block, re.MULTILINE)
    assert tuple(named) == ALL_FLAGS
