"""Numbers as engines write them: digits, or English number words. Pure.

:func:`number_tokens` cuts a text into tokens, each with its character span: a
number (its digits), a word (case-folded), or a strong separator (``, . ; : ! ?``
and a line break). Spaces, dashes and slashes separate nothing more than tokens:
``4111-1111`` is two numbers side by side, as ``4111 1111`` is.

English number words become numbers (one token spanning all the words):

* ``zero`` and ``nought`` are 0; ``oh`` and ``o`` are 0 only next to another number
  (``oh four``), a word otherwise (``oh I see``);
* ``one`` … ``nine`` one digit; ``ten`` … ``nineteen`` two; ``twenty`` … ``ninety``
  two, or with a unit after them (``forty one``, ``forty-one``) the two digits of the sum;
* ``double``/``triple`` repeat the digit after them (``double five`` is 55);
* ``hundred`` and ``thousand`` multiply (``four hundred twelve`` is 412, ``forty one
  hundred`` 4100, ``two thousand and five`` 2005). Numbers side by side are read
  digit after digit later (``twenty twenty five``: 20 then 25), so years said in pairs
  come out right without a rule of their own.

>>> [(t.kind, t.value) for t in number_tokens("card: four one double one, 4111-1111")]
... # doctest: +NORMALIZE_WHITESPACE
[('word', 'card'), ('sep', ':'), ('num', '4'), ('num', '1'), ('num', '11'), ('sep', ','),
 ('num', '4111'), ('num', '1111')]
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_UNITS = {w: i for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six",
                                       "seven", "eight", "nine"])} | {"nought": 0}
_TEENS = {w: 10 + i for i, w in enumerate(["ten", "eleven", "twelve", "thirteen", "fourteen",
                                           "fifteen", "sixteen", "seventeen", "eighteen",
                                           "nineteen"])}
_TENS = {w: 20 + 10 * i for i, w in enumerate(["twenty", "thirty", "forty", "fifty", "sixty",
                                               "seventy", "eighty", "ninety"])}
#: Words that are 0 only beside another number.
_OH = frozenset({"oh", "o"})
_REPEAT = {"double": 2, "triple": 3}

_TOKEN = re.compile(r"(?P<num>\d+)|(?P<word>[^\W\d_]+(?:['\u2019][^\W\d_]+)*)|(?P<sep>[,.;:!?\n])")


@dataclass(frozen=True)
class Token:
    """A number (``value``: its digits), a word (case-folded) or a strong separator."""

    kind: str  # "num", "word" or "sep"
    start: int
    end: int
    value: str
    #: For a number: written in words (True) or in digits (False).
    spoken: bool = False
    #: For a number: one word that is also an everyday word ("one", "oh").
    ambiguous: bool = False


def number_tokens(text: str) -> list[Token]:
    """The tokens of ``text``, number words already read as numbers."""
    raw: list[Token] = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup or "sep"
        value = m.group()
        if kind == "num":
            value = "".join(str(unicodedata.decimal(c)) for c in value)
        elif kind == "word":
            value = value.casefold().replace("\u2019", "'")
        raw.append(Token(kind, m.start(), m.end(), value))
    return _oh_as_zero(_spoken_numbers(raw))


def _spoken_numbers(tokens: list[Token]) -> list[Token]:
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        parsed = _number_at(tokens, i)
        if parsed is None:
            out.append(tokens[i])
            i += 1
            continue
        digits, j = parsed
        first = tokens[i]
        ambiguous = j == i + 1 and first.value in ("one", *_OH)
        out.append(Token("num", first.start, tokens[j - 1].end, digits, spoken=True,
                         ambiguous=ambiguous))
        i = j
    return out


def _number_at(tokens: list[Token], i: int) -> tuple[str, int] | None:
    """The digits of the number that starts at ``tokens[i]``, and where it ends."""
    word = _word(tokens, i)
    if word in _REPEAT:
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        digit = _UNITS.get(_word(tokens, i + 1) or "")
        if digit is None and _word(tokens, i + 1) in _OH:
            digit = 0
        if digit is not None:
            return str(digit) * _REPEAT[word], i + 2
        if nxt is not None and nxt.kind == "num" and len(nxt.value) == 1:
            return nxt.value * _REPEAT[word], i + 2
        return None
    if word in _OH:
        return "0", i + 1  # kept as 0 only beside another number (_oh_as_zero)
    small = _below_hundred(tokens, i)
    if small is None:
        return None
    value, digits, j = small
    for scale, name, below in ((100, "hundred", 100), (1000, "thousand", 1000)):
        if value and _word(tokens, j) == name:
            value, j = value * scale, j + 1
            rest = _rest(tokens, j, below)
            if rest is not None:
                value, j = value + rest[0], rest[1]
            digits = str(value)
    return digits, j


def _below_hundred(tokens: list[Token], i: int) -> tuple[int, str, int] | None:
    word = _word(tokens, i)
    if word in _TENS:
        unit = _UNITS.get(_word(tokens, i + 1) or "")
        if unit:
            return _TENS[word] + unit, str(_TENS[word] + unit), i + 2
        return _TENS[word], str(_TENS[word]), i + 1
    if word in _TEENS:
        return _TEENS[word], str(_TEENS[word]), i + 1
    if word in _UNITS:
        return _UNITS[word], str(_UNITS[word]), i + 1
    return None


def _rest(tokens: list[Token], j: int, below: int) -> tuple[int, int] | None:
    """The smaller number after ``hundred``/``thousand`` (``and`` allowed first)."""
    k = j + 1 if _word(tokens, j) == "and" else j
    small = _below_hundred(tokens, k)
    if small is None:
        return None
    value, _, end = small
    if below > 100 and _word(tokens, end) == "hundred" and value < 10:
        value, end = value * 100, end + 1
        more = _rest(tokens, end, 100)
        if more is not None:
            value, end = value + more[0], more[1]
    return (value, end) if value < below else None


def _oh_as_zero(tokens: list[Token]) -> list[Token]:
    """``oh``/``o`` stays a 0 only with a number before or after it (punctuation and line
    breaks between are no matter: ``four one oh,`` / ``five…``)."""
    out = list(tokens)
    for i, t in enumerate(tokens):
        if t.kind == "num" and t.spoken and t.value == "0" and t.ambiguous:
            beside = [_beside(tokens, i, -1), _beside(tokens, i, 1)]
            if not any(b is not None and b.kind == "num" and not _is_oh(b) for b in beside):
                out[i] = Token("word", t.start, t.end, "oh")
    return out


def _beside(tokens: list[Token], i: int, step: int) -> Token | None:
    """The nearest token that is not punctuation, before (-1) or after (1) ``tokens[i]``;
    ``oh`` after ``oh`` is looked past (``oh oh seven``)."""
    k = i + step
    while 0 <= k < len(tokens) and (tokens[k].kind == "sep" or _is_oh(tokens[k])):
        k += step
    return tokens[k] if 0 <= k < len(tokens) else None


def _is_oh(token: Token) -> bool:
    return token.kind == "num" and token.ambiguous and token.value == "0"


def _word(tokens: list[Token], i: int) -> str | None:
    return tokens[i].value if 0 <= i < len(tokens) and tokens[i].kind == "word" else None


__all__ = ["Token", "number_tokens"]
