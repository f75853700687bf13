"""The search page in a real headless Chromium, against ``kzr-wsgi serve --ui``.

``serve --root D --ui --viewer-file F`` after LAME-made MP3 uploads from several
accounts (as Kazoo sends them: PUT with Basic and 4.x's metadata query). In the page:
a viewer signs in through the form; an operator finds a recording by number and by
call id, opens it, plays it (the audio element reports a duration and its time
advances), seeks (a ``Range`` request) and downloads it under its readable name; a
customer viewer sees only its account and gets ``404`` for another's id and audio URL;
a caller name holding markup shows as text and runs nothing; without a session the page
is the sign-in form and the API a plain ``401``.

One browser and one server for the module; Debian's chromium, no browser download.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from audio_samples import freeswitch_mp3
from pgserver import pg_server, pg_url  # noqa: F401 - fixtures
from s3server import aws_env, moto_endpoint  # noqa: F401 - fixtures
from servers import Server, serve
from test_s3_serve import rec, serve_s3  # noqa: F401 - rec is a fixture
from ui_fixtures import CHROMIUM, CHROMIUM_ARGS, HOSTILE_NAME, Uploaded, upload

OPS = ("ops", "ops-pw")
ACME = ("acme", "acme-pw")
UPLOADER = ("kazoo", "upload-pw")

pytestmark = pytest.mark.slow

@dataclass
class Site:
    server: Server
    uploads: dict[str, Uploaded]

    def url(self, path: str = "/ui/") -> str:
        return self.server.url + path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("ui-browser")
    viewers = tmp / "viewers"
    viewers.write_text(f"# operators\n{':'.join(OPS)} * share\n{':'.join(ACME)}  acct-acme\n")
    six = freeswitch_mp3(6.0, rate=8000, channels=1)
    three = freeswitch_mp3(3.0, rate=8000, channels=1)
    t0 = 1767258000  # 2026-01-01T09:00:00Z
    with serve(tmp, "--ui", "--viewer-file", str(viewers), "--basic-auth", ":".join(UPLOADER),
               "--workers", "1", "--threads", "4") as server:
        uploads = {u.call_id: u for u in [
            upload(server, "acme-call-1", six, account_id="acct-acme", start=t0,
                   **{"from": "+15557770001@acme.example"}),
            upload(server, "acme-call-2", three, account_id="acct-acme", start=t0 + 60),
            upload(server, "beta-call-1", six, account_id="acct-beta", start=t0 + 120,
                   **{"to": "+15558880002@beta.example"}),
            upload(server, "beta-hostile", three, account_id="acct-beta", start=t0 + 180,
                   caller_id_name=HOSTILE_NAME),
        ]}
        yield Site(server, uploads)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def sign_in(page: object, origin: str, viewer: tuple[str, str]) -> None:
    """Sign in through the form, as a person does; the page is the search page after."""
    page.goto(f"{origin}/ui/signin")  # type: ignore[attr-defined]
    page.fill("input[name=username]", viewer[0])  # type: ignore[attr-defined]
    page.fill("input[name=password]", viewer[1])  # type: ignore[attr-defined]
    with page.expect_navigation():  # type: ignore[attr-defined]
        page.click("form.signin button[type=submit]")  # type: ignore[attr-defined]
    assert page.url == f"{origin}/ui/", page.url  # type: ignore[attr-defined]


def open_page(browser: object, viewer: tuple[str, str] | None, url: str,
              **settings: object) -> object:
    context = browser.new_context(accept_downloads=True, **settings)  # type: ignore[attr-defined]
    page = context.new_page()
    if viewer is not None:
        parts = urlsplit(url)
        sign_in(page, f"{parts.scheme}://{parts.netloc}", viewer)
    page.goto(url)
    return page


def generation(page: object) -> str:
    """The generation of the listing the page shows (once it shows one)."""
    page.wait_for_selector("body[data-loaded=true]")  # type: ignore[attr-defined]
    shown = page.get_attribute("body", "data-generation")  # type: ignore[attr-defined]
    assert shown
    return str(shown)


def submit_search(page: object, text: str) -> None:
    """Type ``text`` into the search field, submit, and wait for this search's results.

    The page being left says ``data-loaded`` until the next one replaces it: the wait is
    for a listing of another generation.
    """
    before = generation(page)
    page.fill("input[name=q]", text)  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_selector(  # type: ignore[attr-defined]
        f'body[data-loaded=true]:not([data-generation="{before}"])')


def search(page: object, text: str) -> list[str]:
    """Type ``text`` into the search field, submit, and return the call ids listed."""
    submit_search(page, text)
    return listed(page)


def search_numbers(page: object, text: str) -> list[str]:
    """Search ``text`` as numbers, call ids and caller names: text that does not look
    like a number is searched as words said first; the page's one-click switch then
    searches it the other way."""
    submit_search(page, text)
    if page.get_attribute("#searched", "data-as") == "words":  # type: ignore[attr-defined]
        before = generation(page)
        page.click("#search-other")  # type: ignore[attr-defined]
        page.wait_for_selector(  # type: ignore[attr-defined]
            f'body[data-loaded=true]:not([data-generation="{before}"])')
    assert page.get_attribute("#searched", "data-as") == "numbers"  # type: ignore[attr-defined]
    return listed(page)


def listed(page: object) -> list[str]:
    page.wait_for_selector("body[data-loaded=true]")  # type: ignore[attr-defined]
    return page.eval_on_selector_all(  # type: ignore[attr-defined]
        "li.result", "items => items.map(li => li.dataset.callId)")


def test_without_a_session_the_page_is_the_sign_in_form(site: Site, browser: object) -> None:
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    # No browser prompt: the page is a form, and the page's own fetch is a plain 401.
    response = page.goto(site.url())
    assert response.status == 200
    assert page.locator("input[name=username]").is_visible()
    fetched = page.evaluate("""async () => { const r = await fetch("api/recordings");
        return [r.status, r.headers.get("www-authenticate")]; }""")
    assert fetched == [401, None]
    # A script without credentials is still challenged (Playwright's own requests are no
    # browser's: they carry no Sec-Fetch headers).
    response = context.request.get(site.url("/ui/api/recordings"))
    assert response.status == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    # A wrong viewer, and Kazoo's upload credentials, are no viewer either.
    for user, password in (("ops", "wrong"), UPLOADER):
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        for path in ("/ui/", "/ui/api/recordings"):
            reply = context.request.get(site.url(path), headers={"Authorization": f"Basic {token}"})
            assert reply.status == 401
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", password)
        with page.expect_navigation():
            page.click("form.signin button[type=submit]")
        assert page.locator("#signin-error").inner_text() == "Wrong user name or password."
    context.close()


def test_find_by_number_and_call_id_then_play_seek_and_download(
        site: Site, browser: object, tmp_path: Path) -> None:
    page = open_page(browser, OPS, site.url())
    assert listed(page) == ["beta-hostile", "beta-call-1", "acme-call-2", "acme-call-1"]
    assert search(page, "+15557770001") == ["acme-call-1"]
    assert search(page, "+15558880002") == ["beta-call-1"]
    assert search_numbers(page, "acme-call-1") == ["acme-call-1"]
    row = page.locator("li.result").first
    rid = row.get_attribute("data-recording-id")
    assert rid and re.fullmatch(r"[\w-]+", rid)
    # The time is shown in the browser's zone, with the zone named.
    assert re.search(r"(UTC|GMT)", row.locator("time").inner_text())
    row.locator("summary").click()
    audio = row.locator("audio")
    assert audio.is_visible()
    page.evaluate("() => document.querySelector('li.result audio').play()")
    page.wait_for_function("""() => {
        const a = document.querySelector('li.result audio');
        return isFinite(a.duration) && a.duration > 0 && a.currentTime > 0.5; }""", timeout=15000)
    duration = page.evaluate("() => document.querySelector('li.result audio').duration")
    assert 5.5 < duration < 6.5
    page.evaluate("""() => { const a = document.querySelector('li.result audio');
        a.pause(); a.currentTime = 4.0; }""")
    page.wait_for_function("""() => { const a = document.querySelector('li.result audio');
        return !a.seeking && Math.abs(a.currentTime - 4.0) < 0.3; }""", timeout=15000)
    page.evaluate("() => document.querySelector('li.result audio').play()")
    page.wait_for_function(
        "() => document.querySelector('li.result audio').currentTime > 4.3", timeout=15000)
    # Seeking asked for a range (the server answers it 206): verified over HTTP too.
    src = page.evaluate("() => document.querySelector('li.result audio').src")
    ranged = page.request.get(src, headers={"Range": "bytes=100-199"})
    assert ranged.status == 206 and ranged.body() == site.uploads["acme-call-1"].body[100:200]
    with page.expect_download() as info:
        row.locator("a.download").click()
    download = info.value
    assert download.suggested_filename == "20260101T090000Z_+15557770001_1002_acme-call-1.mp3"
    saved = tmp_path / "saved.mp3"
    download.save_as(saved)
    assert saved.read_bytes() == site.uploads["acme-call-1"].body
    page.context.close()


def test_a_scoped_viewer_sees_its_account_only(site: Site, browser: object) -> None:
    ops = open_page(browser, OPS, site.url())
    assert len(listed(ops)) == len(site.uploads)
    ids = {li.get_attribute("data-recording-id"): li.get_attribute("data-call-id")
           for li in ops.locator("li.result").all()}
    ops.context.close()
    page = open_page(browser, ACME, site.url())
    assert listed(page) == ["acme-call-2", "acme-call-1"]
    assert search(page, "+15558880002") == []
    assert search_numbers(page, "beta-call-1") == []
    for rid, call_id in ids.items():
        item = page.request.get(site.url(f"/ui/api/recordings/{rid}"))
        audio = page.request.get(site.url(f"/ui/api/recordings/{rid}/audio"))
        expected = 200 if call_id.startswith("acme") else 404
        assert (item.status, audio.status) == (expected, expected), call_id
    assert sorted(ids.values()) == sorted(site.uploads)
    page.context.close()


def test_a_caller_name_with_markup_is_text(site: Site, browser: object) -> None:
    page = open_page(browser, OPS, site.url())
    assert search_numbers(page, "<img") == ["beta-hostile"]
    caller = page.locator("li.result .caller").first
    assert caller.inner_text() == HOSTILE_NAME
    page.locator("li.result summary").first.click()
    page.wait_for_timeout(300)  # an image error handler would have fired by now
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("#results img").count() == 0
    page.context.close()


def test_an_opened_result_stays_open_after_its_search_answered(
        site: Site, browser: object) -> None:
    """The results a search waits for are its own, never those of the page being left.

    Chromium asks for the next page in a task of its own after the click's; under load
    that came after Playwright's click had returned, while the outgoing page still said
    ``data-loaded``: the result opened was the outgoing page's, and a moment later its
    download link was gone with it. Here the form's submission is held back a second,
    so every run meets that order of events.
    """
    page = open_page(browser, OPS, site.url("/ui/?q=%3Cimg&as=numbers"))
    assert listed(page) == ["beta-hostile"]
    page.evaluate("""() => document.getElementById("search").addEventListener("submit",
        (event) => { event.preventDefault(); setTimeout(() => event.target.submit(), 1000); },
        { once: true })""")
    with page.expect_response(lambda r: "/api/recordings?" in r.url):
        submit_search(page, "<img")
        assert listed(page) == ["beta-hostile"]
        row = page.locator("li.result").first
        row.locator("summary").click()
        link = row.locator("a.download")
        assert link.is_visible()
    # The search has answered (waited for above, or it replaced the page since).
    assert link.is_visible()
    with page.expect_download() as info:
        link.click()
    assert info.value.suggested_filename.endswith("_beta-hostile.mp3")
    page.context.close()


# -- S3: two hosts, one bucket, one PostgreSQL catalog ------------------------------------


def test_two_s3_hosts_each_find_and_play_every_recording(
        browser: object, tmp_path: Path, rec: object, moto_endpoint: str,  # noqa: F811
        pg_url: str) -> None:  # noqa: F811
    six = freeswitch_mp3(6.0, rate=8000, channels=1)
    three = freeswitch_mp3(3.0, rate=8000, channels=1)
    args = ("--ui", "--viewer", ":".join(OPS), "--basic-auth", ":".join(UPLOADER),
            "--catalog", pg_url, "--ui-secret", "one-secret-for-every-host")
    t0 = 1767258000
    with serve_s3(tmp_path, moto_endpoint, *args, name="a") as a, \
            serve_s3(tmp_path, moto_endpoint, *args, name="b") as b:
        hosts = [a, b]
        sent = {}
        for i in range(4):
            body = six if i % 2 else three
            up = upload(hosts[i % 2], f"s3-call-{i}", body, account_id=f"acct-{i % 3}",
                        start=t0 + i * 60)
            sent[up.call_id] = up.body
        for host in hosts:
            page = open_page(browser, OPS, host.url + "/ui/?limit=3")
            context = page.context
            assert listed(page) == ["s3-call-3", "s3-call-2", "s3-call-1"]
            # The next page (a cursor made here) works at the other host too: one secret.
            token = page.evaluate("() => new URL(document.getElementById('older').href)"
                                  ".searchParams.get('cursor')")
            other = hosts[1 - hosts.index(host)]
            more = context.request.get(f"{other.url}/ui/api/recordings?limit=3&cursor={token}")
            assert [i["call_id"] for i in more.json()["items"]] == ["s3-call-0"]
            for li in page.locator("li.result").all():
                call_id = li.get_attribute("data-call-id")
                src = li.locator("audio").get_attribute("src")
                whole = context.request.get(host.url + src)
                assert whole.body() == sent[call_id]
                part = context.request.get(host.url + src, headers={"Range": "bytes=10-19"})
                assert part.status == 206 and part.body() == sent[call_id][10:20]
            # Played in the page: one stored by the other host.
            row = page.locator("li.result").first
            row.locator("summary").click()
            page.evaluate("() => document.querySelector('li.result audio').play()")
            page.wait_for_function("""() => {
                const a = document.querySelector('li.result audio');
                return isFinite(a.duration) && a.duration > 5 && a.currentTime > 0.3; }""",
                timeout=15000)
            context.close()


def test_a_phone_sized_screen_needs_no_sideways_scrolling(site: Site, browser: object) -> None:
    page = open_page(browser, OPS, site.url(), viewport={"width": 390, "height": 844},
                     is_mobile=True)
    context = page.context
    assert len(listed(page)) == 4
    page.locator("li.result summary").first.click()
    assert page.locator("li.result audio").first.is_visible()
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390
    context.close()
