"""Sessions (ids, expiry, rotation, CSRF) and the UI's cookies, without sockets."""

from __future__ import annotations

import secrets
from datetime import timedelta
from http.cookies import SimpleCookie

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kzr_wsgi.ui.cookies import (
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    basic_allowed,
    clear_session_cookie,
    cookie_path,
    is_browser_request,
    is_navigation,
    request_cookie,
    request_is_https,
    session_cookie,
    signin_cookie,
    trusted_networks,
)
from kzr_wsgi.ui.sessions import (
    MemorySessionStore,
    Sessions,
    csrf_matches,
    csrf_token,
    id_hash,
    new_nonce,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> MemorySessionStore:
    return MemorySessionStore()


@pytest.fixture
def sessions(store: MemorySessionStore, clock: Clock) -> Sessions:
    return Sessions(store, clock=clock)


def test_ids_are_random_and_only_their_hash_is_kept(
        sessions: Sessions, store: MemorySessionStore) -> None:
    started = [sessions.start("ops") for _ in range(50)]
    ids = {s.id for s in started}
    assert len(ids) == 50
    assert all(len(i) == 43 for i in ids)  # 32 random bytes, base64url: 256 bits
    kept = store._sessions  # noqa: SLF001 - what the store holds is the point
    assert set(kept) == {id_hash(i) for i in ids}
    everything = repr(kept)
    assert not any(i in everything for i in ids)
    assert "csrf" not in everything and not any(s.csrf in everything for s in started)


def test_idle_and_absolute_expiry(sessions: Sessions, store: MemorySessionStore,
                                  clock: Clock) -> None:
    session = sessions.start("ops")
    clock.now += 29 * 60
    assert sessions.resume(session.id) is not None
    clock.now += 29 * 60  # busy: each request within 30 minutes of the last
    assert sessions.resume(session.id) is not None
    clock.now += 30 * 60 + 1
    assert sessions.resume(session.id) is None
    assert len(store) == 0  # found expired, deleted
    busy = sessions.start("ops")
    for _ in range(12 * 4 - 1):
        clock.now += 15 * 60
        assert sessions.resume(busy.id) is not None
    clock.now += 15 * 60  # 12 hours after sign-in, however busy
    assert sessions.resume(busy.id) is None


def test_custom_limits(store: MemorySessionStore, clock: Clock) -> None:
    short = Sessions(store, idle=timedelta(minutes=5), max_age=timedelta(hours=1), clock=clock)
    session = short.start("ops")
    clock.now += 5 * 60
    assert short.resume(session.id) is None
    with pytest.raises(ValueError):
        Sessions(store, idle=timedelta(0))


def test_touch_is_not_one_write_per_request(sessions: Sessions, store: MemorySessionStore,
                                            clock: Clock) -> None:
    session = sessions.start("ops")
    writes: list[float] = []
    real = store.touch
    store.touch = lambda key, at: (writes.append(at), real(key, at))  # type: ignore[method-assign]
    for _ in range(90):  # a request a second for a minute and a half
        clock.now += 1
        assert sessions.resume(session.id) is not None
    assert writes == [session.record.created_at + 60]


def test_sign_in_rotates_and_never_takes_a_planted_id(
        sessions: Sessions, store: MemorySessionStore) -> None:
    old = sessions.start("ops")
    new = sessions.start("ops", replacing=old.id)
    assert new.id != old.id and sessions.resume(old.id) is None
    assert sessions.resume(new.id) is not None
    # An attacker's id, well formed, planted in a victim's cookie: never a session.
    planted = secrets.token_urlsafe(32)
    assert sessions.resume(planted) is None
    victim = sessions.start("acme", replacing=planted)
    assert victim.id != planted and sessions.resume(planted) is None
    assert new.csrf != old.csrf != victim.csrf


def test_sign_out_and_a_removed_viewer(sessions: Sessions, store: MemorySessionStore,
                                       clock: Clock) -> None:
    a, b, c = sessions.start("ops"), sessions.start("ops"), sessions.start("acme")
    sessions.end(a.id)
    assert sessions.resume(a.id) is None and sessions.resume(b.id) is not None
    assert sessions.end_for_user("ops") == 1
    assert sessions.resume(b.id) is None and sessions.resume(c.id) is not None
    sessions.end(None)
    sessions.end("not an id")
    clock.now += 31 * 60
    assert sessions.sweep() == 1 and len(store) == 0


@pytest.mark.parametrize("value", [None, "", "short", "x" * 42, "x" * 44, "a" * 42 + "/",
                                   "ö" * 43])
def test_malformed_ids_are_not_looked_up(sessions: Sessions, store: MemorySessionStore,
                                         value: str | None) -> None:
    looked: list[str] = []
    store.get = lambda key: looked.append(key)  # type: ignore[assignment,method-assign,func-returns-value]
    assert sessions.resume(value) is None and looked == []


def test_csrf_tokens(sessions: Sessions) -> None:
    one, two = sessions.start("ops"), sessions.start("ops")
    assert sessions.csrf_ok(one, one.csrf) and sessions.csrf_ok(two, two.csrf)
    assert not sessions.csrf_ok(one, two.csrf)
    assert not sessions.csrf_ok(one, None) and not sessions.csrf_ok(one, "")
    assert not sessions.csrf_ok(one, one.csrf[:-1]) and not sessions.csrf_ok(one, one.csrf + "A")
    assert not sessions.csrf_ok(one, "é" + one.csrf[1:])
    resumed = sessions.resume(one.id)
    assert resumed is not None and resumed.csrf == one.csrf
    # Not made from what the store keeps.
    assert csrf_token(id_hash(one.id)[:43]) != one.csrf and one.csrf not in id_hash(one.id)
    # The sign-in form's token: the same construction over a nonce.
    nonce = new_nonce()
    assert csrf_matches(nonce, csrf_token(nonce)) and not csrf_matches(new_nonce(),
                                                                        csrf_token(nonce))
    assert not csrf_matches(None, csrf_token(nonce)) and not csrf_matches("bad", "bad")


@given(st.text(max_size=80))
@settings(max_examples=300)
def test_csrf_check_never_fails_but_by_refusing(token: str) -> None:
    nonce = "A" * 43
    assert csrf_matches(nonce, token) is (token == csrf_token(nonce))


# -- cookies ----------------------------------------------------------------------------


def parse(header: str) -> tuple[str, str, dict[str, str | bool]]:
    cookie = SimpleCookie()
    cookie.load(header)
    [(name, morsel)] = cookie.items()
    flags = {k: v for k, v in morsel.items() if v}
    return name, morsel.value, flags


def test_the_session_cookie() -> None:
    name, value, flags = parse(session_cookie("A" * 43, path="/ui", secure=True, max_age=43200))
    assert (name, value) == (SESSION_COOKIE, "A" * 43)
    assert flags["httponly"] is True and flags["secure"] is True
    assert flags["samesite"] == "Lax" and flags["path"] == "/ui" and flags["max-age"] == "43200"
    _name, _value, plain = parse(session_cookie("A" * 43, path="/ui", secure=False,
                                                max_age=None))
    assert "secure" not in plain and "max-age" not in plain and plain["httponly"] is True
    _name, value, cleared = parse(clear_session_cookie(path="/x/ui", secure=True))
    assert value == "" and cleared["max-age"] == "0" and cleared["path"] == "/x/ui"
    name, _value, signin = parse(signin_cookie("B" * 43, path="/ui", secure=False))
    assert name == SIGNIN_COOKIE and signin["samesite"] == "Strict" and signin["httponly"]


def test_reading_cookies_and_their_path() -> None:
    environ = {"HTTP_COOKIE": f"other=1; {SESSION_COOKIE}=abc; {SIGNIN_COOKIE}=n"}
    assert request_cookie(environ) == "abc" and request_cookie(environ, SIGNIN_COOKIE) == "n"
    assert request_cookie({}) is None and request_cookie({"HTTP_COOKIE": "kzr_session="}) is None
    assert cookie_path({"SCRIPT_NAME": "/app/"}, "/ui/") == "/app/ui"
    assert cookie_path({}, "ui") == "/ui"


@pytest.mark.parametrize("environ, https", [
    ({"wsgi.url_scheme": "https", "REMOTE_ADDR": "198.51.100.7"}, True),
    ({"wsgi.url_scheme": "http", "REMOTE_ADDR": "198.51.100.7"}, False),
    # Anyone can write the header: believed only from a trusted proxy.
    ({"wsgi.url_scheme": "http", "REMOTE_ADDR": "198.51.100.7",
      "HTTP_X_FORWARDED_PROTO": "https"}, False),
    ({"wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1",
      "HTTP_X_FORWARDED_PROTO": "https"}, True),
    ({"wsgi.url_scheme": "http", "REMOTE_ADDR": "::ffff:127.0.0.1",
      "HTTP_X_FORWARDED_PROTO": "HTTPS"}, True),
    ({"wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1",
      "HTTP_X_FORWARDED_PROTO": "https, http"}, False),  # the proxy's own value is last
    ({"wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1"}, False),
    ({"wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1",
      "HTTP_X_FORWARDED_PROTO": ""}, False),
], ids=["tls", "plain", "header-from-anyone", "trusted-proxy", "mapped-v4", "last-value",
        "no-header", "empty-header"])
def test_https_is_ours_or_a_trusted_proxys(environ: dict[str, str], https: bool) -> None:
    assert request_is_https(environ, trusted_networks(["127.0.0.0/8"])) is https


@pytest.mark.parametrize("headers, browser, navigation, basic", [
    ({}, False, False, True),
    ({"HTTP_SEC_FETCH_SITE": "none", "HTTP_SEC_FETCH_MODE": "navigate"}, True, True, True),
    ({"HTTP_SEC_FETCH_SITE": "same-origin", "HTTP_SEC_FETCH_MODE": "cors"}, True, False, True),
    ({"HTTP_SEC_FETCH_SITE": "cross-site", "HTTP_SEC_FETCH_MODE": "no-cors"}, True, False,
     False),
    ({"HTTP_SEC_FETCH_SITE": "same-site", "HTTP_SEC_FETCH_DEST": "audio"}, True, False, False),
    ({"HTTP_COOKIE": f"{SESSION_COOKIE}=abc"}, False, False, False),
], ids=["script", "typed", "page-fetch", "other-site", "sibling-site", "with-session"])
def test_what_a_request_says_of_itself(headers: dict[str, str], browser: bool,
                                       navigation: bool, basic: bool) -> None:
    assert is_browser_request(headers) is browser
    assert is_navigation(headers) is navigation
    assert basic_allowed(headers) is basic
