"""Share links: made, listed and revoked by viewers with ``share``; opened without signing in.

In process, against the app ``serve --ui`` runs. The scope test throws hypothesis's paths
and ids at a link's token: never another recording's byte, never a 5xx.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ui_fixtures import ACME, OPS, Browser, UIWorld, basic
from werkzeug.test import Client

from kzr_wsgi.catalog import Catalog
from kzr_wsgi.ui import SearchUI, Viewer, Viewers
from kzr_wsgi.ui.shares import Share, new_token, now_utc, token_hash
from kzr_wsgi.ui.tables import CatalogShareStore

T0 = 1767258000
SHARER = Viewer("sharer", "sharer-pw", None, share=True)
ACME_SHARER = Viewer("acme-sharer", "acme-sharer-pw", ("acct-acme",), share=True)
TOKEN_PATH = re.compile(r"^/ui/s/([A-Za-z0-9_-]{43})$")


@pytest.fixture
def world(tmp_path: Path) -> UIWorld:
    return UIWorld(tmp_path / "rec", viewers=(OPS, ACME, SHARER, ACME_SHARER))


def signed_in(world: UIWorld, viewer: Viewer) -> Browser:
    browser = Browser(world.ui)
    assert browser.sign_in(viewer.user, viewer.password).status_code == 303
    return browser


def make(browser: Browser, row_id: str, **body: object) -> object:
    return browser.request("POST", f"/api/recordings/{quote(row_id, safe='')}/shares",
                           headers={"X-CSRF-Token": browser.csrf()}, json=body)


def token_of(reply: object) -> str:
    found = TOKEN_PATH.match(reply.json["url"])  # type: ignore[attr-defined]
    assert found, reply.json  # type: ignore[attr-defined]
    return found.group(1)


def test_a_link_opens_one_recording_without_signing_in(world: UIWorld) -> None:
    acme = world.upload("acme-1", start=T0)
    world.upload("acme-2", start=T0 + 60)
    sharer = signed_in(world, SHARER)
    reply = make(sharer, acme["id"])
    assert reply.status_code == 201  # type: ignore[attr-defined]
    data = reply.json  # type: ignore[attr-defined]
    token = token_of(reply)
    assert set(data) == {"url", "id", "expires_at"}
    left = datetime.fromisoformat(data["expires_at"]) - now_utc()
    assert timedelta(days=7) - timedelta(minutes=1) < left <= timedelta(days=7)
    # Only the token's hash is kept.
    dump = repr(world.catalog.select("SELECT * FROM kzr_ui_shares", {}))
    assert token not in dump and token_hash(token) in dump
    stranger = Client(world.ui)  # no cookie, no credentials
    page = stranger.get(f"/ui/s/{token}")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert f'data-share-api="/ui/s/{token}/api"' in page.text
    assert f'src="/ui/s/{token}/audio"' in page.text
    item = stranger.get(f"/ui/s/{token}/api")
    assert item.status_code == 200 and item.json["id"] == acme["id"]
    assert item.json["audio_url"] == f"/ui/s/{token}/audio" and "location" not in item.json
    audio = stranger.get(f"/ui/s/{token}/audio")
    assert audio.status_code == 200 and audio.mimetype == "audio/mpeg"
    stored = world.store.open_stored(world.catalog.get(acme["id"]).location)  # type: ignore[union-attr]
    with stored.fileobj as fh:
        body = fh.read()
    assert audio.data == body
    part = stranger.get(f"/ui/s/{token}/audio", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.data == body[10:20]
    # Nothing else is reachable with it.
    for path in ("/ui/api/recordings", f"/ui/api/recordings/{acme['id']}",
                 f"/ui/api/recordings/{acme['id']}/audio", "/ui/api/shares",
                 f"/ui/s/{token}/peaks", f"/ui/s/{token}/api/recordings"):
        assert stranger.get(path).status_code in (401, 404), path
    assert 'name="password"' in stranger.get("/ui/").text  # the sign-in form, no listing


def test_public_url_makes_the_url_never_the_host_header(world: UIWorld) -> None:
    row = world.upload("acme-1", start=T0)
    ui = SearchUI(world.catalog, world.store, viewers=world.viewers,
                  public_url="https://rec.example.net", access=None)
    evil = {**basic("sharer", "sharer-pw"), "Host": "evil.example"}
    path = f"/ui/api/recordings/{row['id']}/shares"
    reply = Client(ui).post(path, headers=evil, json={})
    assert reply.status_code == 201
    assert TOKEN_PATH.match(reply.json["url"].removeprefix("https://rec.example.net"))
    # Without --public-url: the path alone, whatever Host says.
    reply = world.client.post(path, headers=evil, json={})
    assert TOKEN_PATH.match(reply.json["url"])


@pytest.mark.parametrize("given, status", [
    ("1h", 201), ("30d", 201), ("12h", 201), ("59m", 400), ("31d", 400), ("1M", 400),
    ("forever", 400), (12, 400), ("", 201), (None, 201),
])
def test_expires_in_takes_ages_from_an_hour_to_thirty_days(
        world: UIWorld, given: object, status: int) -> None:
    row = world.upload("acme-1", start=T0)
    reply = make(signed_in(world, SHARER), row["id"], expires_in=given)
    assert reply.status_code == status, reply.json  # type: ignore[attr-defined]


def test_scripts_share_with_basic_and_json(world: UIWorld) -> None:
    row = world.upload("acme-1", start=T0)
    reply = world.client.post(f"/ui/api/recordings/{row['id']}/shares",
                              headers=basic("sharer", "sharer-pw"), json={"expires_in": "2h"})
    assert reply.status_code == 201
    assert world.client.get(reply.json["url"]).status_code == 200


def test_a_viewer_without_share_gets_403(world: UIWorld) -> None:
    row = world.upload("acme-1", start=T0)
    ops = signed_in(world, OPS)
    assert make(ops, row["id"]).status_code == 403  # type: ignore[attr-defined]
    assert ops.get("/api/shares").status_code == 403
    made = make(signed_in(world, SHARER), row["id"]).json  # type: ignore[attr-defined]
    revoke = ops.request("DELETE", f"/api/shares/{made['id']}",
                         headers={"X-CSRF-Token": ops.csrf()})
    assert revoke.status_code == 403


def test_scope_holds_for_shares(world: UIWorld) -> None:
    acme = world.upload("acme-1", start=T0)
    beta = world.upload("beta-1", start=T0, account_id="acct-beta")
    scoped = signed_in(world, ACME_SHARER)
    assert make(scoped, beta["id"]).status_code == 404  # type: ignore[attr-defined]
    own = make(scoped, acme["id"]).json  # type: ignore[attr-defined]
    everyone = signed_in(world, SHARER)
    theirs = make(everyone, beta["id"]).json  # type: ignore[attr-defined]
    listed = [s["id"] for s in scoped.get("/api/shares").json["items"]]
    assert listed == [own["id"]]
    assert {s["id"] for s in everyone.get("/api/shares").json["items"]} == {
        own["id"], theirs["id"]}
    item = everyone.get("/api/shares").json["items"][0]
    assert set(item) == {"id", "recording_id", "maker", "created_at", "expires_at",
                         "revoked_at", "status"}
    # A scoped viewer cannot revoke another's link; an unscoped one can.
    headers = {"X-CSRF-Token": scoped.csrf()}
    assert scoped.request("DELETE", f"/api/shares/{theirs['id']}",
                          headers=headers).status_code == 404
    assert everyone.request("DELETE", f"/api/shares/{own['id']}",
                            headers={"X-CSRF-Token": everyone.csrf()}).status_code == 204


def test_revoked_expired_and_orphaned_links_are_404_at_once_everywhere(world: UIWorld) -> None:
    row = world.upload("acme-1", start=T0)
    sharer = signed_in(world, SHARER)
    made = make(sharer, row["id"])
    token = token_of(made)
    other_catalog = Catalog.for_root(world.root)
    other = Client(SearchUI(other_catalog, world.store, viewers=world.viewers, access=None))
    assert other.get(f"/ui/s/{token}/audio").status_code == 200
    reply = sharer.request("DELETE", f"/api/shares/{made.json['id']}",  # type: ignore[attr-defined]
                           headers={"X-CSRF-Token": sharer.csrf()})
    assert reply.status_code == 204 and reply.data == b""
    for client in (other, world.client):
        for suffix in ("", "/api", "/audio"):
            assert client.get(f"/ui/s/{token}{suffix}").status_code == 404
    assert "does not work" in other.get(f"/ui/s/{token}").text
    # Expired: a link whose time is up (kept as the API would have kept it).
    expired = new_token()
    CatalogShareStore(world.catalog).create(Share(
        "0123456789abcdef", token_hash(expired), row["id"], "sharer",
        now_utc() - timedelta(days=8), now_utc() - timedelta(seconds=1)))
    assert world.client.get(f"/ui/s/{expired}/audio").status_code == 404
    other_catalog.close()


def test_a_link_dies_with_its_recording_and_its_maker_s_rights(world: UIWorld) -> None:
    acme = world.upload("acme-1", start=T0)
    gone = world.upload("acme-2", start=T0 + 60)
    scoped = signed_in(world, ACME_SHARER)
    link = token_of(make(scoped, acme["id"]))
    orphan = token_of(make(scoped, gone["id"]))
    assert world.catalog.remove(gone["id"])  # pruned, erased
    assert world.client.get(f"/ui/s/{orphan}/audio").status_code == 404
    assert world.client.get(f"/ui/s/{link}/audio").status_code == 200
    viewers = [OPS, ACME, SHARER]
    for maker in (Viewer("acme-sharer", "acme-sharer-pw", ("acct-acme",), share=False),
                  Viewer("acme-sharer", "acme-sharer-pw", ("acct-beta",), share=True),
                  None):
        world.ui.gate.viewers = Viewers([*viewers, *([maker] if maker else [])])
        assert world.client.get(f"/ui/s/{link}/audio").status_code == 404, maker
    world.ui.gate.viewers = Viewers([*viewers, ACME_SHARER])
    assert world.client.get(f"/ui/s/{link}/audio").status_code == 200


_SEGMENT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_SEGMENT, max_size=4), st.sampled_from(["GET", "HEAD", "POST", "DELETE"]),
       st.booleans())
def test_a_token_reaches_its_recording_and_nothing_else(
        world: UIWorld, segments: list[str], method: str, encode: bool) -> None:
    if not world.uploads:
        world.upload("acme-shared", b"\xff\xfb" + b"S" * 400, start=T0)
        world.upload("beta-secret", b"\xff\xfb" + b"Z" * 400, start=T0 + 1,
                     account_id="acct-beta")
        sharer = signed_in(world, SHARER)
        row = world._sync("acme-shared")
        world.token = token_of(make(sharer, row["id"]))  # type: ignore[attr-defined]
        world.secret_id = world._sync("beta-secret")["id"]  # type: ignore[attr-defined]
    token = world.token  # type: ignore[attr-defined]
    parts = [quote(s, safe="") if encode else s for s in segments]
    paths = [f"/ui/s/{token}/" + "/".join(parts), f"/ui/s/{token}/../" + "/".join(parts),
             f"/ui/s/{token}/api/recordings/{world.secret_id}/audio",  # type: ignore[attr-defined]
             f"/ui/{'/'.join(parts)}?token={token}"]
    client = Client(world.ui)
    for path in paths:
        reply = client.open(path, method=method)
        assert reply.status_code < 500, path
        assert b"Z" * 50 not in reply.data, path
