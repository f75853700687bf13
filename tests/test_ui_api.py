"""The UI's JSON API, viewers, cursors and audio serving, in process (no sockets).

The API's rules (issue 10): filters as the catalog applies them, newest first, at most
500 a page, a cursor bound to its viewer and filters that visits every row that
matched exactly once while rows arrive, 400 naming the parameter and never a 5xx,
viewers scoped per account everywhere (a foreign id is 404 exactly as a missing one),
and hostile metadata that cannot break a header or be served as a page.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from s3server import aws_env, moto_endpoint, s3_bucket  # noqa: F401 - fixtures
from ui_fixtures import ACME, BOTH, OPS, SECOND, UPLOADER, UIWorld, basic
from werkzeug.test import Client

from kzr_wsgi import KazooRecordings, errors
from kzr_wsgi.cli import not_found
from kzr_wsgi.ui import Viewer, ViewerFileError, Viewers, parse_viewer_file
from kzr_wsgi.ui.api import content_disposition
from kzr_wsgi.ui.cursor import BadCursor, CursorSigner

DAY = 86400
T0 = 1767225600  # 2026-01-01T00:00:00Z


@pytest.fixture
def world(tmp_path: Path) -> UIWorld:
    return UIWorld(tmp_path / "rec")


# -- viewers ----------------------------------------------------------------------------


def test_viewer_file_lines_comments_and_scopes() -> None:
    viewers = parse_viewer_file(
        "# operators\n\nops:pw:with:colons\n  acme:pw2\tacct-1,acct-2  \n# end\n")
    assert [(v.user, v.password, v.accounts) for v in viewers] == [
        ("ops", "pw:with:colons", None), ("acme", "pw2", ("acct-1", "acct-2"))]


@pytest.mark.parametrize("text, line", [
    ("ops:pw\nnocolon\n", 2),
    ("\n\n# c\nops:pw acct-1 extra\n", 4),
    ("ops:pw acct-1,,acct-2\n", 1),
    ("ops:\n", 1),
    (":pw\n", 1),
], ids=["no-colon", "three-fields", "empty-account", "empty-password", "empty-user"])
def test_a_malformed_viewer_line_is_named_by_number(text: str, line: int) -> None:
    with pytest.raises(ViewerFileError, match=f"^line {line}:"):
        parse_viewer_file(text)


def test_a_viewer_listed_twice_is_refused() -> None:
    with pytest.raises(ViewerFileError, match="twice"):
        Viewers(parse_viewer_file("ops:a\nops:b\n"))


def test_the_ui_needs_a_viewer(world: UIWorld) -> None:
    from kzr_wsgi.ui import SearchUI

    with pytest.raises(ValueError, match="viewer"):
        SearchUI(world.catalog, world.store, viewers=[])


@pytest.mark.parametrize("path", ["/", "/api/recordings", "/api/recordings/x",
                                  "/api/recordings/x/audio", "/api/session", "/api/shares",
                                  "/nope", ""])
@pytest.mark.parametrize("who", ["none", "wrong-password", "uploader", "not-basic"])
def test_everything_under_the_prefix_needs_a_viewer(world: UIWorld, path: str, who: str) -> None:
    headers = {
        "none": {},
        "wrong-password": basic("ops", "nope"),
        "uploader": basic(*UPLOADER),
        "not-basic": {"Authorization": "Bearer ops-pw"},
    }[who]
    reply = world.get(path, None, headers=headers)
    if path == "/" and who in ("none", "not-basic"):
        # The page without credentials is the sign-in form, never a browser's prompt.
        assert reply.status_code == 200
        assert 'name="username"' in reply.text and 'name="password"' in reply.text
        assert "WWW-Authenticate" not in reply.headers
    else:
        assert reply.status_code == 401
        assert reply.headers["WWW-Authenticate"].startswith("Basic ")
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in reply.headers["Content-Security-Policy"]
    assert "ops-pw" not in reply.text


def test_the_page_s_own_files_need_no_viewer(world: UIWorld) -> None:
    """The sign-in form uses the style sheet: the page's script and style are public."""
    for name in ("app.js", "app.css", "share.js"):
        reply = world.get(f"/static/{name}", None)
        assert reply.status_code == 200, name
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert world.get("/static/../app.py", None).status_code in (401, 404)  # never the file


def test_viewer_credentials_do_not_upload(world: UIWorld) -> None:
    reply = world.client.put("/call_recording_v1.mp3?account_id=acct-acme", data=b"x" * 10,
                             headers=basic(OPS.user, OPS.password))
    assert reply.status_code == 401
    assert not world.list()["items"]


def test_the_prefix_is_never_an_upload(world: UIWorld) -> None:
    for path in ("/ui/call_recording_x.mp3", "/ui/api/recordings/call_recording_x.mp3"):
        reply = world.client.put(path, data=b"x" * 10, headers=basic(*UPLOADER))
        assert reply.status_code == 401  # the UI's: an upload credential is no viewer
        reply = world.client.put(path, data=b"x" * 10, headers=basic(OPS.user, OPS.password))
        assert reply.status_code == 405
        assert reply.headers["Allow"] == "GET, HEAD" and reply.mimetype == "application/json"
    assert not list(world.root.rglob("*.mp3"))


# -- the page ---------------------------------------------------------------------------


def test_the_page_and_its_files_are_served_with_the_policy(world: UIWorld) -> None:
    assert world.get("").status_code == 308
    assert world.get("").headers["Location"] == "/ui/"
    page = world.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.text
    assert '<input id="q" name="q"' in html
    assert "<script>" not in html and "http" not in html.split("<body>")[0]  # no CDN
    for name, mimetype in (("app.js", "text/javascript"), ("app.css", "text/css")):
        reply = world.get(f"/static/{name}")
        assert reply.status_code == 200 and reply.mimetype == mimetype
        assert world.get(f"/static/{name}", headers={
            "If-None-Match": reply.headers["ETag"]}).status_code == 304
    assert "innerHTML" not in world.get("/static/app.js").text
    assert world.get("/static/../app.py").status_code == 404
    assert world.get("/static/viewers.py").status_code == 404
    csp = page.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in csp and "default-src 'none'" in csp


# -- listing and filters ----------------------------------------------------------------


def test_items_are_rows_without_location_plus_audio_url(world: UIWorld) -> None:
    world.upload("c-1", start=T0)
    (got,) = world.list()["items"]
    row = world.catalog.get(got["id"])
    assert row is not None
    expected = row.to_json()
    del expected["location"]
    assert {k: v for k, v in got.items() if k != "audio_url"} == expected
    assert got["audio_url"] == f"/ui/api/recordings/{quote(row.id, safe='')}/audio"
    assert world.get(f"/api/recordings/{row.id}").json == got
    assert str(world.root) not in world.get("/api/recordings").text


def test_filters_order_and_q(world: UIWorld) -> None:
    world.upload("c-old", start=T0, account_id="acct-acme", **{"from": "+15550100@x"})
    world.upload("c-mid", start=T0 + DAY, account_id="acct-beta", caller_id_name="Bob Smith")
    world.upload("c-new", start=T0 + 40 * DAY, account_id="acct-beta", to="+15550199")
    assert world.ids() == ["c-new", "c-mid", "c-old"]
    assert world.ids(q="c-mid") == ["c-mid"]
    assert world.ids(q="+15550100") == ["c-old"]
    assert world.ids(q="+15550100@elsewhere") == ["c-old"]
    assert world.ids(q="bob") == ["c-mid"]
    assert world.ids(number="+15550199") == ["c-new"]
    assert world.ids(call_id="c-old") == ["c-old"]
    assert world.ids(account_id="acct-beta") == ["c-new", "c-mid"]
    assert world.ids(since="2026-01-02", until="2026-01-02") == ["c-mid"]
    assert world.ids(until="2026-01-02") == ["c-mid", "c-old"]
    assert world.ids(since="2026-01-02T00:00:01Z") == ["c-new"]
    assert world.ids(q="", account_id="") == ["c-new", "c-mid", "c-old"]  # empty form fields


def test_limit_default_and_maximum(world: UIWorld) -> None:
    for n in range(52):
        world.upload(f"c-{n:02d}", start=T0 + n)
    page = world.list()
    assert len(page["items"]) == 50 and page["next"]
    assert len(world.list(params=[("limit", "500")])["items"]) == 52
    assert len(world.list(params=[("limit", "3")])["items"]) == 3


@pytest.mark.parametrize("query, parameter", [
    ("limit=501", "limit"), ("limit=0", "limit"), ("limit=-1", "limit"), ("limit=x", "limit"),
    ("limit=%D9%A3", "limit"), ("since=yesterday", "since"), ("until=2026-13-01", "until"),
    ("flag=loud", "flag"), ("flagged=maybe", "flagged"), ("cursor=abc", "cursor"),
    ("accountid=a", "accountid"), ("q=a&q=b", "q"), ("q=a%00b", "q"),
    ("call_id=" + "x" * 1025, "call_id"),
], ids=lambda v: v[:30])
def test_a_bad_parameter_is_400_naming_it(world: UIWorld, query: str, parameter: str) -> None:
    reply = world.get("/api/recordings?" + query)
    assert reply.status_code == 400
    assert reply.mimetype == "application/json"
    assert reply.json["parameter"] == parameter
    assert parameter in reply.json["error"]


def test_flags(world: UIWorld) -> None:
    world.upload("c-plain", start=T0)
    world.upload("c-empty", b"", start=T0 + 1)
    world.upload("c-html", b"<html><body>502 Bad Gateway</body></html>", start=T0 + 2)
    flagged = {i["call_id"]: i["audio"]["flags"] for i in world.list(
        params=[("flagged", "true")])["items"] if i["audio"]}
    assert flagged == {"c-empty": ["empty"], "c-html": ["not_audio"]}
    assert world.ids(flag="empty") == ["c-empty"]
    both = world.list(params=[("flag", "empty"), ("flag", "not_audio")])
    assert {i["call_id"] for i in both["items"]} == {"c-empty", "c-html"}


def test_self_tests_are_hidden_unless_asked_for(world: UIWorld) -> None:
    world.upload("c-real", start=T0)
    row = world.upload("kzr-check-0123abcd-4x", start=T0 + 1)
    assert row["self_test"] is True
    assert world.ids() == ["c-real"]
    assert world.ids(self_test="true") == ["kzr-check-0123abcd-4x", "c-real"]
    assert world.ids(self_test="false") == ["c-real"]
    reply = world.get("/api/recordings?self_test=maybe")
    assert reply.status_code == 400 and reply.json["parameter"] == "self_test"
    # A cursor made without self-tests does not page a listing with them.
    world.upload("c-real-2", start=T0 + 2)
    page = world.list(params=[("limit", "1")])
    assert page["next"] is not None
    reply = world.get("/api/recordings?" + urlencode(
        [("limit", "1"), ("self_test", "true"), ("cursor", page["next"])]))
    assert reply.status_code == 400 and reply.json["parameter"] == "cursor"


# -- cursors ----------------------------------------------------------------------------


def _follow(world: UIWorld, viewer: Viewer, params: list[tuple[str, str]],
            between: object = None) -> list[str]:
    seen: list[str] = []
    page = world.list(viewer, params)
    while True:
        seen += [i["call_id"] for i in page["items"]]
        if page["next"] is None:
            return seen
        if callable(between):
            between()
        page = world.list(viewer, [*params, ("cursor", page["next"])])


def test_paging_visits_every_match_exactly_once_while_rows_arrive(world: UIWorld) -> None:
    # Ties on the time too: the id breaks them, and the keyset must not skip one.
    for n in range(23):
        world.upload(f"c-{n:02d}", start=T0 + (n // 3) * 60)
    before = world.ids(limit="500")
    arrivals = iter(range(100))
    arrived = []

    def arrive() -> None:
        n = next(arrivals)
        arrived.append(n)
        # Newer, older and equal to rows already listed: none may show up or shift.
        world.upload(f"late-{n}", start=T0 + (n % 3 - 1) * 3600 + 60)

    seen = _follow(world, OPS, [("limit", "4")], arrive)
    assert seen == before
    assert len(arrived) == 5
    assert len(world.ids(limit="500")) == 23 + 5


def test_a_scoped_viewer_pages_through_its_own_rows(world: UIWorld) -> None:
    for n in range(9):
        world.upload(f"c-{n}", start=T0 + n, account_id="acct-acme" if n % 2 else "acct-beta")
    world.upload("c-none", start=T0 + 100, account_id=None)
    assert _follow(world, ACME, [("limit", "2")]) == ["c-7", "c-5", "c-3", "c-1"]
    assert len(_follow(world, BOTH, [("limit", "2")])) == 9
    assert _follow(world, OPS, [("limit", "2")])[0] == "c-none"


def test_a_cursor_is_bound_to_its_viewer_filters_and_secret(world: UIWorld) -> None:
    for n in range(5):
        world.upload(f"c-{n}", start=T0 + n)
    token = world.list(BOTH, [("limit", "2"), ("account_id", "acct-acme")])["next"]
    assert token
    ok = [("limit", "3"), ("account_id", "acct-acme"), ("cursor", token)]
    query = "&".join(f"{k}={v}" for k, v in ok)
    assert world.get("/api/recordings?" + query, BOTH).status_code == 200
    body, mac = token.split(".")
    tampered = [
        ("other-viewer", OPS, [("account_id", "acct-acme"), ("cursor", token)]),
        ("other-filters", BOTH, [("account_id", "acct-beta"), ("cursor", token)]),
        ("no-filters", BOTH, [("cursor", token)]),
        ("body-changed", BOTH, [("account_id", "acct-acme"), ("cursor", body[:-2] + "AA." + mac)]),
        ("mac-changed", BOTH, [("account_id", "acct-acme"), ("cursor", body + "." + mac[::-1])]),
        ("foreign-secret", BOTH, [("account_id", "acct-acme"), ("cursor", CursorSigner(
            b"x" * 32).dump("both", '[null,null,null,"acct-acme",null,null,[],false]',
                            (world.catalog.get(world.list()["items"][0]["id"]).sort_at, "z"),
                            1))]),
    ]
    for label, viewer, params in tampered:
        reply = world.get("/api/recordings?" + "&".join(
            f"{k}={quote(v, safe='')}" for k, v in params), viewer)
        assert reply.status_code == 400, label
        assert reply.json["parameter"] == "cursor", label


def test_cursor_signer_refuses_junk() -> None:
    signer = CursorSigner()
    for junk in ("", ".", "a.b.c", "x" * 2000, "é.é", "e30.AAAA"):
        with pytest.raises(BadCursor):
            signer.load(junk, "v", "f")
    with pytest.raises(ValueError):
        CursorSigner(b"short")


# -- scoping ----------------------------------------------------------------------------


def test_scoped_viewers_see_their_accounts_only_everywhere(world: UIWorld) -> None:
    mine = world.upload("c-acme", start=T0, account_id="acct-acme")
    theirs = world.upload("c-beta", start=T0 + 1, account_id="acct-beta")
    world.upload("c-none", start=T0 + 2, account_id=None)
    assert world.ids(ACME) == ["c-acme"]
    assert world.ids(ACME, account_id="acct-beta") == []
    assert world.ids(ACME, q="c-beta") == []
    assert world.ids(BOTH) == ["c-beta", "c-acme"]
    assert world.ids(OPS) == ["c-none", "c-beta", "c-acme"]
    ids = {i["call_id"]: i["id"] for i in world.list(OPS)["items"]}
    assert world.get(f"/api/recordings/{ids['c-acme']}", ACME).status_code == 200
    assert world.get(f"/api/recordings/{ids['c-acme']}/audio", ACME).status_code == 200
    missing = world.get("/api/recordings/0123456789abcdef", ACME)
    for hidden in (ids["c-beta"], ids["c-none"]):
        for suffix in ("", "/audio", "/audio?download=1"):
            reply = world.get(f"/api/recordings/{hidden}{suffix}", ACME)
            assert reply.status_code == 404
            assert reply.data == missing.data and reply.headers["Content-Type"] == \
                missing.headers["Content-Type"]
    assert mine["sha256"] != theirs["sha256"] or mine["call_id"] != theirs["call_id"]


# -- audio ------------------------------------------------------------------------------


def test_audio_get_head_range_and_conditional(world: UIWorld) -> None:
    body = bytes(range(256)) * 40
    world.upload("c-audio", body, start=T0)
    url = world.list()["items"][0]["audio_url"].removeprefix("/ui")
    whole = world.get(url)
    assert whole.status_code == 200 and whole.data == body
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["ETag"] == f'"{hashlib.sha256(body).hexdigest()}"'
    assert whole.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Disposition" not in whole.headers
    head = world.client.head("/ui" + url, headers=basic(OPS.user, OPS.password))
    assert head.status_code == 200 and head.data == b""
    assert int(head.headers["Content-Length"]) == len(body)
    part = world.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.data == body[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(body)}"
    tail = world.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.data == body[-10:]
    past = world.get(url, headers={"Range": f"bytes={len(body) + 5}-"})
    assert past.status_code == 416
    assert past.headers["X-Content-Type-Options"] == "nosniff"
    same = world.get(url, headers={"If-None-Match": whole.headers["ETag"]})
    assert same.status_code == 304


def test_download_name_survives_hostile_metadata(world: UIWorld) -> None:
    call_id = 'evil"; Set-Cookie: x=1;\\ é/../ñ'
    world.upload(call_id, start=T0 + 3723, **{"from": 'Zoë "x"\n <b>@realm', "to": "+1 (555) 0"})
    url = world.list()["items"][0]["audio_url"].removeprefix("/ui")
    reply = world.get(url + "?download=1")
    assert reply.status_code == 200
    value = reply.headers["Content-Disposition"]
    assert "\r" not in value and "\n" not in value and ";" not in value.split("filename")[-1]
    assert value.startswith('attachment; filename="20260101T010203Z_Zoe-x-b_+1-555-0_evil-')
    assert value.count('"') == 2 and "\\" not in value
    assert "/" not in value.split("filename=")[1].split("; filename*")[0]
    assert value.split("filename*=UTF-8''")[1].startswith("20260101T010203Z_Zo%C3%AB-x-b_")
    assert value.endswith(".mp3")
    from werkzeug.http import parse_options_header
    disposition, options = parse_options_header(value)
    assert disposition == "attachment"
    assert options["filename"].startswith("20260101T010203Z_Zoë-x-b_+1-555-0_evil-")


def test_content_disposition_is_ascii_and_quoted() -> None:
    value = content_disposition("ä\"\n\\.mp3")
    assert value.isascii() and value.count('"') == 2


@pytest.mark.parametrize("filename, content_type, expected", [
    ("call_recording_h.mp3", "text/html", "audio/mpeg"),
    ("call_recording_h.mp3", "audio/mpeg", "audio/mpeg"),
    ("call_recording_h.wav", "audio/x-wav", "audio/x-wav"),
    ("call_recording_h.mp4", "application/xhtml+xml", "audio/mp4"),
], ids=["html-type-as-mp3", "mp3", "wav", "xhtml-type-as-mp4"])
def test_stored_bytes_are_never_served_as_a_page(
        world: UIWorld, filename: str, content_type: str, expected: str) -> None:
    ext = filename.rpartition(".")[2]
    world.upload("c-h", b"<html><script>alert(1)</script></html>", ext=ext, start=T0,
                 content_type=content_type)
    item = world.list()["items"][0]
    reply = world.get(item["audio_url"].removeprefix("/ui"))
    flags = (item["audio"] or {}).get("flags", [])
    assert reply.mimetype == ("application/octet-stream" if "not_audio" in flags else expected)
    assert "html" not in reply.mimetype and "xml" not in reply.mimetype
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in reply.headers["Content-Security-Policy"]


def test_a_row_whose_file_is_gone_is_404(world: UIWorld) -> None:
    world.upload("c-gone", start=T0)
    item = world.list()["items"][0]
    for path in world.root.rglob("call_recording_c-gone.mp3"):
        path.unlink()
    assert world.get(item["audio_url"].removeprefix("/ui")).status_code == 404


def test_open_stored_stays_under_the_root(world: UIWorld, tmp_path: Path) -> None:
    from kzr_wsgi.errors import NotFound

    record = world.upload("c-x", start=T0)
    outside = tmp_path / "secret.txt"
    outside.write_text("no")
    (world.root / "link.mp3").symlink_to(outside)
    sidecar = record["location"] + ".kzr.json"
    for location in (str(outside), "../secret.txt", "link.mp3", sidecar,
                     str(world.root / ".kzr" / "index"), str(world.root), "/etc/passwd", "\0"):
        with pytest.raises(NotFound):
            world.store.open_stored(location)
    with world.store.open_stored(record["location"], record["sha256"]).fileobj as fh:
        assert fh.read() == SECOND


# -- never a 5xx ------------------------------------------------------------------------

_NAMES = st.sampled_from(["q", "call_id", "number", "account_id", "since", "until", "flag",
                          "flagged", "limit", "cursor", "other", "", "q[]"])
_VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["2026-01-01", "2026-02-30", "2026-01-01T00:00:00Z", "9999-12-31",
                     "0001-01-01", "true", "0", "500", "501", "-1", "1e3", "empty",
                     "not_audio", "T", "24:00", "2026-01-01T25:00", "+99999-01-01"]),
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(params=st.lists(st.tuples(_NAMES, _VALUES), max_size=6),
       viewer=st.sampled_from([OPS, ACME]))
def test_any_query_is_answered_without_a_5xx(
        world: UIWorld, params: list[tuple[str, str]], viewer: Viewer) -> None:
    if world.uploads == 0:
        for n in range(3):
            world.upload(f"c-{n}", start=T0 + n, account_id=("acct-acme", "acct-beta")[n % 2])
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)
    reply = world.get("/api/recordings?" + query, viewer)
    assert reply.status_code in (200, 400), reply.text
    assert reply.mimetype == "application/json"
    if reply.status_code == 400:
        assert reply.json["parameter"]


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.text(max_size=60))
def test_any_id_is_answered_without_a_5xx(world: UIWorld, raw: str) -> None:
    path = quote(raw, safe="")
    for suffix in ("", "/audio"):
        reply = world.get(f"/api/recordings/{path}{suffix}")
        assert reply.status_code in ((200, 404) if raw == "" else (404,)), reply.text


# -- Flask ------------------------------------------------------------------------------


def test_flask_extension_mounts_the_ui_in_front(tmp_path: Path) -> None:
    from flask import Flask

    from kzr_wsgi.flask import KazooFlask

    app = Flask("t")
    app.add_url_rule("/hello", "hello", lambda: "flask")
    app.config.update(KZR_ROOT=str(tmp_path / "rec"), KZR_UI_VIEWERS=["ops:ops-pw"],
                      KZR_UI_PREFIX="/search")
    KazooFlask(app)
    client = app.test_client()
    assert client.get("/hello").text == "flask"
    assert client.put("/call_recording_f1.mp3?account_id=a1", data=b"\xff\xfb" * 50,
                      headers={"Content-Length": "100"}).status_code == 201
    assert client.get("/search/api/recordings").status_code == 401
    listing = client.get("/search/api/recordings", headers=basic("ops", "ops-pw"))
    assert listing.status_code == 200
    assert [i["call_id"] for i in listing.json["items"]] == ["f1"]
    assert client.put("/search/call_recording_f2.mp3", data=b"x",
                      headers=basic("ops", "ops-pw")).status_code == 405
    assert app.extensions["kzr_wsgi"].ui.prefix == "/search"


def test_flask_extension_takes_serve_s_page_settings(tmp_path: Path) -> None:
    """KZR_UI_TRUSTED_PROXIES, KZR_UI_PUBLIC_URL and KZR_UI_EXPORT_MAX: what serve's
    --trust-proxy, --public-url and --export-max set, each seen working."""
    from flask import Flask

    from kzr_wsgi.flask import KazooFlask

    app = Flask("t")
    app.config.update(KZR_ROOT=str(tmp_path / "rec"), KZR_UI_VIEWERS=[
        Viewer("ops", "ops-pw", None, share=True)], KZR_UI_TRUSTED_PROXIES=["10.0.0.0/8"],
        KZR_UI_PUBLIC_URL="https://rec.example.net/", KZR_UI_EXPORT_MAX=1)
    KazooFlask(app)
    client = app.test_client()
    for call in ("f1", "f2"):
        assert client.put(f"/call_recording_{call}.mp3?account_id=a1", data=b"\xff\xfb" * 50,
                          headers={"Content-Length": "100"}).status_code == 201
    auth = basic("ops", "ops-pw")
    items = client.get("/ui/api/recordings", headers=auth).json["items"]
    # Exports: at most one recording.
    too_many = client.post("/ui/api/export", headers=auth, json={"filters": {}})
    assert too_many.status_code == 400 and "more than 1 recordings match" in \
        too_many.json["error"]
    one = client.post("/ui/api/export", headers=auth, json={"ids": [items[0]["id"]]})
    assert one.status_code == 200 and one.mimetype == "application/zip"
    # Share links point at the public URL, whatever Host says.
    shared = client.post(f"/ui/api/recordings/{items[0]['id']}/shares", json={},
                         headers={**auth, "Host": "evil.example"})
    assert shared.status_code == 201
    assert shared.json["url"].startswith("https://rec.example.net/ui/s/")
    # Behind the trusted proxy the client is the forwarded address; elsewhere it is not.
    gate = app.extensions["kzr_wsgi"].ui.gate
    forwarded = {"HTTP_X_FORWARDED_FOR": "192.0.2.44"}
    assert gate.address({"REMOTE_ADDR": "10.1.2.3", **forwarded}) == "192.0.2.44"
    assert gate.address({"REMOTE_ADDR": "192.0.2.80", **forwarded}) == "192.0.2.80"


@pytest.mark.parametrize("key, value, said", [
    ("KZR_UI_PUBLIC_URL", "rec.example.net", "not a URL"),
    ("KZR_UI_EXPORT_MAX", 0, "export_max"),
    ("KZR_UI_EXPORT_MAX", "10", "export_max"),
    ("KZR_UI_TRUSTED_PROXIES", ["10.0.0.0/33"], "10.0.0.0/33"),
])
def test_flask_extension_refuses_bad_page_settings_at_start(
        tmp_path: Path, key: str, value: object, said: str) -> None:
    from flask import Flask

    from kzr_wsgi.flask import KazooFlask

    app = Flask("t")
    app.config.update({"KZR_ROOT": str(tmp_path / "rec"), "KZR_UI_VIEWERS": ["ops:ops-pw"],
                       key: value})
    with pytest.raises(ValueError, match=said):
        KazooFlask(app)


def test_s3_open_stored_serves_data_objects_of_its_prefix_only(
        s3_bucket: tuple[object, str], moto_endpoint: str) -> None:  # noqa: F811
    from test_s3_store import make_recording, store_for

    from kzr_wsgi.errors import NotFound

    store = store_for(s3_bucket, moto_endpoint)
    body = bytes(range(256)) * 20
    stored = store(make_recording(body))
    opened = store.open_stored(stored.location, stored.sha256)
    assert (opened.size, opened.etag) == (len(body), stored.sha256)
    with opened.fileobj as fh:  # seekable, read with ranged GETs (what Range needs)
        fh.seek(1000)
        assert fh.read(24) == body[1000:1024]
    client, bucket = s3_bucket
    index_key = next(o["Key"] for o in client.list_objects_v2(  # type: ignore[attr-defined]
        Bucket=bucket, Prefix="kazoo/.kzr/")["Contents"])
    client.put_object(Bucket=bucket, Key="elsewhere/x.mp3", Body=b"x")  # type: ignore[attr-defined]
    key = stored.location.split("/", 3)[3]
    for location in (f"s3://{bucket}/{index_key}", f"s3://{bucket}/elsewhere/x.mp3",
                     f"s3://other-bucket/{key}", f"s3://{bucket}/kazoo/missing.mp3",
                     f"http://{bucket}/{key}", key, ""):
        with pytest.raises(NotFound):
            store.open_stored(location)


def test_the_app_keeps_to_wsgi(world: UIWorld) -> None:
    import warnings

    from werkzeug.middleware.lint import LintMiddleware
    from werkzeug.test import Client

    world.upload("c-lint", start=T0)
    item = world.list()["items"][0]
    client = Client(LintMiddleware(world.ui))
    auth = basic(OPS.user, OPS.password)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the linter warns on misuse
        # RFC 9110 allows a relative Location; an absolute one would name http:// behind a
        # TLS proxy that the app cannot see.
        warnings.filterwarnings("ignore", "Absolute URLs required for location header")
        for path, headers, status in [
            ("/ui/", auth, 200), ("/ui/static/app.js", auth, 200), ("/ui", auth, 308),
            ("/ui/api/recordings?limit=x", auth, 400), ("/ui/api/recordings", {}, 401),
            ("/ui/api/recordings/nope", auth, 404), (item["audio_url"], auth, 200),
            (item["audio_url"], {**auth, "Range": "bytes=0-9"}, 206),
            (item["audio_url"] + "?download=1", auth, 200),
        ]:
            reply = client.get(path, headers=headers)
            assert reply.status_code == status, path
            reply.close()


# -- one table of statuses ---------------------------------------------------------------


@pytest.mark.parametrize("error", sorted(errors.STATUS, key=lambda c: c.__name__),
                         ids=lambda c: c.__name__)
def test_the_page_and_the_receiver_answer_an_error_with_one_status(
        world: UIWorld, error: type[errors.KzrError], monkeypatch: pytest.MonkeyPatch) -> None:
    """What the catalog or a store raises is answered by errors.STATUS, on either side."""

    def fail(*args: object) -> None:
        raise error("it failed")

    # The receiver: the handler raises while taking an upload.
    receiver = KazooRecordings(not_found, fail)
    upload = Client(receiver).put("/call_recording_e.mp3", data=b"x")
    # The page: the catalog raises while searching.
    monkeypatch.setattr(world.catalog, "search", fail)
    listing = world.get("/api/recordings")
    assert upload.status_code == listing.status_code == errors.status_of(error("x"))
    expected = "it failed" if listing.status_code < 500 else "unavailable"
    assert listing.json == {"error": expected}
