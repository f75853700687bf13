"""The access log: what each act writes, batched writes, retention, S3, ``audit --access``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from s3server import aws_env, moto_endpoint, s3_bucket  # noqa: F401 - fixtures
from ui_fixtures import OPS, Browser, UIWorld, basic
from werkzeug.test import Client

from kzr_wsgi import cli
from kzr_wsgi.housekeeping.housekeeper import jobs_for
from kzr_wsgi.stores.state import DiskState
from kzr_wsgi.ui import Viewer
from kzr_wsgi.ui.access import AccessAction, AccessLog, access_event, event_line

T0 = 1767258000
SHARER = Viewer("sharer", "sharer-pw", None, share=True)


@pytest.fixture
def world(tmp_path: Path) -> UIWorld:
    return UIWorld(tmp_path / "rec", viewers=(OPS, SHARER))


def written(world: UIWorld) -> list[dict[str, Any]]:
    access = world.ui.access
    assert access is not None
    access.flush()
    return list(access.read())


def test_each_act_is_in_the_log_once(world: UIWorld) -> None:
    row = world.upload("c-1", start=T0)
    other = world.upload("c-2", start=T0 + 60)
    browser = Browser(world.ui, address="192.0.2.8")
    browser.sign_in("sharer", "wrong-password")
    browser.sign_in("sharer", "sharer-pw")
    audio = f"/api/recordings/{row['id']}/audio"
    for ranged in ("bytes=0-", "bytes=100-", "bytes=200-299", "bytes=0-"):
        assert browser.get(audio, headers={"Range": ranged}).status_code == 206
    browser.request("HEAD", audio, headers={"Range": "bytes=0-"})
    assert browser.get(audio + "?download=1").status_code == 200
    token = browser.csrf()
    exported = browser.request("POST", "/api/export", data={
        "account_id": "acct-acme", "since": "2026-01-01", "csrf": token})
    assert exported.status_code == 200
    made = browser.request("POST", f"/api/recordings/{row['id']}/shares",
                           headers={"X-CSRF-Token": token}, json={"expires_in": "1h"}).json
    stranger = Client(world.ui)
    assert stranger.get(made["url"]).status_code == 200
    for _ in range(3):
        stranger.get(made["url"] + "/audio", headers={"Range": "bytes=0-"})
    browser.request("DELETE", f"/api/shares/{made['id']}", headers={"X-CSRF-Token": token})
    browser.request("POST", "/signout", data={"csrf": token})
    events = written(world)
    actions = [e["action"] for e in events]
    assert actions == ["signin_failed", "signin", "play", "download", "export", "share_made",
                       "share_used", "play", "share_revoked", "signout"]
    by_action = {e["action"]: e for e in events}
    assert all(e["address"] == "192.0.2.8" for e in events if e["via"] != "share")
    assert by_action["signin_failed"]["viewer"] == "sharer"
    assert by_action["play"]["ids"] == [row["id"]] and by_action["play"]["viewer"] == "sharer"
    export = by_action["export"]
    assert export["count"] == 2 and sorted(export["ids"]) == sorted([row["id"], other["id"]])
    assert export["filters"] == ["account_id", "since"]
    share_play = [e for e in events if e["action"] == "play"][1]
    assert share_play["via"] == "share" and share_play["share_id"] == made["id"]
    text = json.dumps(events)
    for secret in ("wrong-password", "sharer-pw", "acct-acme", "2026-01-01",
                   made["url"].rsplit("/", 1)[1]):
        assert secret not in text  # passwords, filter values, the token: never written
    # And nothing else: a Basic script's every request is no sign-in.
    world.client.get("/ui/api/recordings", headers=basic("ops", "ops-pw"))
    assert len(written(world)) == len(events)


def test_writes_are_batched(tmp_path: Path) -> None:
    log = AccessLog(DiskState(tmp_path / ".kzr"), flush_every=3600)
    for n in range(250):
        log.record(access_event(AccessAction.PLAY, viewer="ops", address="192.0.2.1",
                                ids=[f"r{n}"]))
    assert not (tmp_path / ".kzr" / "access").exists()  # queued, not yet written
    assert log.flush() == 250
    assert log.batches == 1
    [day] = list((tmp_path / ".kzr" / "access").iterdir())
    assert len(day.read_text().splitlines()) == 250
    assert oct(day.stat().st_mode & 0o777) == "0o640"
    assert log.flush() == 0 and log.batches == 1


def test_a_full_batch_is_written_without_waiting(tmp_path: Path) -> None:
    log = AccessLog(DiskState(tmp_path / ".kzr"), flush_every=3600, max_batch=10)
    for n in range(10):
        log.record(access_event(AccessAction.PLAY, viewer="ops", address=None, ids=[str(n)]))
    import time

    deadline = time.monotonic() + 10
    while log.batches == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log.batches == 1 and len(list(log.read())) == 10


def test_retention_removes_old_days_and_reading_filters(tmp_path: Path) -> None:
    log = AccessLog(DiskState(tmp_path / ".kzr"), flush_every=3600)
    now = datetime.now(timezone.utc)
    for days, viewer, rec in ((400, "old", "r1"), (10, "ops", "r2"), (0, "acme", "r2")):
        log.record(access_event(AccessAction.DOWNLOAD, viewer=viewer, address="192.0.2.1",
                                ids=[rec], at=now - timedelta(days=days)))
    log.flush()
    assert [e["viewer"] for e in log.read(viewer=None, recording="r2")] == ["ops", "acme"]
    assert [e["viewer"] for e in log.read(since=now - timedelta(days=1))] == ["acme"]
    [job] = [j for j in jobs_for(_Store(tmp_path), None, ui=_UI(log),
                                 access_retention=timedelta(days=365))
             if j.name == "access-prune"]
    assert job.run().startswith("1 day(s) of the access log older than 1y removed")
    assert [e["viewer"] for e in log.read()] == ["ops", "acme"]


class _Store:
    """Just what jobs_for asks of a store: its buckets (none)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def buckets(self) -> tuple[()]:
        return ()


class _UI:
    def __init__(self, access: AccessLog) -> None:
        self.access = access

    def sweep(self) -> str:
        return "swept"


def test_the_log_in_a_bucket(s3_bucket: tuple[Any, str], moto_endpoint: str) -> None:  # noqa: F811
    from test_s3_store import store_for

    store = store_for(s3_bucket, moto_endpoint)
    log = AccessLog(store.state(), flush_every=3600)
    for n in range(3):
        log.record(access_event(AccessAction.PLAY, viewer="ops", address="192.0.2.1",
                                ids=[f"r{n}"]))
    log.flush()
    log.record(access_event(AccessAction.SIGNIN, viewer="acme", address="192.0.2.2",
                            at=datetime.now(timezone.utc) - timedelta(days=500)))
    log.flush()
    client, bucket = s3_bucket
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="kazoo/.kzr/access/")[
        "Contents"]]
    assert len(keys) == 2 and all(k.endswith(".jsonl") for k in keys)
    assert [e["action"] for e in log.read()] == ["signin", "play", "play", "play"]
    assert log.prune(datetime.now(timezone.utc) - timedelta(days=365)) == 1
    assert [e["ids"] for e in log.read(viewer="ops")] == [["r0"], ["r1"], ["r2"]]


def test_audit_access_prints_and_filters(world: UIWorld) -> None:
    row = world.upload("c-1", start=T0)
    browser = Browser(world.ui, address="192.0.2.9")
    browser.sign_in("sharer", "sharer-pw")
    browser.get(f"/api/recordings/{row['id']}/audio")
    written(world)
    runner = CliRunner()
    result = runner.invoke(cli.main, ["audit", "--access", "--root", str(world.root),
                                      "--id", row["id"]])
    assert result.exit_code == 0, result.output
    [line] = result.output.splitlines()
    assert "play" in line and "sharer" in line and "192.0.2.9" in line and row["id"] in line
    result = runner.invoke(cli.main, ["audit", "--access", "--root", str(world.root),
                                      "--viewer", "sharer", "--json"])
    assert [json.loads(x)["action"] for x in result.output.splitlines()] == ["signin", "play"]
    refused = runner.invoke(cli.main, ["audit", "--root", str(world.root), "--viewer", "x"])
    assert refused.exit_code == 2 and "--viewer and --id go with --access" in refused.output


def test_event_lines_escape_what_a_client_typed() -> None:
    event = access_event(AccessAction.SIGNIN_FAILED, viewer="evil\x1b[2Jname\n", address=None)
    line = event_line(event)
    assert "\x1b" not in line and "\n" not in line and "signin_failed" in line
