"""The API's ``text=``: search by words through the page's JSON API, in process."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ui_fixtures import ACME, OPS, UIWorld

from kzr_wsgi.transcribe.model import Segment
from kzr_wsgi.ui.api import MAX_VALUE, parse_filters

T0 = 1767225600  # 2026-01-01T00:00:00Z


@pytest.fixture
def world(tmp_path: Path) -> UIWorld:
    w = UIWorld(tmp_path / "rec")
    said = [("acme-1", "acct-acme", ["hello", "I want to cancel my subscription"]),
            ("beta-1", "acct-beta", ["cancel my subscription now"]),
            ("acme-2", "acct-acme", ["please cancel", "the subscription"]),
            ("acme-3", "acct-acme", ["nothing said"])]
    for n, (call_id, account, texts) in enumerate(said):
        row = w.upload(call_id, account_id=account, start=T0 + n)
        assert w.catalog.put_segments(row["id"], [
            Segment(2.0 * i, 2.0 * i + 1.0, t, "right" if i else "left")
            for i, t in enumerate(texts)])
    return w


def test_text_finds_by_words_and_items_carry_their_matches(world: UIWorld) -> None:
    assert world.ids(text="cancel subscription") == ["acme-2", "beta-1", "acme-1"]
    assert world.ids(text='"my subscription"') == ["beta-1", "acme-1"]
    items = world.list(OPS, [("text", "Subscription"), ("call_id", "acme-1")])["items"]
    assert items[0]["matches"] == [{"start": 2.0, "end": 3.0, "speaker": "callee",
                                    "snippet": "I want to cancel my subscription",
                                    "highlights": [[20, 32]]}]
    assert "matches" not in world.list(OPS, [("call_id", "acme-1")])["items"][0]
    assert world.ids(text="* - :") == ["acme-3", "acme-2", "beta-1", "acme-1"]


def test_a_scoped_viewer_never_sees_another_accounts_match(world: UIWorld) -> None:
    assert world.ids(ACME, text="cancel") == ["acme-2", "acme-1"]
    assert world.ids(ACME, text='"subscription now"') == []


def test_a_cursor_is_bound_to_its_words_and_pages_once(world: UIWorld) -> None:
    first = world.list(OPS, [("text", "cancel"), ("limit", "1")])
    seen = [i["call_id"] for i in first["items"]]
    reply = world.get("/api/recordings?text=hello&limit=1&cursor=" + first["next"])
    assert reply.status_code == 400 and reply.json["parameter"] == "cursor"
    page = first
    while page["next"]:
        row = world.upload(f"late-{len(seen)}", start=T0 + 100)  # arrives while paging
        world.catalog.put_segments(row["id"], [Segment(0, 1, "cancel", "mono")])
        page = world.list(OPS, [("text", "cancel"), ("limit", "1"), ("cursor", page["next"])])
        seen += [i["call_id"] for i in page["items"]]
    assert seen == ["acme-2", "beta-1", "acme-1"]


def test_text_follows_the_parameter_rules() -> None:
    assert parse_filters([("text", 'cancel "my sub"')]).text == 'cancel "my sub"'
    assert parse_filters([("text", "")]).text is None
    for bad in ([("text", "a"), ("text", "b")], [("text", "x" * (MAX_VALUE + 1))],
                [("text", "a\nb")]):
        with pytest.raises(ValueError, match="^text: "):
            parse_filters(bad)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80))
def test_any_text_is_answered_without_a_5xx(world: UIWorld, text: str) -> None:
    reply = world.get("/api/recordings", query_string={"text": text})
    bad = any(unicodedata.category(c) == "Cc" for c in text)
    assert reply.status_code == (400 if bad else 200), reply.text
    if not bad:
        for item in reply.json["items"]:
            assert all(0 <= a < b <= len(m["snippet"])
                       for m in item.get("matches", []) for a, b in m["highlights"])
