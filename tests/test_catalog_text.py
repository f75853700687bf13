"""Search by words through the catalog, the same cases on SQLite and on a real PostgreSQL:
the grammar against a plain-Python reference, AND across segments, a phrase within one,
every other filter, paging while rows arrive, matches and snippets, scopes, removal, and
the SQLite files' bytes after an erase."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_catalog import T0, sidecar
from test_catalog import catalog as catalog  # the fixture: an empty catalog of each kind
from test_catalog_words import CORPUS, QUERIES, python_matches

from kzr_wsgi.catalog import Catalog, Query, open_catalog
from kzr_wsgi.catalog.search import micros
from kzr_wsgi.catalog.text import (
    DEFAULT_SPEAKERS,
    default_speaker,
    matches,
    part_name,
    recording_matches,
    segment_key,
)
from kzr_wsgi.catalog.textplans import SQLitePlans, run_plan
from kzr_wsgi.catalog.words import index_text, parse_query
from kzr_wsgi.transcribe.model import Segment

pytest_plugins = ["pgserver"]

ACCOUNTS = ("acct-a", "acct-b", "acct-c")


def segs(*texts: str, channel: str = "left") -> list[Segment]:
    """Segments one after the other, two seconds each."""
    return [Segment(2.0 * i, 2.0 * i + 1.5, t, channel) for i, t in enumerate(texts)]


def add(catalog: Catalog, call_id: str, texts: list[str] | None, *, days: float = 0,
        **kw: Any) -> str:
    """A recording ``days`` before T0 with these segments (None: not transcribed)."""
    row = catalog.add(sidecar(call_id, sha=f"{abs(hash(call_id)):064x}",
                              start=T0 - timedelta(days=days), **kw))
    if texts is not None:
        assert catalog.put_segments(row.id, segs(*texts))
    return row.id


@pytest.fixture
def corpus(catalog: Catalog) -> Catalog:
    """The word tests' corpus: each recording a row (spread over months, so SQLite
    has several FTS5 tables), with its segments."""
    for n, (rid, texts) in enumerate(CORPUS.items()):
        add(catalog, rid, texts, days=n * 3.7, fields={"account_id": ACCOUNTS[n % 3]})
    return catalog


def found(catalog: Catalog, text: str, **kw: Any) -> set[str]:
    return {r.call_id or "" for r in catalog.iter_search(Query(text=text, limit=7, **kw))}


@pytest.mark.parametrize("typed", QUERIES)
def test_the_grammar_finds_what_python_finds(corpus: Catalog, typed: str) -> None:
    assert found(corpus, typed) == python_matches(parse_query(typed))


@pytest.mark.parametrize("typed", [q for q in QUERIES if " " in q or '"' in q])
def test_each_sqlite_plan_alone_finds_the_same_page(tmp_path: Path, typed: str) -> None:
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    try:
        for n, (rid, texts) in enumerate(CORPUS.items()):
            add(catalog, rid, texts, days=n * 3.7)
        query, text = Query(text=typed, limit=5), parse_query(typed)
        conn = catalog._connection()
        plans = catalog._text.plans
        assert isinstance(plans, SQLitePlans)
        pages = [run_plan(plan(conn, query, text, catalog.max_seq()))
                 for plan in (plans.by_words, plans.in_order)]
        assert pages[0] == pages[1]
        everything = sorted(python_matches(text))
        assert len(pages[0]) == min(len(everything), 6)
    finally:
        catalog.close()


def test_words_and_across_segments_a_phrase_within_one(catalog: Catalog) -> None:
    add(catalog, "split", ["I want to cancel my", "subscription today"])
    add(catalog, "whole", ["cancel my subscription"], days=1)
    add(catalog, "words", ["subscription please", "I said cancel"], days=2)
    add(catalog, "silent", None, days=3)
    assert found(catalog, "cancel subscription") == {"split", "whole", "words"}
    assert found(catalog, '"my subscription"') == {"whole"}
    assert found(catalog, '"cancel my" subscription') == {"split", "whole"}
    assert found(catalog, '"subscription today" "cancel my"') == {"split"}
    assert found(catalog, "cancel absent") == set()


def test_every_other_filter_combines_with_the_words(catalog: Catalog) -> None:
    for n in range(40):
        flags = ("silent",) if n % 4 == 0 else ()
        words = ["cancel now" if n % 2 else "keep it", "refund" if n % 3 == 0 else "fine"]
        add(catalog, f"c{n}", words, days=n, flags=flags, self_test=n == 7,
            fields={"account_id": ACCOUNTS[n % 3], "from": f"+1555000{n % 5}",
                    "caller_id_name": "Alice" if n % 5 == 0 else "Bob"})
    add(catalog, "att", ["cancel now"], kind="attachment", segments=("d1",),
        document={"pvt_account_id": "acct-a"})
    filters: list[dict[str, Any]] = [
        {}, {"account_id": "acct-a"}, {"scope": ("acct-b", "acct-c")}, {"scope": ()},
        {"since": T0 - timedelta(days=20), "until": T0 - timedelta(days=5)},
        {"flags": ("silent",)}, {"flagged": True}, {"number": "+15550003"},
        {"q": "ali"}, {"q": "c9"}, {"call_id": "c11"}, {"kinds": ("attachment",)},
        {"self_test": True}, {"account_id": "acct-b", "flagged": True, "q": "bob"},
    ]
    for text in ("cancel", "cancel refund", '"cancel now" fine', "keep"):
        wanted = parse_query(text)
        for f in filters:
            plain = list(catalog.iter_search(Query(limit=500, **f)))
            reference = {r.id for r in plain if recording_matches(
                (index_text(s["text"]) for s in catalog.segments(r.id)), wanted)}
            with_words = {r.id for r in catalog.iter_search(Query(text=text, limit=4, **f))}
            assert with_words == reference, (text, f)
            assert reference or f  # most combinations find something


def test_paging_visits_every_match_once_while_rows_arrive(catalog: Catalog) -> None:
    for n in range(23):
        add(catalog, f"old{n}", ["please cancel" if n % 2 else "nothing here"],
            days=n % 6)  # several recordings share a day: ties broken by id
    expected = found(catalog, "cancel")
    seen: list[str] = []
    query: Query | None = Query(text="cancel", limit=3)
    n = 0
    while query is not None:
        page = catalog.search(query)
        seen += [r.call_id or "" for r in page.items]
        add(catalog, f"new{n}", ["cancel again"], days=-1)       # newer than every page
        add(catalog, f"mid{n}", ["cancel in between"], days=2.5)  # inside the paged span
        n += 1
        query = page.next
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))
    assert found(catalog, "cancel") > expected  # the arrivals are found by a new search


def test_matches_carry_times_speakers_and_highlighted_snippets(catalog: Catalog) -> None:
    rid = add(catalog, "m", [])
    long = "word " * 60 + "then Cancel, CANCEL!" + " filler" * 60
    catalog.put_segments(rid, [Segment(0.25, 1.5, "hello there", "left"),
                               Segment(2.0, 3.0, "I'd like to cancel <b>it</b>", "right"),
                               Segment(4.0, 5.0, long, "mono"),
                               Segment(6.0, 7.0, "cancel again", "left"),
                               Segment(8.0, 9.0, "cancel once more", "left")])
    page = catalog.search(Query(text="cancel"))
    got = [m.to_json() for m in page.matches[rid]]
    assert [(m["start"], m["end"], m["speaker"]) for m in got] == [
        (2.0, 3.0, "callee"), (4.0, 5.0, "all"), (6.0, 7.0, "caller")]
    assert got[0]["snippet"] == "I'd like to cancel <b>it</b>"  # plain text, never markup
    for m in got:
        assert [m["snippet"][a:b].lower() for a, b in m["highlights"]] == \
            ["cancel"] * len(m["highlights"])
    assert got[1]["snippet"].startswith("…") and len(got[1]["highlights"]) == 2
    custom = catalog.search(Query(text="hello"), speaker=lambda row, ch: f"{row.call_id}:{ch}")
    assert custom.matches[rid][0].speaker == "m:left"
    assert catalog.segments(rid)[0] == {"start": 0.25, "end": 1.5, "channel": "left",
                                        "speaker": DEFAULT_SPEAKERS["left"],
                                        "text": "hello there"}
    assert catalog.search(Query(call_id="m")).matches == {}  # no words, no matches


@pytest.mark.parametrize("typed", QUERIES)
def test_an_items_matches_are_its_segments_holding_a_term(corpus: Catalog, typed: str) -> None:
    """The matches are read through the index (SQLite) or the segments' own words
    (PostgreSQL): the same as testing every segment of each recording on the page, with
    two recordings in the same second (their segments share a second's keys)."""
    twin = add(corpus, "twin", ["cancel my subscription", "hello there"], days=0)
    other = add(corpus, "twin-other", ["subscription", "cancel"], days=0)
    def key(call_id: str) -> int:
        return segment_key(micros(corpus.search(Query(call_id=call_id)).items[0].sort_at))

    assert key("twin") == key("twin-other")
    text = parse_query(typed)
    query: Query | None = Query(text=typed, limit=4)
    seen = 0
    while query is not None:
        page = corpus.search(query)
        every = corpus._text.segments(corpus._connection(), [r.id for r in page.items])
        for row in page.items:
            assert page.matches[row.id] == matches(row, every[row.id], text, default_speaker)
            assert page.matches[row.id]  # a recording found has a segment to show
            seen += row.id in (twin, other)
        query = page.next
    assert seen == sum(recording_matches(w, text) for w in (
        [index_text("cancel my subscription"), index_text("hello there")],
        [index_text("subscription"), index_text("cancel")]))


def test_a_scoped_search_never_finds_another_accounts_recording(corpus: Catalog) -> None:
    for typed in ("cancel", '"my subscription"', "cafe refund"):
        everything = found(corpus, typed)
        mine = found(corpus, typed, scope=("acct-a",))
        assert mine < everything or not everything
        for r in corpus.iter_search(Query(text=typed, scope=("acct-a",))):
            assert r.account_id == "acct-a"


def test_put_is_idempotent_replaces_and_needs_a_row(catalog: Catalog) -> None:
    rid = add(catalog, "p", ["cancel please"])
    assert catalog.put_segments(rid, segs("cancel please"))
    assert len(catalog.segments(rid)) == 1 and found(catalog, "cancel") == {"p"}
    assert catalog.put_segments(rid, segs("keep it"))
    assert found(catalog, "cancel") == set() and found(catalog, "keep") == {"p"}
    assert catalog.put_segments(rid, [])
    assert catalog.segments(rid) == [] and found(catalog, "keep") == set()
    assert not catalog.put_segments("no-such-row", segs("cancel"))
    assert catalog.segments("no-such-row") == []


def test_removing_a_row_or_its_segments_drops_them(catalog: Catalog) -> None:
    a = add(catalog, "a", ["cancel one", "two"])
    b = add(catalog, "b", ["cancel three"], days=40)
    assert catalog.remove_segments(a) == 2 and catalog.segments(a) == []
    assert catalog.get(a) is not None and found(catalog, "cancel") == {"b"}
    assert catalog.remove(b)
    assert catalog.segments(b) == [] and found(catalog, "cancel") == set()
    conn = catalog._connection()
    cur = conn.cursor()
    cur.execute("SELECT COUNT(*) FROM kzr_segments")
    assert cur.fetchone()[0] == 0
    cur.close()
    record = sidecar("c", sha="c" * 64)
    row = catalog.add(record)
    catalog.put_segments(row.id, segs("cancel"))
    catalog.remove_stored(record)
    assert found(catalog, "cancel") == set()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60))
def test_no_text_is_an_error(corpus: Catalog, typed: str) -> None:
    page = corpus.search(Query(text=typed, limit=5))
    q = parse_query(typed)
    if q:
        assert {r.call_id for r in page.items} <= python_matches(q)
    assert corpus.count(Query(text=typed)) == (len(python_matches(q)) if q else len(CORPUS))


# -- erasing: no byte of a removed transcript left in the SQLite files ------------------


def _files(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
                    if p.exists())


def test_scrub_leaves_no_byte_of_a_removed_transcript_in_the_sqlite_files(
        tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    catalog = open_catalog(f"sqlite:///{path}")
    try:
        for n in range(30):  # others in the same month and in other months
            add(catalog, f"k{n}", ["keep this recording", f"number {n} stays"], days=n * 2)
        secret = add(catalog, "gone", ["Zanzibarquux said hello", "then QWERTYFLUX left"],
                     days=3)
        words = [b"zanzibarquux", b"Zanzibarquux", b"qwertyflux", b"QWERTYFLUX"]
        assert all(w in _files(path) for w in words)  # there before: the test can fail
        assert catalog.remove(secret)
        result = catalog.scrub_text([secret])
        assert result.merged == [part_name(segment_key(int((T0 - timedelta(days=3))
                                                          .timestamp() * 1e6)))]
        left = _files(path)
        assert not [w for w in words if w in left]
        assert b"keep this recording" in left and found(catalog, "keep") == {
            f"k{n}" for n in range(30)}
        assert catalog.scrub_text().merged == []  # nothing dirty: nothing rewritten
    finally:
        catalog.close()


def test_replacing_a_transcript_then_scrubbing_leaves_no_old_words(tmp_path: Path) -> None:
    """A re-redaction replaces a transcript: its old words go from the bytes too."""
    path = tmp_path / "c.sqlite3"
    catalog = open_catalog(f"sqlite:///{path}")
    try:
        rid = add(catalog, "r", ["card 4111111111111111 please"])
        catalog.put_segments(rid, segs("card [card] please"))
        assert b"4111111111111111" in _files(path)
        catalog.scrub_text()
        assert b"4111111111111111" not in _files(path)
        assert found(catalog, "card please") == {"r"}
    finally:
        catalog.close()


def test_count_and_a_deep_keyset_with_words(corpus: Catalog) -> None:
    q = Query(text="cancel", limit=4)
    first = corpus.search(q)
    assert first.next is not None
    deeper = corpus.search(replace(first.next, limit=2))
    assert not {r.id for r in deeper.items} & {r.id for r in first.items}
    assert corpus.count(q) == len(python_matches(parse_query("cancel")))
