"""``POST {ui}/api/export`` and ``kzr-wsgi export``: what the ZIP holds, for whom, how many."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from ui_fixtures import ACME, BOTH, OPS, Browser, UIWorld, basic

from kzr_wsgi import cli
from kzr_wsgi.ui import SearchUI

T0 = 1767258000


@pytest.fixture
def world(tmp_path: Path) -> UIWorld:
    world = UIWorld(tmp_path / "rec")
    world.upload("acme-1", b"\xff\xfb" + b"1" * 300, start=T0, caller_id_name="=HYPERLINK(1)")
    world.upload("acme-2", b"\xff\xfb" + b"2" * 300, start=T0 + 60)
    world.upload("beta-1", b"\xff\xfb" + b"3" * 300, start=T0 + 120, account_id="acct-beta")
    return world


def zip_of(data: bytes) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    return archive


def audio_names(archive: zipfile.ZipFile) -> list[str]:
    return sorted(n for n in archive.namelist() if n.endswith(".mp3"))


def test_a_script_exports_chosen_ids(world: UIWorld) -> None:
    ids = [world._sync(c)["id"] for c in ("acme-1", "beta-1")]
    reply = world.client.post("/ui/api/export", headers=basic(OPS.user, OPS.password),
                              json={"ids": ids})
    assert reply.status_code == 200 and reply.mimetype == "application/zip"
    assert reply.headers["Content-Disposition"].startswith('attachment; filename="recordings-')
    archive = zip_of(reply.data)
    names = audio_names(archive)
    assert names == ["20260101T090000Z_1001_1002_acme-1.mp3",
                     "20260101T090200Z_1001_1002_beta-1.mp3"]
    assert archive.read(names[0]) == b"\xff\xfb" + b"1" * 300
    manifest = json.loads(archive.read("manifest.json"))
    assert [m["call_id"] for m in manifest] == ["acme-1", "beta-1"]
    assert manifest[0]["audio_url"] == names[0] and "location" not in manifest[0]
    rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode("utf-8-sig"))))
    assert rows[0]["caller_id_name"] == "'=HYPERLINK(1)"  # never a formula


def test_the_page_exports_what_a_search_matches(world: UIWorld) -> None:
    """The page posts a form (its download is a navigation) with the session's token."""
    browser = Browser(world.ui)
    browser.sign_in("ops", "ops-pw")
    form = {"account_id": "acct-acme", "q": "", "flagged": "", "csrf": browser.csrf()}
    reply = browser.request("POST", "/api/export", data=form)
    assert reply.status_code == 200
    assert audio_names(zip_of(reply.data)) == ["20260101T090000Z_1001_1002_acme-1.mp3",
                                               "20260101T090100Z_1001_1002_acme-2.mp3"]
    del form["csrf"]
    assert browser.request("POST", "/api/export", data=form).status_code == 403


def test_a_scoped_viewer_s_export_holds_its_accounts_only(world: UIWorld) -> None:
    auth = basic(ACME.user, ACME.password)
    everything = world.client.post("/ui/api/export", headers=auth, json={"filters": {}})
    assert [n.rsplit("_", 1)[1] for n in audio_names(zip_of(everything.data))] == [
        "acme-1.mp3", "acme-2.mp3"]
    beta = world.client.post("/ui/api/export", headers=auth,
                             json={"filters": {"account_id": "acct-beta"}})
    assert audio_names(zip_of(beta.data)) == []
    other = world.client.post("/ui/api/export", headers=auth,
                              json={"ids": [world._sync("beta-1")["id"]]})
    assert other.status_code == 404
    both = world.client.post("/ui/api/export", headers=basic(BOTH.user, BOTH.password),
                             json={"filters": {"flag": [], "q": "acme-2"}})
    assert [n.rsplit("_", 1)[1] for n in audio_names(zip_of(both.data))] == ["acme-2.mp3"]


def test_past_export_max_is_a_clear_400(world: UIWorld) -> None:
    ui = SearchUI(world.catalog, world.store, viewers=world.viewers, export_max=2, access=None)
    from werkzeug.test import Client

    client = Client(ui)
    auth = basic(OPS.user, OPS.password)
    reply = client.post("/ui/api/export", headers=auth, json={"filters": {}})
    assert reply.status_code == 400
    assert "more than 2 recordings match" in reply.json["error"]
    ids = [world._sync(c)["id"] for c in ("acme-1", "acme-2", "beta-1")]
    assert client.post("/ui/api/export", headers=auth, json={"ids": ids}).status_code == 400
    assert client.post("/ui/api/export", headers=auth, json={"ids": ids[:2]}).status_code == 200


@pytest.mark.parametrize("body, parameter", [
    ({"filters": {"limit": "5"}}, "limit"), ({"filters": {"cursor": "x"}}, "cursor"),
    ({"filters": {"nope": "1"}}, "nope"), ({"filters": {"since": "yesterday"}}, "since"),
    ({"ids": "abc"}, "ids"), ({"ids": [], "filters": {}}, "body"), ([], "body"),
], ids=["limit", "cursor", "unknown", "bad-date", "ids-not-list", "both", "not-object"])
def test_a_bad_export_request_is_400_naming_it(
        world: UIWorld, body: object, parameter: str) -> None:
    reply = world.client.post("/ui/api/export", headers=basic(OPS.user, OPS.password),
                              json=body)
    assert reply.status_code == 400 and reply.json["parameter"] == parameter


def test_kzr_wsgi_export_writes_the_same_zip(world: UIWorld, tmp_path: Path) -> None:
    out = tmp_path / "month.zip"
    runner = CliRunner()
    result = runner.invoke(cli.main, ["export", "--out", str(out), "--root", str(world.root),
                                      "--account", "acct-acme", "--since", "2026-01-01",
                                      "--until", "2026-01-31"])
    assert result.exit_code == 0, result.output
    assert "exported 2 recording(s)" in result.output
    with zipfile.ZipFile(out) as archive:
        assert [n.rsplit("_", 1)[1] for n in audio_names(archive)] == ["acme-1.mp3",
                                                                       "acme-2.mp3"]
        assert archive.read(audio_names(archive)[1]) == b"\xff\xfb" + b"2" * 300
    refused = runner.invoke(cli.main, ["export", "--out", str(tmp_path / "x.zip"), "--root",
                                       str(world.root), "--export-max", "2"])
    assert refused.exit_code != 0 and "more than 2 recordings match" in refused.output
    assert not (tmp_path / "x.zip").exists()
    by_id = runner.invoke(cli.main, ["export", "--out", str(tmp_path / "one.zip"), "--root",
                                     str(world.root), "--id", world._sync("beta-1")["id"]])
    assert by_id.exit_code == 0, by_id.output
    with zipfile.ZipFile(tmp_path / "one.zip") as archive:
        assert [n.rsplit("_", 1)[1] for n in audio_names(archive)] == ["beta-1.mp3"]
