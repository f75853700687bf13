"""Card numbers (and the operator's own patterns) out of a transcript before it is kept. Pure.

``redact = ["card"]`` (the default) finds card numbers however an engine wrote them
and puts ``[card]`` in their place, in the segments (so in ``text`` and the search
index, which are made from them) and in the words. The rules, per channel, reading
the channel's segments in time order as one text (and its words, apart, the same way):

**Runs.** Numbers (digits, or number words: :mod:`kzr_wsgi.transcribe.spoken`) side
by side form a *run*: spaces, dashes, slashes, ``uh``/``um``/``er``/``ah``, a
punctuation mark and the end of a segment all keep a run going; any other word ends
it. A run's *parts* are cut at punctuation, at segment ends, at fillers, and where
the writing changes between digits and words.

**Card numbers.** A run, or any stretch of whole parts of it, of 13 to 19 digits that
passes the Luhn check is a card number. A run of more than 19 digits is searched for
any stretch of whole numbers of 13 to 19 digits that passes. A run said in words may
also lose one ``one``/``oh`` at either end (``… one one one one one more thing``) if
that leaves a card number. A number that fails the check is not redacted: it is not a
card number (about one in ten random digit strings passes, so long digit strings near
13–19 digits are sometimes redacted when they are something else).

**Security codes and expiry dates.** A run of 3 to 8 digits (a code, a date, or both
said together: ``12/25 123``) is redacted when a keyword is *near*: at most
:data:`NEAR` words before or after it on the same channel. The keywords: ``card``,
``cards``, ``visa``, ``mastercard``/``master card``, ``amex``/``american express``,
``cvv``, ``cvc``, ``cvv2``, ``security code``, ``exp`` and every word beginning
``expir`` (``expiry``, ``expiration``, ``expires``…). Words and numbers count as words
here; punctuation and fillers do not. A run of digits near a keyword is redacted
whatever it is, so a phone number said right after "card" goes too.

**Replacement.** Each redacted stretch becomes one ``[card]`` in each segment it
touches, spaces and fillers inside it included. In the words, the entries a stretch
covers become one entry ``[card]`` timed from the first to the last (the number of
entries would say how many digits there were); an entry only partly covered keeps
the rest of its text. ``redact_patterns`` are regular expressions matched the same
way, over a channel's segments read as one text (joined by a line break) and over
its words (joined by a space), each match becoming ``[redacted]``.

>>> redact_text("visa 4111 1111 1111 1111, expiry twelve twenty five, code 123")
'visa [card], expiry [card], code [card]'
>>> redact_text("order 4111 1111 1111 1112 shipped")  # fails the Luhn check
'order 4111 1111 1111 1112 shipped'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace

from .model import Segment, Transcript, Word
from .spoken import Token, number_tokens

#: What a card number, code or date becomes.
CARD = "[card]"
#: What a ``redact-patterns`` match becomes.
REDACTED = "[redacted]"
#: How many words may stand between a keyword and a security code or date.
NEAR = 10
#: Fillers that do not end a run of numbers.
FILLERS = frozenset({"uh", "um", "er", "erm", "ah", "hmm", "mm"})
_KEYWORDS = frozenset({"card", "cards", "visa", "mastercard", "amex", "cvv", "cvc", "cvv2",
                       "exp"})
_KEY_PAIRS = frozenset({("security", "code"), ("master", "card"), ("american", "express")})


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` (ASCII digits only) passes the Luhn check.

    >>> luhn_valid("4111111111111111"), luhn_valid("4111111111111112")
    (True, False)
    """
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


#: Which stretch covers all of a unit: (rule number, stretch number), or None.
_Cover = tuple[int, int] | None


class Redactor:
    """Redacts transcripts by ``redact`` (``("card",)`` or ``()``) and ``patterns``.

    Compiled once; call it on each transcript before it is stored.
    """

    def __init__(self, redact: Iterable[str] = ("card",), patterns: Iterable[str] = ()) -> None:
        kinds = set(redact)
        if kinds - {"card"}:
            raise ValueError(f"unknown redaction {sorted(kinds - {'card'})} (known: card)")
        self.cards = "card" in kinds
        self.patterns = [re.compile(p) for p in patterns]

    def __call__(self, transcript: Transcript) -> Transcript:
        """``transcript`` with what the rules find replaced (a new value)."""
        if not self.cards and not self.patterns:
            return transcript
        segments: list[Segment] = list(transcript.segments)
        words: list[tuple[Word, _Cover]] = [(w, None) for w in transcript.words]
        channels = [s.channel for s in transcript.segments]
        for channel in dict.fromkeys([*channels, *(w.channel for w in transcript.words)]):
            seg_at = [i for i, s in enumerate(segments) if s.channel == channel]
            redone = self._units([segments[i].text for i in seg_at], "\n")
            for i, (text, _) in zip(seg_at, redone, strict=True):
                segments[i] = replace(segments[i], text=text)
            word_at = [i for i, (w, _) in enumerate(words) if w.channel == channel]
            redone = self._units([words[i][0].word for i in word_at], " ")
            for i, (text, cover) in zip(word_at, redone, strict=True):
                words[i] = (replace(words[i][0], word=text), cover)
        return replace(transcript, segments=tuple(segments), words=_collapsed(words))

    def text(self, text: str) -> str:
        """One text redacted by the same rules (e.g. a note typed by a person)."""
        return self._units([text], "\n")[0][0]

    def _units(self, units: list[str], joiner: str) -> list[tuple[str, _Cover]]:
        """Each unit's new text, and which stretch covers all of it (if one does)."""
        out: list[tuple[str, _Cover]] = [(u, None) for u in units]
        rules: list[tuple[str, re.Pattern[str] | None]] = [(REDACTED, p) for p in self.patterns]
        if self.cards:
            rules.insert(0, (CARD, None))
        for number, (label, pattern) in enumerate(rules):
            texts = [t for t, _ in out]
            joined = joiner.join(texts)
            spans = card_spans(joined) if pattern is None else [
                (m.start(), m.end()) for m in pattern.finditer(joined) if m.end() > m.start()]
            again = _apply(texts, joiner, spans, label)
            out = [(text, (number, n) if n is not None else before)
                   for (text, n), (_, before) in zip(again, out, strict=True)]
        return out


def redact(transcript: Transcript, redact: Sequence[str] = ("card",),
           patterns: Sequence[str] = ()) -> Transcript:
    """``transcript`` redacted (see the module's rules); a new value."""
    return Redactor(redact, patterns)(transcript)


def redact_text(text: str, redact: Sequence[str] = ("card",), patterns: Sequence[str] = ()) -> str:
    """One text redacted by the same rules."""
    return Redactor(redact, patterns).text(text)


def card_spans(text: str) -> list[tuple[int, int]]:
    """The character spans of ``text`` that hold card numbers, codes or dates, merged."""
    tokens = number_tokens(text)
    marked: set[int] = set()
    keywords = _keywords(tokens)
    for run in _runs(tokens):
        marked.update(_card_numbers(tokens, run))
        if 3 <= _digits(tokens, run) <= 8 and _near(tokens, run, keywords):
            marked.update(run)
    spans: list[tuple[int, int]] = []
    previous = -2
    for i in sorted(marked):
        # Side by side in one run (nothing but fillers and marks between): one stretch.
        if spans and all(tokens[k].kind == "sep" or tokens[k].value in FILLERS
                         for k in range(previous + 1, i)):
            spans[-1] = (spans[-1][0], tokens[i].end)
        else:
            spans.append((tokens[i].start, tokens[i].end))
        previous = i
    return spans


def _runs(tokens: list[Token]) -> list[list[int]]:
    """Indices of the number tokens of each run."""
    runs: list[list[int]] = [[]]
    for i, t in enumerate(tokens):
        if t.kind == "num":
            runs[-1].append(i)
        elif t.kind == "word" and t.value not in FILLERS and runs[-1]:
            runs.append([])
    return [r for r in runs if r]


def _parts(tokens: list[Token], run: list[int]) -> list[list[int]]:
    """``run`` cut where a mark, a filler or a segment's end stands between two numbers,
    and where the writing changes between digits and words."""
    parts: list[list[int]] = [[run[0]]]
    for a, b in zip(run, run[1:], strict=False):
        if tokens[a].spoken != tokens[b].spoken or b != a + 1:
            parts.append([b])
        else:
            parts[-1].append(b)
    return parts


def _card_numbers(tokens: list[Token], run: list[int]) -> set[int]:
    """The tokens of ``run`` that belong to card numbers."""
    found: set[int] = set()
    parts = _parts(tokens, run)
    for a in range(len(parts)):
        for b in range(a, len(parts)):
            span = [i for p in parts[a:b + 1] for i in p]
            if _is_card(tokens, span):
                found.update(span)
    if _digits(tokens, run) > 19:
        for s in range(len(run)):
            for e in range(s + 1, len(run) + 1):
                if _digits(tokens, run[s:e]) > 19:
                    break
                if _is_card(tokens, run[s:e]):
                    found.update(run[s:e])
    if not found and all(tokens[i].spoken for i in run):
        for trimmed in _trimmed(tokens, run):
            if _is_card(tokens, trimmed):
                found.update(trimmed)
    return found


def _is_card(tokens: list[Token], span: Sequence[int]) -> bool:
    return 13 <= _digits(tokens, span) <= 19 and luhn_valid(_number(tokens, span))


def _trimmed(tokens: list[Token], run: list[int]) -> list[list[int]]:
    """``run`` without an everyday word (``one``, ``oh``) at one end or both."""
    head = 1 if tokens[run[0]].ambiguous else 0
    tail = 1 if tokens[run[-1]].ambiguous else 0
    cuts = {(head, 0), (0, tail), (head, tail)} - {(0, 0)}
    return [run[h:len(run) - t] for h, t in sorted(cuts) if len(run) - h - t > 0]


def _keywords(tokens: list[Token]) -> list[tuple[int, int]]:
    """Where the keywords are: (first, last) token of each."""
    words = [i for i, t in enumerate(tokens) if t.kind == "word"]
    found = []
    for n, i in enumerate(words):
        w = tokens[i].value
        after = words[n + 1] if n + 1 < len(words) else None
        if after is not None and (w, tokens[after].value) in _KEY_PAIRS:
            found.append((i, after))
        elif w in _KEYWORDS or w.startswith("expir"):
            found.append((i, i))
    return found


def _near(tokens: list[Token], run: list[int], keywords: list[tuple[int, int]]) -> bool:
    """True when at most :data:`NEAR` words and numbers stand between ``run`` and a keyword."""
    def between(lo: int, hi: int) -> int:
        return sum(1 for t in tokens[lo + 1:hi] if t.kind != "sep" and t.value not in FILLERS)

    return any(between(last, run[0]) <= NEAR if last < run[0] else
               between(run[-1], first) <= NEAR for first, last in keywords)


def _digits(tokens: list[Token], indices: Sequence[int]) -> int:
    return sum(len(tokens[i].value) for i in indices)


def _number(tokens: list[Token], indices: Sequence[int]) -> str:
    return "".join(tokens[i].value for i in indices)


def _apply(units: list[str], joiner: str, spans: list[tuple[int, int]],
           label: str) -> list[tuple[str, int | None]]:
    """Each unit with ``spans`` (in the units joined by ``joiner``) replaced by ``label``,
    and the number of the span that covers all of the unit's text, if one does."""
    out: list[tuple[str, int | None]] = []
    offset = 0
    for unit in units:
        start, end = offset, offset + len(unit)
        pieces: list[str] = []
        cursor, cover = 0, None
        for n, (a, b) in enumerate(spans):
            if b <= start or a >= end:
                continue
            lo, hi = max(a, start) - start, min(b, end) - start
            pieces.extend([unit[cursor:lo], label])
            cursor = hi
            if not unit[:lo].strip() and not unit[hi:].strip():
                cover = n
        out.append(("".join(pieces) + unit[cursor:] if pieces else unit, cover))
        offset = end + len(joiner)
    return out


def _collapsed(words: list[tuple[Word, _Cover]]) -> tuple[Word, ...]:
    """Entries all covered by one stretch, side by side, as one entry timed over them."""
    out: list[Word] = []
    last: _Cover = None
    for word, cover in words:
        if cover is not None and cover == last and out and out[-1].channel == word.channel:
            out[-1] = replace(out[-1], end=max(out[-1].end, word.end))
        else:
            out.append(replace(word, word=word.word.strip()) if cover is not None else word)
        last = cover
    return tuple(out)


__all__ = ["CARD", "FILLERS", "NEAR", "REDACTED", "Redactor", "card_spans", "luhn_valid",
           "redact", "redact_text"]
