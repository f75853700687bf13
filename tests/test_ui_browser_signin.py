"""Signing in and out, share links and accessibility, in a real headless Chromium.

Against the same ``kzr-wsgi serve --ui`` as :mod:`test_ui_browser` (its module's server
and browser): sign in through the form and out with the page's button; make a share link
from the page's session, open it in a fresh browser context (it plays), revoke it
(``404``), try its token on another recording (``404``); axe-core on the sign-in page and
a share link's page finds no serious or critical violation; neither scrolls sideways at
375 px.
"""

from __future__ import annotations

import pytest
from test_ui_browser import OPS, Site, browser, open_page, sign_in, site  # noqa: F401 - fixtures
from ui_fixtures import CHROMIUM_ARGS  # noqa: F401 - the browser's flags, as test_ui_browser's

pytestmark = pytest.mark.slow


def axe_violations(page: object) -> list[dict[str, object]]:
    """axe-core's serious and critical violations on ``page`` (axe-playwright-python)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [v for v in results.response["violations"]
            if v.get("impact") in ("serious", "critical")]


def make_share(page: object, row_id: str) -> dict[str, str]:
    """A link made by the page's session, as the page's script would: fetch + CSRF token."""
    made = page.evaluate("""async (id) => {  // noqa: E501
        const csrf = document.querySelector('meta[name="kzr-csrf"]').content;
        const r = await fetch(`api/recordings/${encodeURIComponent(id)}/shares`, {
          method: "POST", credentials: "same-origin",
          headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
          body: JSON.stringify({expires_in: "1h"})});
        return [r.status, await r.json()]; }""", row_id)  # type: ignore[attr-defined]
    assert made[0] == 201, made
    return dict(made[1])


def test_sign_in_and_out_through_the_page(site: Site, browser: object) -> None:  # noqa: F811
    page = open_page(browser, OPS, site.url())
    page.wait_for_selector("body[data-loaded=true]")  # type: ignore[attr-defined]
    assert page.locator("header .viewer").inner_text() == "ops"  # type: ignore[attr-defined]
    cookies = {c["name"]: c for c in page.context.cookies()}  # type: ignore[attr-defined]
    assert cookies["kzr_session"]["httpOnly"] and cookies["kzr_session"]["sameSite"] == "Lax"
    assert page.evaluate("() => document.cookie") == ""  # type: ignore[attr-defined]
    with page.expect_navigation():  # type: ignore[attr-defined]
        page.click("form#signout input[type=submit]")  # type: ignore[attr-defined]
    assert page.locator("input[name=password]").is_visible()  # type: ignore[attr-defined]
    status = page.evaluate(  # type: ignore[attr-defined]
        "async () => (await fetch('api/recordings')).status")
    assert status == 401
    page.context.close()  # type: ignore[attr-defined]


def test_a_share_link_plays_without_an_account_and_dies_when_revoked(
        site: Site, browser: object) -> None:  # noqa: F811
    ops = open_page(browser, OPS, site.url("/ui/?q=acme-call-1&as=numbers"))
    ops.wait_for_selector("body[data-loaded=true]")  # type: ignore[attr-defined]
    row_id = ops.locator("li.result").first.get_attribute("data-recording-id")  # type: ignore[attr-defined]
    other_id = ops.evaluate(  # type: ignore[attr-defined]
        "async () => (await (await fetch('api/recordings?q=beta-call-1')).json()).items[0].id")
    made = make_share(ops, row_id)
    assert made["url"].startswith("/ui/s/")  # the page completes it with its origin
    link = site.url(made["url"])
    stranger = browser.new_context()  # type: ignore[attr-defined]
    page = stranger.new_page()
    response = page.goto(link)
    assert response.status == 200
    assert response.headers["referrer-policy"] == "no-referrer"
    page.wait_for_selector("body[data-loaded=true]")
    page.evaluate("() => document.getElementById('player').play()")
    page.wait_for_function("""() => { const a = document.getElementById('player');
        return isFinite(a.duration) && a.duration > 5 && a.currentTime > 0.5; }""",
                           timeout=15000)
    page.evaluate("() => { const a = document.getElementById('player'); a.currentTime = 4; }")
    page.wait_for_function("""() => { const a = document.getElementById('player');
        return !a.seeking && Math.abs(a.currentTime - 4) < 0.5; }""", timeout=15000)
    # The token opens its own recording and nothing else.
    token = made["url"].rsplit("/", 1)[1]
    for path in (f"/ui/s/{token}/api/recordings/{other_id}/audio",
                 f"/ui/api/recordings/{other_id}/audio", "/ui/api/recordings"):
        status = page.evaluate("async (p) => (await fetch(p)).status", path)
        assert status in (401, 404), path
    revoked = ops.evaluate("""async (id) => {
        const csrf = document.querySelector('meta[name="kzr-csrf"]').content;
        return (await fetch(`api/shares/${id}`, {method: "DELETE",
          headers: {"X-CSRF-Token": csrf}})).status; }""", made["id"])  # type: ignore[attr-defined]
    assert revoked == 204
    again = stranger.new_page()
    assert again.goto(link).status == 404
    assert "does not work" in again.content()
    stranger.close()
    ops.context.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("width", [1280, 375])
def test_the_sign_in_page_and_a_share_link_pass_axe_and_fit(
        site: Site, browser: object, width: int) -> None:  # noqa: F811
    context = browser.new_context(viewport={"width": width, "height": 800})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(site.url("/ui/"))
    page.keyboard.press("Tab")  # the first control is reachable by keyboard, labelled
    assert page.evaluate("() => document.activeElement.name") == "username"
    assert axe_violations(page) == []
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    ops = open_page(browser, OPS, site.url("/ui/?q=acme-call-2&as=numbers"))
    ops.wait_for_selector("body[data-loaded=true]")  # type: ignore[attr-defined]
    row_id = ops.locator("li.result").first.get_attribute("data-recording-id")  # type: ignore[attr-defined]
    made = make_share(ops, row_id)
    ops.context.close()  # type: ignore[attr-defined]
    page.goto(site.url(made["url"]))
    page.wait_for_selector("body[data-loaded=true]")
    assert axe_violations(page) == []
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    # The player's controls come first (the waveform, a labelled slider), then the
    # audio element itself, all by keyboard.
    page.keyboard.press("Tab")
    assert page.evaluate("() => [document.activeElement.getAttribute('role'),"
                         " document.activeElement.getAttribute('aria-label')]") == [
        "slider", "Position in the recording"]
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "player":
            break
    assert page.evaluate("() => document.activeElement.id") == "player"
    context.close()
