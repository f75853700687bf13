"""The page as a customer uses it, in a real headless Chromium against ``kzr-wsgi serve --ui``.

A viewer signs in through the form, finds a call by a word said in it, clicks the
snippet: the audio plays from that segment's time; 1.5x; seeks by clicking the waveform
(two lanes, caller and callee, from the pipeline's peaks); the keys; the segment being
played is marked. The viewer makes a share link with the page, which opens in a fresh
browser without signing in (player, waveform, transcript; it plays), is revoked (``404``)
and opens nothing else; exports three results (the ZIP's entries and bytes); signs out.
The access log has each act. axe-core on the sign-in page, the search page, an opened
recording and a share page finds no serious or critical violation, and none scrolls
sideways at 375 px.

The recordings are real: a stereo conversation spoken by espeak-ng, mixed by sox and
encoded by LAME (16 kHz, as FreeSWITCH writes it), analysed by ``serve``'s own
background worker. Its transcript's segments are written to the catalog as the
transcription would write them (``Catalog.put_segments``), at each sentence's place.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

import pytest
from audio_samples import freeswitch_mp3
from servers import Server, serve
from speech_samples import conversation
from test_ui_browser import browser, open_page  # noqa: F401 - browser is a fixture
from test_ui_browser_signin import axe_violations
from ui_fixtures import (
    Uploaded,
    api_json,
    conversation_segments,
    transcribed,
    upload,
    wait_analysed,
)

from kzr_wsgi import DirectoryStore
from kzr_wsgi.transcribe.model import Segment

pytestmark = pytest.mark.slow

OPS = ("ops", "ops-pw")
#: A customer: its account only, and no right to share.
ACME = ("acme", "acme-pw")
UPLOADER = ("kazoo", "upload-pw")
T0 = 1767258000  # 2026-01-01T09:00:00Z


@dataclass
class Shop:
    server: Server
    root: Path
    uploads: dict[str, Uploaded]
    ids: dict[str, str]
    segments: list[Segment]

    def url(self, path: str = "/ui/") -> str:
        return self.server.url + path


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    tmp = tmp_path_factory.mktemp("ui-player")
    viewers = tmp / "viewers"
    viewers.write_text(f"{':'.join(OPS)} acct-acme share\n{':'.join(ACME)} acct-acme\n")
    root = tmp / "recordings"
    with serve(tmp, "--ui", "--viewer-file", str(viewers), "--basic-auth", ":".join(UPLOADER),
               "--workers", "1", "--threads", "4", root=root) as server:
        uploads = {u.call_id: u for u in [
            upload(server, "talk-1", conversation().read(), account_id="acct-acme", start=T0,
                   duration_ms="30000", **{"from": "+15557770001@acme.example"}),
            upload(server, "short-2", freeswitch_mp3(4.0, rate=8000, channels=1),
                   account_id="acct-acme", start=T0 + 60),
            upload(server, "short-3", freeswitch_mp3(3.0, rate=8000, channels=1),
                   account_id="acct-acme", start=T0 + 120),
        ]}
        ids = {}
        for call_id in uploads:
            [item] = api_json(server, f"/ui/api/recordings?q={call_id}", OPS)["items"]
            ids[call_id] = item["id"]
        segments = conversation_segments()
        catalog = DirectoryStore(root).catalog
        assert catalog is not None
        transcribed(catalog, ids["talk-1"], segments)
        wait_analysed(server, ids["talk-1"], OPS)
        yield Shop(server, root, uploads, ids, segments)


def access_actions(shop: Shop, wanted: set[str], timeout: float = 30) -> list[dict[str, object]]:
    """``kzr-wsgi audit --access --json`` once it holds every action in ``wanted`` (the
    log is written in batches, every few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run([sys.executable, "-m", "kzr_wsgi", "audit", "--access", "--json",
                              "--root", str(shop.root)], capture_output=True, text=True,
                             check=True, timeout=60).stdout
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
        if wanted <= {str(e["action"]) for e in events} or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def errors_of(page: object) -> list[str]:
    """The page's uncaught script errors, collected from now on."""
    seen: list[str] = []
    page.on("pageerror", lambda error: seen.append(str(error)))  # type: ignore[attr-defined]
    return seen


def audio_of(row: str) -> str:
    return f"document.querySelector('li.result[data-recording-id=\"{row}\"] audio')"


def find_by_a_word(page: object, shop: Shop, word: str) -> object:
    """Search ``word`` with the box; the one result, the call that said it."""
    page.wait_for_selector("body[data-loaded=true]")  # type: ignore[attr-defined]
    before = page.get_attribute("body", "data-generation")  # type: ignore[attr-defined]
    page.fill("input[name=q]", word)  # type: ignore[attr-defined]
    page.click("form#search button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_selector(  # type: ignore[attr-defined]
        f'body[data-loaded=true]:not([data-generation="{before}"])')
    # A word: the page searched what was said, and says so.
    searched = page.locator("#searched")  # type: ignore[attr-defined]
    assert searched.inner_text().startswith("Searched what was said for")
    assert page.locator("#search-other").inner_text() == "Search numbers and call ids instead"  # type: ignore[attr-defined]
    results = page.locator("li.result")  # type: ignore[attr-defined]
    assert results.count() == 1
    assert results.first.get_attribute("data-recording-id") == shop.ids["talk-1"]
    return results.first


def hear_from_the_snippet(page: object, shop: Shop, result: object) -> None:
    """Click the snippet: it plays from its segment, which is marked; 1.5x; seek by the
    waveform and the keys; the detail in words."""
    audio = audio_of(shop.ids["talk-1"])
    snippet = result.locator("button.snippet")  # type: ignore[attr-defined]
    assert snippet.locator("mark").all_inner_texts() == ["shipped"]
    heard = shop.segments[5]
    assert float(snippet.get_attribute("data-start")) == pytest.approx(heard.start)
    snippet.click()
    page.wait_for_function(  # type: ignore[attr-defined]
        f"() => {{ const a = {audio}; return a && !a.paused && a.readyState >= 2; }}",
        timeout=20000)
    now = page.evaluate(f"() => {audio}.currentTime")  # type: ignore[attr-defined]
    assert abs(now - heard.start) <= 1.0, (now, heard.start)
    current = result.locator('li.segment[aria-current="true"]')  # type: ignore[attr-defined]
    current.wait_for(timeout=5000)
    assert float(current.get_attribute("data-start")) == pytest.approx(heard.start)
    assert current.get_attribute("data-speaker") == "callee"
    # Two lanes from the peaks, named by the analysis's speakers.
    lanes = result.locator(".lanes .lane")  # type: ignore[attr-defined]
    lanes.first.wait_for(timeout=10000)
    assert lanes.all_inner_texts() == ["caller", "callee"]
    result.locator("select.speed").select_option("1.5")  # type: ignore[attr-defined]
    assert page.evaluate(f"() => {audio}.playbackRate") == 1.5  # type: ignore[attr-defined]
    # K pauses; a click a quarter of the way along the waveform seeks there.
    page.keyboard.press("k")  # type: ignore[attr-defined]
    assert page.evaluate(f"() => {audio}.paused")  # type: ignore[attr-defined]
    length = page.evaluate(f"() => {audio}.duration")  # type: ignore[attr-defined]
    wave = result.locator("canvas.wave")  # type: ignore[attr-defined]
    box = wave.bounding_box()
    wave.click(position={"x": box["width"] * 0.25, "y": box["height"] / 2})
    page.wait_for_function(  # type: ignore[attr-defined]
        f"() => !{audio}.seeking && Math.abs({audio}.currentTime - {length * 0.25}) < 0.5",
        timeout=10000)
    # The arrow keys move 5 s; J goes back 15 s (not before the start).
    page.keyboard.press("ArrowRight")  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        f"() => Math.abs({audio}.currentTime - {length * 0.25 + 5}) < 0.5", timeout=10000)
    page.keyboard.press("j")  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        f"() => Math.abs({audio}.currentTime - {max(0.0, length * 0.25 - 10)}) < 0.5",
        timeout=10000)
    shown = page.evaluate(f"() => {audio}.currentTime")  # type: ignore[attr-defined]
    assert result.locator(".player .time").inner_text() == (  # type: ignore[attr-defined]
        f"{int(shown) // 60}:{int(shown) % 60:02d} / {int(length) // 60}:{int(length) % 60:02d}")
    # The detail reads like a page: talk time per side, the raw metadata behind a toggle.
    facts = result.locator("dl.facts").inner_text()  # type: ignore[attr-defined]
    assert re.search(r"Talk time\s+caller \d:\d\d · callee \d:\d\d", facts), facts
    raw = result.locator("details.raw")  # type: ignore[attr-defined]
    assert not raw.locator("dl").is_visible()
    raw.locator("summary").click()
    assert raw.locator('dd[data-key="call_id"]').inner_text() == "talk-1"


def share_open_and_revoke(chromium: object, shop: Shop, result: object) -> str:
    """A link made with the page, for an hour; opened by a stranger (it plays, and opens
    nothing else); revoked from the page: 404 at once. Its token."""
    result.locator("select[name=expires_in]").select_option("1h")  # type: ignore[attr-defined]
    result.locator("button.make-link").click()  # type: ignore[attr-defined]
    field = result.locator("input.link")  # type: ignore[attr-defined]
    field.wait_for(timeout=10000)
    result.page.wait_for_function(  # type: ignore[attr-defined]
        "() => document.querySelector('input.link').value !== ''")
    link = field.input_value()
    assert link.startswith(shop.url("/ui/s/")), link  # the path, completed with the origin
    page = result.page  # type: ignore[attr-defined]
    page.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                   origin=shop.server.url)
    result.locator("button.copy-link").click()  # type: ignore[attr-defined]
    page.wait_for_function("() => document.querySelector('.made .note').textContent"
                           " === 'Copied.'")
    assert page.evaluate("() => navigator.clipboard.readText()") == link
    stranger = chromium.new_context()  # type: ignore[attr-defined]
    shared = stranger.new_page()
    broken = errors_of(shared)
    assert shared.goto(link).status == 200
    shared.wait_for_selector("body[data-loaded=true]")
    assert shared.locator("li.segment").count() == len(shop.segments)
    shared.locator(".lanes .lane").first.wait_for(timeout=10000)
    shared.locator("li.segment").nth(2).click()
    shared.wait_for_function(f"""() => {{ const a = document.getElementById('player');
        return !a.paused && a.currentTime >= {shop.segments[2].start - 1}; }}""", timeout=20000)
    assert abs(shared.evaluate("() => document.getElementById('player').currentTime")
               - shop.segments[2].start) <= 1.0
    token = link.rsplit("/", 1)[1]
    other = shop.ids["short-2"]
    for path in (f"/ui/s/{token}/{other}", f"/ui/s/{token}/api/recordings/{other}",
                 f"/ui/api/recordings/{other}/audio", f"/ui/api/recordings/{other}"):
        status = shared.evaluate("async (p) => (await fetch(p)).status", path)
        assert status in (401, 404), (path, status)
    revoke = result.locator("button.revoke")  # type: ignore[attr-defined]
    assert revoke.count() == 1
    revoke.click()
    revoke.wait_for(state="detached", timeout=10000)
    assert stranger.new_page().goto(link).status == 404
    assert broken == []
    stranger.close()
    return str(token)


def export_checked(page: object, shop: Shop, tmp_path: Path) -> None:
    """Every result of the first page ticked (three), exported as one ZIP: its entries
    and their bytes."""
    page.goto(shop.url())  # type: ignore[attr-defined]
    page.wait_for_selector("body[data-loaded=true]")  # type: ignore[attr-defined]
    for box in page.locator("li.result input.pick").all():  # type: ignore[attr-defined]
        box.check()
    assert page.locator("#export-selected").inner_text() == "Export selected (3)"  # type: ignore[attr-defined]
    with page.expect_download() as info:  # type: ignore[attr-defined]
        page.click("#export-selected")  # type: ignore[attr-defined]
    saved = tmp_path / "export.zip"
    info.value.save_as(saved)
    assert info.value.suggested_filename.endswith(".zip")
    with zipfile.ZipFile(saved) as archive:
        names = archive.namelist()
        audio_names = sorted(n for n in names if n.endswith(".mp3"))
        # The one transcribed recording's transcript comes as WebVTT beside the audio.
        [vtt] = [n for n in names if n.startswith("transcripts/")]
        assert vtt.endswith("_talk-1.vtt")
        assert sorted(names) == sorted([*audio_names, vtt, "manifest.csv", "manifest.json"])
        text = archive.read(vtt).decode()
        assert text.startswith("WEBVTT")
        assert all(segment.text in text for segment in shop.segments)
        by_call = {r["call_id"]: r for r in json.loads(archive.read("manifest.json"))}
        assert set(by_call) == set(shop.uploads)
        for call_id, sent in shop.uploads.items():
            [name] = [n for n in audio_names if n.endswith(f"_{call_id}.mp3")]
            assert archive.read(name) == sent.body
        assert len(io.BytesIO(archive.read("manifest.csv")).read().splitlines()) == 4


def test_find_by_a_word_hear_it_share_it_export_it(
        shop: Shop, browser: object, tmp_path: Path) -> None:  # noqa: F811
    page = open_page(browser, OPS, shop.url())
    broken = errors_of(page)
    result = find_by_a_word(page, shop, "shipped")
    hear_from_the_snippet(page, shop, result)
    token = share_open_and_revoke(browser, shop, result)
    export_checked(page, shop, tmp_path)
    # Signed out with the page's button.
    with page.expect_navigation():  # type: ignore[attr-defined]
        page.click("form#signout input[type=submit]")  # type: ignore[attr-defined]
    assert page.locator("input[name=password]").is_visible()  # type: ignore[attr-defined]
    assert broken == []
    page.context.close()  # type: ignore[attr-defined]
    wanted = {"signin", "play", "share_made", "share_used", "share_revoked", "export",
              "signout"}
    events = access_actions(shop, wanted)
    acts = {str(e["action"]) for e in events}
    assert wanted <= acts, acts
    exported = [e for e in events if e["action"] == "export"]
    assert exported[-1]["count"] == 3 and sorted(exported[-1]["ids"]) == sorted(shop.ids.values())
    assert any(e["action"] == "play" and shop.ids["talk-1"] in e["ids"] for e in events)
    assert all(token not in json.dumps(e) for e in events)


def open_recording(page: object, row: str) -> None:
    """Open a result and wait for its player's waveform and transcript."""
    item = page.locator(f'li.result[data-recording-id="{row}"]')  # type: ignore[attr-defined]
    item.locator("details.recording > summary").click()
    item.locator(".lanes .lane").first.wait_for(timeout=10000)
    item.locator("li.segment").first.wait_for(timeout=10000)


def test_export_everything_that_matches_without_the_right_to_share(
        shop: Shop, browser: object, tmp_path: Path) -> None:  # noqa: F811
    page = open_page(browser, ACME, shop.url("/ui/?q=order"))
    page.wait_for_selector("body[data-loaded=true]")  # type: ignore[attr-defined]
    row = shop.ids["talk-1"]
    assert page.eval_on_selector_all(  # type: ignore[attr-defined]
        "li.result", "items => items.map(li => li.dataset.recordingId)") == [row]
    open_recording(page, row)
    opened = page.locator(f'li.result[data-recording-id="{row}"]')  # type: ignore[attr-defined]
    assert opened.locator("details.raw").count() == 1
    assert opened.locator("section.sharing").count() == 0  # no share right, no share section
    with page.expect_download() as info:  # type: ignore[attr-defined]
        page.click("#export-all")  # type: ignore[attr-defined]
    saved = tmp_path / "all.zip"
    info.value.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        names = archive.namelist()
        [audio] = [n for n in names if n.endswith(".mp3")]
        vtt = "transcripts/" + audio.rsplit("/", 1)[-1].replace(".mp3", ".vtt")
        assert sorted(names) == sorted([audio, vtt, "manifest.csv", "manifest.json"])
        assert archive.read(audio) == shop.uploads["talk-1"].body
    assert "Exported" in page.locator("#export .note").inner_text()  # type: ignore[attr-defined]
    page.context.close()  # type: ignore[attr-defined]


def test_audio_refused_after_the_session_ended_shows_the_sign_in(
        shop: Shop, browser: object) -> None:  # noqa: F811
    page = open_page(browser, OPS, shop.url())
    page.wait_for_selector("body[data-loaded=true]")  # type: ignore[attr-defined]
    # Signed out elsewhere (another tab): this page's session is gone.
    ended = page.evaluate("""async () => {  // noqa: E501
        const csrf = document.querySelector('meta[name="kzr-csrf"]').content;
        const r = await fetch("signout", {method: "POST", headers: {"X-CSRF-Token": csrf},
                                          redirect: "manual"});
        return r.type; }""")  # type: ignore[attr-defined]
    assert ended == "opaqueredirect"
    # The result's own audio element (unopened: nothing else asks the API).
    page.evaluate(  # type: ignore[attr-defined]
        "() => { document.querySelector('li.result audio').play().catch(() => null); }")
    page.wait_for_selector("input[name=password]", timeout=15000)  # type: ignore[attr-defined]
    page.context.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("width", [1280, 375])
def test_every_page_passes_axe_and_fits(shop: Shop, browser: object, width: int) -> None:  # noqa: F811
    page = open_page(browser, None, shop.url(), viewport={"width": width, "height": 900})
    assert page.locator("input[name=username]").is_visible()  # type: ignore[attr-defined]
    pages = {"sign-in": page.url}  # type: ignore[attr-defined]
    found = {"sign-in": axe_violations(page)}
    fits = {"sign-in": page.evaluate("() => document.scrollingElement.scrollWidth")}  # type: ignore[attr-defined]
    page.context.close()  # type: ignore[attr-defined]
    page = open_page(browser, OPS, shop.url("/ui/?q=order"),
                     viewport={"width": width, "height": 900})
    page.wait_for_selector("body[data-loaded=true]")  # type: ignore[attr-defined]
    found["search"] = axe_violations(page)
    fits["search"] = page.evaluate("() => document.scrollingElement.scrollWidth")  # type: ignore[attr-defined]
    open_recording(page, shop.ids["talk-1"])
    found["recording"] = axe_violations(page)
    fits["recording"] = page.evaluate("() => document.scrollingElement.scrollWidth")  # type: ignore[attr-defined]
    # Every control of the player is reachable by keyboard and named.
    for selector in ("canvas.wave", "button.play", "select.speed", "button.skip"):
        control = page.locator(f"li.result {selector}").first  # type: ignore[attr-defined]
        control.focus()
        assert page.evaluate("() => document.activeElement.matches('li.result *')")  # type: ignore[attr-defined]
    made = page.evaluate("""async (id) => {  // the link the share page test opens
        const csrf = document.querySelector('meta[name="kzr-csrf"]').content;
        const r = await fetch(`api/recordings/${id}/shares`, {method: "POST",
          headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
          body: JSON.stringify({expires_in: "1h"})});
        return (await r.json()).url; }""", shop.ids["talk-1"])  # type: ignore[attr-defined]
    page.context.close()  # type: ignore[attr-defined]
    context = browser.new_context(viewport={"width": width, "height": 900})  # type: ignore[attr-defined]
    shared = context.new_page()
    shared.goto(shop.url(made))
    shared.wait_for_selector("body[data-loaded=true]")
    shared.locator(".lanes .lane").first.wait_for(timeout=10000)
    pages["share"] = shared.url
    found["share"] = axe_violations(shared)
    fits["share"] = shared.evaluate("() => document.scrollingElement.scrollWidth")
    context.close()
    assert found == {"sign-in": [], "search": [], "recording": [], "share": []}
    assert all(value <= width for value in fits.values()), fits


def sent_listing(page: object, url: str) -> dict[str, list[str]]:
    """The API parameters the page sends for its own ``url``."""
    with page.expect_request(lambda r: "/ui/api/recordings?" in r.url) as info:  # type: ignore[attr-defined]
        page.goto(url)  # type: ignore[attr-defined]
    page.wait_for_selector("body[data-loaded=true]")  # type: ignore[attr-defined]
    return parse_qs(urlsplit(info.value.url).query)


def test_the_box_and_the_dates_as_the_page_sends_them(shop: Shop, browser: object) -> None:  # noqa: F811
    zone = ZoneInfo("America/New_York")
    page = open_page(browser, OPS, shop.url(), timezone_id="America/New_York")
    page.wait_for_selector("body[data-loaded=true]")  # type: ignore[attr-defined]
    for typed, kind in (("+1 (555) 777-0001", "q"), ("5557770001", "q"),
                        ("alice@acme.example", "q"), ("a1b2@10.0.0.1", "q"),
                        ("cancel my order", "text"), ("Morgan", "text"),
                        ("acme-call-1", "text")):
        sent = sent_listing(page, shop.url("/ui/?" + urlencode({"q": typed})))
        assert sent == {kind: [typed]}, typed
        note = page.locator("#searched").inner_text()  # type: ignore[attr-defined]
        assert note.startswith("Searched numbers and call ids for" if kind == "q"
                               else "Searched what was said for"), note
    # The other kind, chosen with one click, is kept in the page's URL.
    sent_listing(page, shop.url("/ui/?q=Morgan"))
    with page.expect_request(lambda r: "/ui/api/recordings?" in r.url) as info:  # type: ignore[attr-defined]
        page.click("#search-other")  # type: ignore[attr-defined]
    assert parse_qs(urlsplit(info.value.url).query) == {"q": ["Morgan"]}
    # Presets are midnights in the browser's zone, sent with its offset.
    today = datetime.now(zone).date()
    for preset, days in (("today", 0), ("7d", 6), ("30d", 29)):
        sent = sent_listing(page, shop.url(f"/ui/?range={preset}"))
        midnight = datetime.combine(today - timedelta(days=days), datetime.min.time(), zone)
        assert sent == {"since": [midnight.isoformat()]}, preset
    sent = sent_listing(page, shop.url("/ui/?range=custom&since=2026-01-01&until=2026-01-31"))
    assert sent == {"since": ["2026-01-01T00:00:00-05:00"], "until": ["2026-01-31T23:59:59-05:00"]}
    assert page.locator("#since").is_visible()  # type: ignore[attr-defined]
    # Without the custom range its dates are neither shown nor sent.
    sent = sent_listing(page, shop.url("/ui/?range=7d&since=2026-01-01&flag=one_way_audio"))
    assert set(sent) == {"since", "flag"} and sent["flag"] == ["one_way_audio"]
    assert not page.locator("#since").is_visible()  # type: ignore[attr-defined]
    options = page.eval_on_selector_all(  # type: ignore[attr-defined]
        "#flag option", "os => os.map(o => [o.value, o.textContent])")
    assert dict(options)["one_way_audio"] == "One-way audio"
    page.context.close()  # type: ignore[attr-defined]
