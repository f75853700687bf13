"""Signing in through the form, sessions in the catalog, CSRF, throttling, Sec-Fetch rules.

In process, against the app ``serve --ui`` runs (a real DirectoryStore and its SQLite
catalog), each browser a werkzeug client with its own cookies and Sec-Fetch headers.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from ui_fixtures import ACME, FETCH, NAVIGATE, OPS, Browser, UIWorld, basic, form_csrf
from werkzeug.test import Client

from kzr_wsgi.catalog import Catalog
from kzr_wsgi.ui import SearchUI, Viewer, Viewers
from kzr_wsgi.ui.cookies import SESSION_COOKIE, SIGNIN_COOKIE
from kzr_wsgi.ui.sessions import Sessions, id_hash
from kzr_wsgi.ui.tables import CatalogSessionStore

T0 = 1767258000
SHARER = Viewer("sharer", "sharer-pw", None, share=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(tmp_path: Path) -> UIWorld:
    return UIWorld(tmp_path / "rec", viewers=(OPS, ACME, SHARER))


def set_cookies(reply: object) -> dict[str, SimpleCookie]:
    found: dict[str, SimpleCookie] = {}
    for header in reply.headers.getlist("Set-Cookie"):  # type: ignore[attr-defined]
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        for name in cookie:
            found[name] = cookie
    return found


# -- the form -----------------------------------------------------------------------------


def test_the_page_without_a_session_is_the_sign_in_form(world: UIWorld) -> None:
    browser = Browser(world.ui)
    reply = browser.navigate("/")
    assert reply.status_code == 200 and reply.mimetype == "text/html"
    assert "WWW-Authenticate" not in reply.headers
    html = reply.text
    for needle in ('<input id="username" name="username"', 'name="password" type="password"',
                   '<label for="username">', '<label for="password">', 'action="/ui/signin"'):
        assert needle in html
    assert "<script>" not in html and "style=" not in html  # the policy allows neither inline
    cookie = set_cookies(reply)[SIGNIN_COOKIE][SIGNIN_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/ui"
    assert reply.headers["Cache-Control"] == "no-store"
    assert "'unsafe-inline'" not in reply.headers["Content-Security-Policy"]


def test_sign_in_makes_a_session_the_page_and_api_accept(world: UIWorld) -> None:
    world.upload("c-1", start=T0)
    browser = Browser(world.ui)
    reply = browser.sign_in("ops", "ops-pw")
    assert reply.status_code == 303 and reply.headers["Location"] == "/ui/"
    cookies = set_cookies(reply)
    session = cookies[SESSION_COOKIE][SESSION_COOKIE]
    assert session["httponly"] and session["samesite"] == "Lax" and session["path"] == "/ui"
    assert not session["secure"]  # plain HTTP, no trusted proxy
    assert int(session["max-age"]) == 12 * 3600
    assert cookies[SIGNIN_COOKIE][SIGNIN_COOKIE].value == ""  # the nonce is spent
    # Only the id's hash is kept.
    kept = world.catalog.select("SELECT id_hash, viewer FROM kzr_ui_sessions", {})
    assert kept == [(id_hash(session.value), "ops")]
    page = browser.navigate("/")
    assert page.status_code == 200 and 'id="results"' in page.text
    assert f'<meta name="kzr-csrf" content="{browser.csrf()}">' in page.text
    assert form_csrf(page.text) == browser.csrf()
    listing = browser.get("/api/recordings")
    assert listing.status_code == 200 and [i["call_id"] for i in listing.json["items"]] == ["c-1"]
    info = browser.get("/api/session").json
    assert info["user"] == "ops" and info["via"] == "session" and info["idle_timeout"] == 1800


@pytest.mark.parametrize("case", ["no-token", "wrong-token", "no-cookie", "other-nonce"])
def test_a_sign_in_without_its_form_s_token_is_refused(world: UIWorld, case: str) -> None:
    browser = Browser(world.ui)
    form = browser.navigate("/")
    token = form_csrf(form.text)
    if case == "other-nonce":
        token = form_csrf(Browser(world.ui).navigate("/").text)  # another form's
    if case == "no-cookie":
        browser.client.delete_cookie(SIGNIN_COOKIE, path="/ui")
    data = {"username": "ops", "password": "ops-pw"}
    if case != "no-token":
        data["csrf"] = "x" * 43 if case == "wrong-token" else token
    reply = browser.request("POST", "/signin", headers=NAVIGATE, data=data)
    assert reply.status_code == 403
    assert "expired" in reply.text and 'name="password"' in reply.text
    assert SESSION_COOKIE not in set_cookies(reply)
    assert world.catalog.select("SELECT COUNT(*) FROM kzr_ui_sessions", {}) == [(0,)]


def test_wrong_credentials_show_the_form_again_keeping_the_name(world: UIWorld) -> None:
    browser = Browser(world.ui)
    reply = browser.sign_in("<ops>", "nope")
    assert reply.status_code == 401
    assert "Wrong user name or password." in reply.text
    assert 'value="&lt;ops&gt;"' in reply.text and "nope" not in reply.text
    assert "WWW-Authenticate" not in reply.headers


def test_sign_in_never_keeps_a_session_id_from_before(world: UIWorld) -> None:
    """A planted or earlier id is ended by the sign-in, never taken over."""
    first = Browser(world.ui)
    assert first.sign_in("ops", "ops-pw").status_code == 303
    before = first.cookie()
    assert before is not None
    assert first.sign_in("ops", "ops-pw").status_code == 303  # signs in again
    after = first.cookie()
    assert after is not None and after != before
    assert world.ui.sessions.resume(before) is None
    # An attacker's own id, planted in a victim's browser, is not the victim's session.
    attacker = Browser(world.ui)
    attacker.sign_in("acme", "acme-pw")
    planted = attacker.cookie()
    victim = Browser(world.ui)
    victim.client.set_cookie(SESSION_COOKIE, planted or "", path="/ui")
    victim.sign_in("ops", "ops-pw")
    assert victim.cookie() != planted
    assert attacker.get("/api/session").status_code == 401


def test_sign_out_needs_the_token_and_ends_the_session(world: UIWorld) -> None:
    browser = Browser(world.ui)
    browser.sign_in("ops", "ops-pw")
    old = browser.cookie()
    assert browser.request("POST", "/signout", headers=NAVIGATE, data={}).status_code == 403
    assert browser.get("/api/session").status_code == 200
    reply = browser.request("POST", "/signout", headers=NAVIGATE,
                            data={"csrf": browser.csrf()})
    assert reply.status_code == 303 and reply.headers["Location"] == "/ui/"
    assert set_cookies(reply)[SESSION_COOKIE][SESSION_COOKIE].value == ""
    assert world.catalog.select("SELECT COUNT(*) FROM kzr_ui_sessions", {}) == [(0,)]
    # The old id, replayed, is nobody's (a plain 401 for the page's fetch; the form for a
    # navigation; the cookie cleared).
    replay = Browser(world.ui)
    replay.client.set_cookie(SESSION_COOKIE, old or "", path="/ui")
    answer = replay.get("/api/recordings")
    assert answer.status_code == 401 and "WWW-Authenticate" not in answer.headers
    assert set_cookies(answer)[SESSION_COOKIE][SESSION_COOKIE].value == ""
    assert 'name="password"' in replay.navigate("/").text


def test_state_changing_requests_of_a_session_need_the_csrf_token(world: UIWorld) -> None:
    row = world.upload("c-share", start=T0)
    browser = Browser(world.ui)
    browser.sign_in("sharer", "sharer-pw")
    path = f"/api/recordings/{row['id']}/shares"
    for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": ""}):
        refused = browser.request("POST", path, headers=headers, json={"expires_in": "1h"})
        assert refused.status_code == 403, headers
    other = Browser(world.ui)
    other.sign_in("ops", "ops-pw")
    stolen = browser.request("POST", path, headers={"X-CSRF-Token": other.csrf()}, json={})
    assert stolen.status_code == 403  # another session's token is no token
    made = browser.request("POST", path, headers={"X-CSRF-Token": browser.csrf()},
                           json={"expires_in": "1h"})
    assert made.status_code == 201
    for method, target in (("DELETE", f"/api/shares/{made.json['id']}"), ("POST", "/api/export")):
        assert browser.request(method, target, json={"ids": []}).status_code == 403
    assert world.ui.shares.shares.by_id(made.json["id"]).revoked_at is None  # type: ignore[union-attr]


# -- expiry, two workers, viewers gone -----------------------------------------------------


def clocked(world: UIWorld, clock: Clock, catalog: Catalog | None = None) -> SearchUI:
    sessions = Sessions(CatalogSessionStore(catalog or world.catalog), clock=clock,
                        idle=timedelta(minutes=30), max_age=timedelta(hours=12))
    return SearchUI(catalog or world.catalog, world.store, viewers=world.viewers,
                    sessions=sessions, access=None)


def test_idle_and_longest_life(world: UIWorld) -> None:
    clock = Clock()
    ui = clocked(world, clock)
    idle = Browser(ui)
    idle.sign_in("ops", "ops-pw")
    clock.now += 29 * 60
    assert idle.get("/api/session").status_code == 200
    clock.now += 30 * 60 + 1  # unused for more than 30 minutes since the last request
    assert idle.get("/api/session").status_code == 401
    busy = Browser(ui)
    busy.sign_in("ops", "ops-pw")
    started = clock.now
    while clock.now < started + 12 * 3600 - 20 * 60:
        clock.now += 20 * 60  # a request every 20 minutes keeps it alive...
        assert busy.get("/api/session").status_code == 200
    clock.now = started + 12 * 3600  # ...for 12 hours at most
    assert busy.get("/api/session").status_code == 401


def test_sign_out_on_one_worker_holds_on_another(world: UIWorld) -> None:
    """Two workers: two apps, each with its own connection to the one catalog."""
    one = world.ui
    other_catalog = Catalog.for_root(world.root)
    two = SearchUI(other_catalog, world.store, viewers=world.viewers)
    browser = Browser(one)
    browser.sign_in("ops", "ops-pw")
    token = browser.csrf()
    elsewhere = Browser(two)
    elsewhere.client.set_cookie(SESSION_COOKIE, browser.cookie() or "", path="/ui")
    assert elsewhere.get("/api/session").status_code == 200
    browser.request("POST", "/signout", headers=NAVIGATE, data={"csrf": token})
    assert elsewhere.get("/api/session").status_code == 401
    other_catalog.close()


def test_a_viewer_removed_from_the_file_is_signed_out_at_once(world: UIWorld) -> None:
    ops, acme = Browser(world.ui), Browser(world.ui)
    ops.sign_in("ops", "ops-pw")
    acme.sign_in("acme", "acme-pw")
    # On every request the viewer is looked up: gone from the viewers, its session is.
    world.ui.gate.viewers = Viewers([OPS, SHARER])
    assert acme.get("/api/recordings").status_code == 401
    assert ops.get("/api/recordings").status_code == 200
    # A reread file ends the sessions of the viewers removed or given a new password.
    ops_again = Browser(world.ui)
    ops_again.sign_in("ops", "ops-pw")
    ended = world.ui.reload_viewers(Viewers([Viewer("ops", "new-pw"), SHARER]))
    assert ended == {"ops"}
    assert world.catalog.select("SELECT COUNT(*) FROM kzr_ui_sessions WHERE viewer = 'ops'",
                                {}) == [(0,)]
    assert ops_again.get("/api/session").status_code == 401


# -- throttling ---------------------------------------------------------------------------


def test_failed_sign_ins_are_throttled_per_user_and_address(
        world: UIWorld, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "kzr_wsgi.ui")
    attacker = Browser(world.ui, address="198.51.100.7")
    for attempt in range(5):
        assert attacker.sign_in("ops", f"guess-{attempt}").status_code == 401
    refused = attacker.sign_in("ops", "ops-pw")  # the right one, from the same address
    assert refused.status_code == 429
    assert 800 <= int(refused.headers["Retry-After"]) <= 900
    assert "Too many failed sign-ins" in refused.text
    # The right password from another address still works: nobody can lock a viewer out.
    assert Browser(world.ui, address="203.0.113.9").sign_in("ops", "ops-pw").status_code == 303
    # HTTP Basic is throttled alike.
    script = world.client.get("/ui/api/recordings", headers=basic("ops", "ops-pw"),
                              environ_overrides={"REMOTE_ADDR": "198.51.100.7"})
    assert script.status_code == 429 and "Retry-After" in script.headers
    logged = caplog.text
    assert "viewer sign-in failed for user ops from 198.51.100.7" in logged
    assert "guess-" not in logged and "ops-pw" not in logged


def test_failed_sign_ins_are_throttled_per_address(world: UIWorld) -> None:
    sprayer = Browser(world.ui, address="2001:db8:1:2::7")
    for attempt in range(20):
        sprayer.sign_in(f"user-{attempt}", "x")
    # Any user from that address (its /64) is refused, the right password included.
    neighbour = Browser(world.ui, address="2001:db8:1:2::99")
    assert neighbour.sign_in("acme", "acme-pw").status_code == 429
    assert Browser(world.ui, address="2001:db8:1:3::1").sign_in(
        "acme", "acme-pw").status_code == 303


def test_basic_failures_count_too(world: UIWorld) -> None:
    for attempt in range(5):
        reply = world.client.get("/ui/api/recordings", headers=basic("acme", f"no-{attempt}"),
                                 environ_overrides={"REMOTE_ADDR": "192.0.2.50"})
        assert reply.status_code == 401
    browser = Browser(world.ui, address="192.0.2.50")
    assert browser.sign_in("acme", "acme-pw").status_code == 429


# -- HTTP Basic and Sec-Fetch --------------------------------------------------------------


@pytest.mark.parametrize("headers, status, challenged", [
    ({}, 200, False),
    ({"Sec-Fetch-Site": "none"}, 200, False),
    ({"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}, 200, False),
    ({"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors",
      "Sec-Fetch-Dest": "audio"}, 401, False),
    ({"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"}, 401, False),
    ({"Sec-Fetch-Site": "cross-site"}, 401, True),
], ids=["script", "typed", "same-origin", "cross-site-audio", "same-site", "cross-site-only"])
def test_basic_is_taken_only_from_the_same_origin_or_no_page(
        world: UIWorld, headers: dict[str, str], status: int, challenged: bool) -> None:
    reply = world.client.get("/ui/api/recordings", headers={**basic("ops", "ops-pw"), **headers})
    assert reply.status_code == status
    assert ("WWW-Authenticate" in reply.headers) is challenged


def test_a_browser_is_never_challenged(world: UIWorld) -> None:
    row = world.upload("c-audio", start=T0)
    audio = f"/ui/api/recordings/{row['id']}/audio"
    for path, headers in [
        ("/ui/api/recordings", FETCH),
        (audio, {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "no-cors",
                 "Sec-Fetch-Dest": "audio"}),
        (audio, {"Sec-Fetch-Dest": "audio"}),
    ]:
        reply = world.client.get(path, headers=headers)
        assert reply.status_code == 401 and "WWW-Authenticate" not in reply.headers, headers
        assert reply.mimetype == "application/json"
    # A navigation anywhere under the prefix gets the form.
    reply = world.client.get(audio, headers=NAVIGATE)
    assert reply.status_code == 401 and 'name="password"' in reply.text
    assert "WWW-Authenticate" not in reply.headers
    # A script (no Sec-Fetch headers) gets the challenge, as before.
    reply = world.client.get(audio)
    assert reply.status_code == 401 and reply.headers["WWW-Authenticate"].startswith("Basic ")


def test_basic_is_never_taken_beside_a_session_cookie(world: UIWorld) -> None:
    client = Client(world.ui, use_cookies=False)
    reply = client.get("/ui/api/recordings", headers={
        **basic("ops", "ops-pw"), "Cookie": f"{SESSION_COOKIE}={'x' * 43}"})
    assert reply.status_code == 401
    assert client.get("/ui/api/recordings", headers=basic("ops", "ops-pw")).status_code == 200


def test_a_basic_post_must_be_json(world: UIWorld) -> None:
    """A page elsewhere cannot send JSON without a preflight: a script's POST is JSON."""
    auth = basic("ops", "ops-pw")
    form = world.client.post("/ui/api/export", data={"id": "x"}, headers=auth)
    assert form.status_code == 403 and "application/json" in form.json["error"]
    sent = world.client.post("/ui/api/export", json={"ids": []}, headers=auth)
    assert sent.status_code == 200 and sent.mimetype == "application/zip"


def test_secure_cookie_behind_a_trusted_proxy_only(world: UIWorld) -> None:
    ui = SearchUI(world.catalog, world.store, viewers=world.viewers,
                  trusted_proxies=["10.0.0.0/8"], access=None)
    proto = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.44"}
    for remote, secure in (("10.1.2.3", True), ("192.0.2.80", False)):
        browser = Browser(ui, address=remote)
        form = browser.request("GET", "/", headers={**NAVIGATE, **proto})
        reply = browser.request("POST", "/signin", headers={**NAVIGATE, **proto}, data={
            "username": "ops", "password": "ops-pw", "csrf": form_csrf(form.text)})
        assert reply.status_code == 303
        assert bool(set_cookies(reply)[SESSION_COOKIE][SESSION_COOKIE]["secure"]) is secure
    # Behind the proxy, the client's address is the forwarded one (throttling, the log).
    assert ui.gate.address({"REMOTE_ADDR": "10.1.2.3", "HTTP_X_FORWARDED_FOR": "192.0.2.44"}) \
        == "192.0.2.44"


def test_a_catalog_that_is_down_is_503_never_a_500(
        world: UIWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    browser = Browser(world.ui)
    browser.sign_in("ops", "ops-pw")

    def down(*args: object) -> None:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(world.catalog, "select", down)
    monkeypatch.setattr(world.catalog, "write", down)
    for reply in (browser.get("/api/session"), browser.sign_in("ops", "ops-pw"),
                  world.client.get("/ui/api/recordings", headers=basic("ops", "ops-pw"))):
        assert reply.status_code == 503 and reply.json == {"error": "unavailable"}
