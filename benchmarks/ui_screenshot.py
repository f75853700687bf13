"""Take docs/ui.png: the search page in headless Chromium over a small, varied store.

    python benchmarks/ui_screenshot.py [--out docs/ui.png]

Starts ``kzr-wsgi serve --root TMP --ui`` on 127.0.0.1, uploads a dozen LAME-made
recordings from three accounts (some empty, one an HTML error page saved as ``.mp3``,
so flagged rows show), opens the page as a viewer, opens one result, and saves the
screenshot. Everything it starts is stopped, and its folder removed, at the end.
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
from ui_fixtures import CHROMIUM, CHROMIUM_ARGS, upload  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "ui.png")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="kzr-ui-shot-") as name:
        tmp = Path(name)
        t0 = 1772442000  # 2026-03-02T09:00:00Z
        with serve(tmp, "--ui", "--viewer", ":".join(OPS), "--basic-auth",
                   ":".join(UPLOADER)) as server:
            for i, (src, dst, caller, seconds) in enumerate(CALLS):
                body = freeswitch_mp3(seconds, rate=8000, channels=1)
                upload(server, f"{i:02x}7f3a9c-5b1d-4e8a@10.1.0.{i}", body,
                       account_id=("acct-acme", "acct-globex", "acct-initech")[i % 3],
                       start=t0 + i * 1800, caller_id_name=caller, caller_id_number=src,
                       **{"from": f"{src}@pbx.example", "to": f"{dst}@pbx.example",
                          "duration_ms": str(int(seconds * 1000))})
            upload(server, "9c1e-empty@10.1.0.9", b"", account_id="acct-acme",
                   start=t0 + 13000, caller_id_name="Reception")
            upload(server, "77ab-html@10.1.0.8", b"<html><body>502 Bad Gateway</body></html>",
                   account_id="acct-globex", start=t0 + 14000, caller_id_name="IVR",
                   duration_ms="30000")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                context = browser.new_context(
                    viewport={"width": 1280, "height": 820}, timezone_id="Europe/Berlin",
                    locale="en-GB")
                page = context.new_page()
                # Signed in through the form, as a viewer does.
                page.goto(server.url + "/ui/")
                page.fill("input[name=username]", OPS[0])
                page.fill("input[name=password]", OPS[1])
                with page.expect_navigation():
                    page.click("form.signin button[type=submit]")
                page.wait_for_selector("body[data-loaded=true]")
                page.locator("li.result summary").nth(3).click()
                page.wait_for_timeout(300)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
