"""Searching transcripts by words: tokens, the query grammar, both backends' queries. Pure.

**Tokens.** A token is a run of Unicode letters and digits after *folding*: NFKD,
case-folded, combining marks dropped (``Café`` and ``CAFE`` are both ``cafe``;
``Straße`` is ``strasse``). Everything else separates tokens (``don't`` is ``don``
``t``). :func:`tokens` is the one function both the index and the query use.

**Index text.** The catalog stores each segment's tokens joined by single spaces
(:func:`index_text`), so SQLite and PostgreSQL index the same tokens: an FTS5 table
with ``tokenize = 'ascii'`` (which splits at ASCII spaces and punctuation only, so
never inside one of these tokens) and a PostgreSQL ``to_tsvector('simple', …)``.

**Queries.** Text in double quotes (``"…"``, or typographic ``“…”``) is a phrase: its
tokens side by side, in one segment. Everything else is words. Every word and phrase
is required (AND). No other character means anything: ``-``, ``*``, ``:``, ``OR``,
``NOT``, parentheses are text (and, being no letters or digits, mostly vanish), so no
input is an error or reaches a backend as syntax. A word that folds to several tokens
(``e-mail``, ``don't``) is a phrase of them. A quote left open runs to the end.

>>> q = parse_query('Cancel "my subscription" -NOW* (OR)')
>>> q.terms
(('cancel',), ('my', 'subscription'), ('now',), ('or',))
>>> fts5_match(q)
'"cancel" AND "my subscription" AND "now" AND "or"'
>>> pg_tsquery(q)
"'cancel' & ('my' <-> 'subscription') & 'now' & 'or'"
>>> snippet("Hi, I want to CANCEL my subscription now.", q)
Snippet(text='Hi, I want to CANCEL my subscription now.', highlights=((14, 20), (21, 36), (37, 40)))
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

#: A token in folded text: letters and digits (``\\w`` without the underscore).
_TOKEN = re.compile(r"[^\W_]+")
#: Typographic double quotes, read as ``"``.
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"',
                         "\u00bb": '"'})
#: The shortest snippet worth showing.
MIN_WIDTH = 20
#: An SQL identifier, for the one name a caller passes in (an FTS5 column).
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def fold(text: str) -> str:
    """``text`` case-folded, compatibility-decomposed, its combining marks dropped.

    >>> fold("Ça ﬁt, STRASSE İ")
    'ca fit, strasse i'
    """
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    return "".join(c for c in decomposed if not unicodedata.category(c).startswith("M"))


def tokens(text: str) -> list[str]:
    """The tokens of ``text``: the runs of letters and digits in :func:`fold` of it."""
    return _TOKEN.findall(fold(text))


def index_text(text: str) -> str:
    """What the catalog indexes for a segment's ``text``: its tokens, space-separated."""
    return " ".join(tokens(text))


#: A token of ASCII text.
_ASCII_TOKEN = re.compile(r"[A-Za-z0-9]+")
#: :func:`fold` of one character, remembered (snippets fold a text a character at a time).
_fold_char = functools.lru_cache(maxsize=8192)(fold)


def token_spans(text: str) -> list[tuple[str, int, int]]:
    """Each token of ``text`` with the span of ``text`` it comes from.

    Gives the same tokens as :func:`tokens`, folding one character at a time (which
    is the same: folding has no context), so the spans point into the text as written.
    ASCII text (most transcripts) takes a shortcut with the same result: folding an
    ASCII character is lower-casing it.
    """
    if text.isascii():
        return [(m.group().lower(), m.start(), m.end()) for m in _ASCII_TOKEN.finditer(text)]
    out: list[tuple[str, int, int]] = []
    current: list[str] = []
    start = end = 0
    for i, c in enumerate(text):
        folded = _fold_char(c)
        if not folded and unicodedata.category(c).startswith("M"):
            if current:
                end = i + 1  # a mark on the token's last letter belongs to it
            continue
        for f in folded or " ":
            if f.isalnum():
                if not current:
                    start = i
                current.append(f)
                end = i + 1
            elif current:
                out.append(("".join(current), start, end))
                current = []
    if current:
        out.append(("".join(current), start, end))
    return out


@dataclass(frozen=True)
class TextQuery:
    """A parsed query: each term a tuple of tokens (one: a word; more: a phrase)."""

    terms: tuple[tuple[str, ...], ...] = ()

    def __bool__(self) -> bool:
        """False when nothing searchable is left (then the catalog applies no text filter)."""
        return bool(self.terms)


def parse_query(text: str) -> TextQuery:
    """The :class:`TextQuery` of what a person typed. Never raises; may be empty."""
    terms: list[tuple[str, ...]] = []
    for n, part in enumerate(text.translate(_QUOTES).split('"')):
        inside = n % 2 == 1
        for chunk in [part] if inside else part.split():
            found = tuple(tokens(chunk))
            if found and found not in terms:
                terms.append(found)
    return TextQuery(tuple(terms))


def fts5_terms(query: TextQuery) -> list[str]:
    """One FTS5 query string per term: ``"word"`` or ``"a phrase"``."""
    return ['"' + " ".join(t.replace('"', '""') for t in term) + '"' for term in query.terms]


def fts5_match(query: TextQuery, column: str | None = None) -> str:
    """An FTS5 ``MATCH`` string that finds rows holding every term (AND).

    With ``column``, only that column is searched. Raises ``ValueError`` for an
    empty query (test ``bool(query)`` first) or a ``column`` that is not a plain name.
    """
    if not query:
        raise ValueError("an empty text query has no MATCH expression")
    expression = " AND ".join(fts5_terms(query))
    if column is None:
        return expression
    if not _IDENTIFIER.fullmatch(column):
        raise ValueError(f"not a column name: {column!r}")
    return f"{column} : ({expression})"


def pg_terms(query: TextQuery) -> list[str]:
    """One ``to_tsquery('simple', …)`` string per term: ``'word'`` or ``('a' <-> 'b')``."""
    out = []
    for term in query.terms:
        quoted = [_pg_lexeme(t) for t in term]
        out.append(quoted[0] if len(quoted) == 1 else "(" + " <-> ".join(quoted) + ")")
    return out


def pg_tsquery(query: TextQuery) -> str:
    """A string for ``to_tsquery('simple', …)`` that finds rows holding every term.

    Raises ``ValueError`` for an empty query (test ``bool(query)`` first).
    """
    if not query:
        raise ValueError("an empty text query has no tsquery")
    return " & ".join(pg_terms(query))


def _pg_lexeme(token: str) -> str:
    # A quoted lexeme; a token has no quote or backslash (letters and digits only), but
    # a string built here is safe whatever it holds.
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass(frozen=True)
class Snippet:
    """Plain text around a match, and where in it the query's terms are.

    ``highlights`` are ``(from, to)`` offsets into ``text`` in code points (Python
    string indices; in JavaScript, index ``Array.from(text)``). The text is untrusted:
    a page escapes it and wraps the highlighted ranges itself.
    """

    text: str
    highlights: tuple[tuple[int, int], ...]


def snippet(text: str, query: TextQuery, *, width: int = 160) -> Snippet:
    """A window of ``text``, at most ``width`` characters (plus an ``…`` at a cut end),
    around its first match of ``query``, with every match in the window highlighted.

    Control characters and line breaks are shown as spaces (one for one, so offsets
    hold). Without a match, the window is the text's beginning.
    """
    width = max(width, MIN_WIDTH)
    matches = _matches(text, query)
    lo, hi = _window(text, matches[0] if matches else (0, 0), width)
    shown = text[lo:hi]
    if not (shown.isascii() and shown.isprintable()):
        shown = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c
                        for c in shown)
    before = "…" if lo > 0 else ""
    after = "…" if hi < len(text) else ""
    shift = len(before) - lo
    highlights = tuple((max(a, lo) + shift, min(b, hi) + shift)
                       for a, b in matches if a < hi and b > lo)
    return Snippet(before + shown + after, highlights)


def _matches(text: str, query: TextQuery) -> list[tuple[int, int]]:
    """The spans of ``text`` where a term occurs, sorted, overlaps merged."""
    spans = token_spans(text)
    words = [t for t, _, _ in spans]
    found: list[tuple[int, int]] = []
    for term in query.terms:
        n = len(term)
        for i in range(len(words) - n + 1):
            if tuple(words[i:i + n]) == term:
                found.append((spans[i][1], spans[i + n - 1][2]))
    merged: list[tuple[int, int]] = []
    for a, b in sorted(found):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _window(text: str, first: tuple[int, int], width: int) -> tuple[int, int]:
    """Where to cut: about a third of the room before the first match, cuts at spaces."""
    if len(text) <= width:
        return 0, len(text)
    lo = max(0, first[0] - (width - (first[1] - first[0])) // 3)
    hi = min(len(text), lo + width)
    lo = max(0, hi - width)
    if lo > 0:
        space = text.find(" ", lo, min(first[0], lo + width // 4))
        lo = space + 1 if space >= 0 else lo
    if hi < len(text):
        space = text.rfind(" ", max(first[1], hi - width // 4), hi)
        hi = space if space > lo else hi
    return lo, hi


__all__ = [
    "MIN_WIDTH",
    "Snippet",
    "TextQuery",
    "fold",
    "fts5_match",
    "fts5_terms",
    "index_text",
    "parse_query",
    "pg_terms",
    "pg_tsquery",
    "snippet",
    "token_spans",
    "tokens",
]
