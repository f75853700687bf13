"""Take the manual's pictures of the page in headless Chromium over a small, varied store.

    python benchmarks/ui_screenshot.py [--out docs]

Starts ``kzr-wsgi serve --root TMP --ui`` on 127.0.0.1, uploads LAME-made recordings
from three accounts (some empty, one an HTML error page saved as ``.mp3``, so flagged
rows show) and a stereo conversation spoken by espeak-ng, whose transcript is written to
the catalog as the transcription writes it; waits for the background worker's analysis
(the waveform), signs in through the form, searches a word said in the call, opens it
from its snippet, and saves ``ui.png`` (1280 px wide), ``ui-phone.png`` (375 px) and
``ui-share.png`` (a share link's page). Everything it starts is stopped, and its folder
removed, at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE.parent)]

from audio_samples import freeswitch_mp3  # noqa: E402
from servers import serve  # noqa: E402  (tests/servers.py)
from speech_samples import conversation  # noqa: E402
from ui_fixtures import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    api_json,
    conversation_segments,
    upload,
    wait_analysed,
)

from kzr_wsgi import DirectoryStore  # noqa: E402

OPS = ("ops", "ops-pw")
UPLOADER = ("kazoo", "upload-pw")

CALLS = [
    ("+14155550123", "+14155550199", "Front desk", 62.0),
    ("+442071234567", "+14155550101", "Acme Sales", 8.5),
    ("+14155550177", "+14155550123", "Dr. Müller", 134.0),
    ("+33142685300", "+14155550102", "Support FR", 21.0),
    ("+14155550145", "+14155550110", "Night line", 4.0),
    ("+14155550190", "+14155550120", "<b>Mallory</b>", 12.0),
]


#: The word searched for, and the sentence whose snippet is clicked.
WORD, SENTENCE = "order", 3


def store(server: object, root: Path) -> str:
    """Upload the calls and the conversation, write its transcript; its row id."""
    t0 = 1772442000  # 2026-03-02T09:00:00Z
    for i, (src, dst, caller, seconds) in enumerate(CALLS):
        body = freeswitch_mp3(seconds, rate=8000, channels=1)
        upload(server, f"{i:02x}7f3a9c-5b1d-4e8a@10.1.0.{i}", body,  # type: ignore[arg-type]
               account_id=("acct-acme", "acct-globex", "acct-initech")[i % 3],
               start=t0 + i * 1800, caller_id_name=caller, caller_id_number=src,
               **{"from": f"{src}@pbx.example", "to": f"{dst}@pbx.example",
                  "duration_ms": str(int(seconds * 1000))})
    upload(server, "9c1e-empty@10.1.0.9", b"", account_id="acct-acme",  # type: ignore[arg-type]
           start=t0 + 13000, caller_id_name="Reception")
    upload(server, "77ab-html@10.1.0.8", b"<html><body>502 Bad Gateway</body></html>",  # type: ignore[arg-type]
           account_id="acct-globex", start=t0 + 14000, caller_id_name="IVR",
           duration_ms="30000")
    upload(server, "5d2e-order@10.1.0.7", conversation().read(),  # type: ignore[arg-type]
           account_id="acct-acme", start=t0 + 15000, caller_id_name="Morgan",
           caller_id_number="+14155550188", duration_ms="31000",
           **{"from": "+14155550188@pbx.example", "to": "+14155550100@pbx.example"})
    [item] = api_json(server, "/ui/api/recordings?q=5d2e-order%4010.1.0.7", OPS)["items"]  # type: ignore[arg-type]
    catalog = DirectoryStore(root).catalog
    assert catalog is not None
    catalog.put_segments(item["id"], conversation_segments())
    wait_analysed(server, item["id"], OPS)  # type: ignore[arg-type]
    return str(item["id"])


def shoot(browser: object, origin: str, row: str, out: Path, width: int) -> str:
    """Sign in, find the call by a word, play it from a snippet; the page's picture."""
    context = browser.new_context(  # type: ignore[attr-defined]
        viewport={"width": width, "height": 900 if width > 500 else 800},
        timezone_id="Europe/Berlin", locale="en-GB")
    page = context.new_page()
    page.goto(origin + "/ui/")
    page.fill("input[name=username]", OPS[0])
    page.fill("input[name=password]", OPS[1])
    with page.expect_navigation():
        page.click("form.signin button[type=submit]")
    page.goto(f"{origin}/ui/?q={WORD}&range=")
    page.wait_for_selector("body[data-loaded=true]")
    result = page.locator(f'li.result[data-recording-id="{row}"]')
    result.locator("button.snippet").first.click()
    result.locator('li.segment[aria-current="true"]').wait_for()
    result.locator(".lanes .lane").first.wait_for()
    page.wait_for_timeout(1500)
    page.keyboard.press("k")  # paused, so the picture shows one moment
    result.locator("button.make-link").click()
    page.wait_for_function("() => document.querySelector('input.link').value !== ''")
    link = result.locator("input.link").input_value()
    page.screenshot(path=str(out), full_page=True)
    context.close()
    return str(link)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs",
                        help="the folder the pictures are written to")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kzr-ui-shot-") as name:
        tmp = Path(name)
        viewers = tmp / "viewers"
        viewers.write_text(f"{':'.join(OPS)} * share\n")
        root = tmp / "recordings"
        with serve(tmp, "--ui", "--viewer-file", str(viewers), "--basic-auth",
                   ":".join(UPLOADER), root=root) as server:
            row = store(server, root)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                link = shoot(browser, server.url, row, args.out / "ui.png", 1280)
                shoot(browser, server.url, row, args.out / "ui-phone.png", 375)
                context = browser.new_context(viewport={"width": 1000, "height": 700},
                                              timezone_id="Europe/Berlin", locale="en-GB")
                page = context.new_page()
                page.goto(link)
                page.wait_for_selector("body[data-loaded=true]")
                page.locator(".lanes .lane").first.wait_for()
                page.screenshot(path=str(args.out / "ui-share.png"), full_page=True)
                browser.close()
    print(f"wrote {args.out / 'ui.png'}, {args.out / 'ui-phone.png'}, {args.out / 'ui-share.png'}")


if __name__ == "__main__":
    main()
