"""Word search: tokens, the query grammar, snippets, and the same matches on a real SQLite
FTS5 table and a real PostgreSQL ``tsvector`` as in plain Python."""

from __future__ import annotations

import random
import sqlite3
import unicodedata
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kzr_wsgi.catalog.words import (
    TextQuery,
    fold,
    fts5_match,
    fts5_terms,
    index_text,
    parse_query,
    pg_terms,
    pg_tsquery,
    snippet,
    token_spans,
    tokens,
)

pytest_plugins = ["pgserver"]

# -- tokens ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("Cancel MY subscription!", ["cancel", "my", "subscription"]),
    ("Café naïve CAFÉ", ["cafe", "naive", "cafe"]),
    ("Straße", ["strasse"]),
    ("don't e-mail me", ["don", "t", "e", "mail", "me"]),
    ("x² ﬁne ½", ["x2", "fine", "1", "2"]),
    ("İstanbul", ["istanbul"]),
    ("Ελληνικά Москва 東京タワー", ["ελληνικα", "москва", "東京タワー"]),
    ("a_b 4111-1111 #tag", ["a", "b", "4111", "1111", "tag"]),
    ("e\u0301te\u0301", ["ete"]),  # decomposed accents, as some engines send them
    ("", []),
])
def test_tokens_are_folded_letters_and_digits(text: str, expected: list[str]) -> None:
    assert tokens(text) == expected
    assert index_text(text) == " ".join(expected)


@settings(max_examples=2000, deadline=None)
@given(st.text())
def test_spans_give_the_same_tokens_and_point_at_them(text: str) -> None:
    spans = token_spans(text)
    assert [t for t, _, _ in spans] == tokens(text)
    for token, a, b in spans:
        assert 0 <= a < b <= len(text)
        assert token in tokens(text[a:b]) or token in "".join(tokens(text[a:b]))


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_folding_is_stable(text: str) -> None:
    once = fold(text)
    assert fold(once) == once and tokens(once) == tokens(text)
    assert not any(unicodedata.category(c).startswith("M") for c in once)


# -- the grammar -------------------------------------------------------------------------


@pytest.mark.parametrize("typed, terms", [
    ('cancel "my subscription"', [("cancel",), ("my", "subscription")]),
    ("cancel -refund", [("cancel",), ("refund",)]),
    ("cancel OR refund", [("cancel",), ("or",), ("refund",)]),
    ("NOT (cancel*) : near/2", [("not",), ("cancel",), ("near", "2")]),
    ('"my subscription', [("my", "subscription")]),  # a quote left open runs to the end
    ('cancel "" "!!" now', [("cancel",), ("now",)]),
    ("\u201cmy subscription\u201d", [("my", "subscription")]),
    ("e-mail don't", [("e", "mail"), ("don", "t")]),
    ("Cancel cancel CANCEL", [("cancel",)]),
    ('"one"', [("one",)]),
    ("* - : ( )", []),
    ("", []),
], ids=["phrase", "minus", "or", "operators", "open-quote", "empty-phrases", "curly",
        "punctuated-words", "dedupe", "one-word-phrase", "nothing", "empty"])
def test_the_grammar(typed: str, terms: list[tuple[str, ...]]) -> None:
    q = parse_query(typed)
    assert list(q.terms) == terms
    assert bool(q) is bool(terms)


def test_builders_quote_every_token_and_refuse_an_empty_query() -> None:
    q = parse_query('NEAR cancel "my sub" AND')
    assert fts5_terms(q) == ['"near"', '"cancel"', '"my sub"', '"and"']
    assert fts5_match(q, "words") == 'words : ("near" AND "cancel" AND "my sub" AND "and")'
    assert pg_terms(q) == ["'near'", "'cancel'", "('my' <-> 'sub')", "'and'"]
    with pytest.raises(ValueError):
        fts5_match(TextQuery())
    with pytest.raises(ValueError):
        pg_tsquery(TextQuery())
    with pytest.raises(ValueError, match="not a column"):
        fts5_match(q, "words) OR (1")


# -- snippets ----------------------------------------------------------------------------


def test_a_snippet_highlights_every_match_as_offsets_into_plain_text() -> None:
    text = "Well, <b>I</b> said: CAFÉ, then café again; my subscription & café."
    s = snippet(text, parse_query('cafe "my subscription"'))
    assert s.text == text  # short enough to show whole; markup is just text
    assert [s.text[a:b] for a, b in s.highlights] == ["CAFÉ", "café", "my subscription", "café"]


def test_a_long_text_is_cut_at_spaces_around_the_first_match() -> None:
    words = [f"w{i}" for i in range(200)]
    words[120] = "Cancel"
    text = " ".join(words)
    s = snippet(text, parse_query("cancel w150"), width=80)
    assert s.text.startswith("…") and s.text.endswith("…")
    assert len(s.text) <= 82
    inner = s.text[1:-1]
    assert inner.split()[0].startswith("w") and text.find(inner) >= 0  # whole words
    assert [s.text[a:b] for a, b in s.highlights] == ["Cancel"]  # w150 is out of the window


def test_a_snippet_without_a_match_is_the_beginning_and_control_characters_are_spaces() -> None:
    s = snippet("line one\nline\x00two\u2028three " + "x " * 200, parse_query("absent"),
                width=30)
    assert s.text.startswith("line one line two three") and s.highlights == ()
    assert len(s.text) <= 31


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=400), st.text(max_size=40), st.integers(0, 300))
def test_snippets_are_bounded_and_highlights_point_at_query_tokens(
        text: str, typed: str, width: int) -> None:
    q = parse_query(typed)
    s = snippet(text, q, width=width)
    assert len(s.text) <= max(width, 20) + 2
    wanted = {t for term in q.terms for t in term}
    lo = 1 if s.text.startswith("…") and not text.startswith("…") else 0
    hi = len(s.text) - (1 if s.text.endswith("…") and not text.endswith("…") else 0)
    for a, b in s.highlights:
        assert lo <= a < b <= hi
        if lo < a and b < hi:  # not cut by the window's edges: a whole match
            assert set(tokens(s.text[a:b])) & wanted


# -- the same matches on SQLite FTS5, PostgreSQL and in Python ---------------------------


VOCABULARY = ["cancel", "my", "subscription", "refund", "please", "Café", "cafe", "Straße",
              "naïve", "don't", "e-mail", "Ελληνικά", "Москва", "東京", "2024", "4111", "x²",
              "ﬁne", "İstanbul", "AND", "OR", "NOT", "NEAR", "*", "-", ":", "(", "it's",
              "o'clock", "ÉCOLE", "école", "ǅemal", "Ⅻ", "ß"]


def make_corpus(seed: int = 20) -> dict[str, list[str]]:
    """Recordings, each with a few segments of words from :data:`VOCABULARY`."""
    rng = random.Random(seed)
    return {f"r{i:03d}": [" ".join(rng.choices(VOCABULARY, k=rng.randint(1, 8)))
                          for _ in range(rng.randint(1, 4))] for i in range(120)}


CORPUS = make_corpus()


def python_matches(query: TextQuery) -> set[str]:
    """The reference: every term in some segment; a phrase side by side in one."""
    def has(segment: str, term: tuple[str, ...]) -> bool:
        toks = tokens(segment)
        return any(tuple(toks[i:i + len(term)]) == term for i in range(len(toks)))

    return {rid for rid, segments in CORPUS.items()
            if all(any(has(s, term) for s in segments) for term in query.terms)}


@pytest.fixture(scope="module")
def fts5() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE seg USING fts5(words, recording UNINDEXED, "
               "tokenize = 'ascii')")
    db.executemany("INSERT INTO seg (words, recording) VALUES (?, ?)",
                   [(index_text(s), rid) for rid, segs in CORPUS.items() for s in segs])
    yield db
    db.close()


def sqlite_matches(db: sqlite3.Connection, query: TextQuery) -> set[str]:
    found: set[str] | None = None
    for term in fts5_terms(query):
        rows = {r for (r,) in db.execute("SELECT recording FROM seg WHERE seg MATCH ?", (term,))}
        found = rows if found is None else found & rows
    return found or set()


def sqlite_rows(db: sqlite3.Connection, query: TextQuery) -> set[str]:
    """Segments holding every term (one MATCH for the whole query)."""
    return {w for (w,) in db.execute("SELECT words FROM seg WHERE seg MATCH ?",
                                     (fts5_match(query, "words"),))}


QUERIES = ["cancel", "cafe", "CAFÉ", "strasse", "straße", "naive", '"my subscription"',
           "cancel refund", '"don t"', "don't", "e-mail", "ελληνικα", "МОСКВА", "東京",
           "2024 4111", "x2", "fine", "istanbul", "and", "or", "not", "near", "AND OR",
           '"and or"', "ecole", "école", "dzemal", "xii", "ss", '"cancel my" refund',
           "it's", "oclock", "o'clock", "-cancel", "cancel*", "(cancel)", '"my', "nothing"]


def test_fts5_is_compiled_into_this_sqlite(fts5: sqlite3.Connection) -> None:
    assert fts5.execute("SELECT count(*) FROM seg").fetchone()[0] == sum(
        len(s) for s in CORPUS.values())


@pytest.mark.parametrize("typed", QUERIES)
def test_sqlite_fts5_finds_what_python_finds(fts5: sqlite3.Connection, typed: str) -> None:
    q = parse_query(typed)
    assert q
    assert sqlite_matches(fts5, q) == python_matches(q)


def test_the_corpus_gives_every_query_something_to_find_or_miss() -> None:
    found = [len(python_matches(parse_query(q))) for q in QUERIES]
    assert sum(1 for n in found if n) >= len(QUERIES) - 4  # most queries match something
    assert all(n < len(CORPUS) for n in found)  # and none matches everything


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60))
def test_no_input_is_an_fts5_error(fts5: sqlite3.Connection, typed: str) -> None:
    q = parse_query(typed)
    if q:
        assert sqlite_matches(fts5, q) == python_matches(q)
        sqlite_rows(fts5, q)


@pytest.fixture(scope="module")
def pg(pg_server: object) -> Iterator[psycopg.Connection]:
    url = pg_server.create_database()  # type: ignore[attr-defined]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE seg (recording text, words text, "
                     "tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', words)) STORED)")
        conn.execute("CREATE INDEX seg_tsv ON seg USING gin (tsv)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO seg (recording, words) VALUES (%s, %s)",
                            [(rid, index_text(s)) for rid, segs in CORPUS.items() for s in segs])
        yield conn
    pg_server.drop_database(url.rsplit("/", 1)[1])  # type: ignore[attr-defined]


def postgres_matches(conn: psycopg.Connection, query: TextQuery) -> set[str]:
    found: set[str] | None = None
    for term in pg_terms(query):
        rows = {r for (r,) in conn.execute(
            "SELECT recording FROM seg WHERE tsv @@ to_tsquery('simple', %s)", (term,))}
        found = rows if found is None else found & rows
    return found or set()


@pytest.mark.slow
@pytest.mark.parametrize("typed", QUERIES)
def test_postgresql_finds_what_sqlite_finds(pg: psycopg.Connection, fts5: sqlite3.Connection,
                                            typed: str) -> None:
    q = parse_query(typed)
    assert postgres_matches(pg, q) == sqlite_matches(fts5, q) == python_matches(q)
    rows = {w for (w,) in pg.execute("SELECT words FROM seg WHERE tsv @@ to_tsquery('simple', %s)",
                                     (pg_tsquery(q),))}
    assert rows == sqlite_rows(fts5, q)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_no_input_is_a_postgresql_error(pg: psycopg.Connection, fts5: sqlite3.Connection,
                                        typed: str) -> None:
    q = parse_query(typed)
    if q:
        assert postgres_matches(pg, q) == sqlite_matches(fts5, q)
