"""Card numbers out of transcripts: the documented rules, by example and by property."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from kzr_wsgi.transcribe import Redactor, Segment, Settings, Transcript, Word, redact
from kzr_wsgi.transcribe.redact import card_spans, luhn_valid, redact_text

UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]
TENS = {2: "twenty", 3: "thirty", 4: "forty", 5: "fifty", 6: "sixty", 7: "seventy",
        8: "eighty", 9: "ninety"}
NUMBER_WORDS = {*UNITS, *TEENS, *TENS.values(), "oh", "double", "triple"}
#: Words around a number in the generated transcripts: none is a number or a keyword.
CONTEXT = ["my", "number", "is", "thanks", "please", "the", "account", "okay", "so", "ready"]


def check_digit(body: str) -> str:
    for d in "0123456789":
        if luhn_valid(body + d):
            return d
    raise AssertionError(body)


def transcript(*texts: str, channel: str = "left") -> Transcript:
    """Segments one second apart; words cut from them at spaces, timed in order."""
    segments = tuple(Segment(float(i), i + 0.9, t, channel) for i, t in enumerate(texts))
    words = []
    for i, t in enumerate(texts):
        parts = t.split()
        words.extend(Word(i + k / len(parts) * 0.9, i + (k + 1) / len(parts) * 0.9, w, channel)
                     for k, w in enumerate(parts))
    return Transcript("en", "openai", "m", segments, tuple(words))


# -- the Luhn check ----------------------------------------------------------------------


@pytest.mark.parametrize("number, valid", [
    ("4111111111111111", True), ("378282246310005", True), ("5555555555554444", True),
    ("6011111111111117", True), ("4111111111111112", False), ("", False), ("41a1", False),
    ("٤١١١١١١١١١١١١١١١", False),  # Arabic-Indic digits: the check takes ASCII digits only
])
def test_luhn(number: str, valid: bool) -> None:
    assert luhn_valid(number) is valid


# -- by example --------------------------------------------------------------------------


@pytest.mark.parametrize("said, redacted", [
    ("my card is 4111111111111111 thanks", "my card is [card] thanks"),
    ("it's 4111 1111 1111 1111.", "it's [card]."),
    ("it's 4111-1111-1111-1111 ok", "it's [card] ok"),
    ("amex 3782 822463 10005", "amex [card]"),
    ("four one one one one one one one one one one one one one one one", "[card]"),
    ("forty one eleven, eleven eleven, eleven eleven, eleven eleven", "[card]"),
    ("five five five five, double five five five, five five five five, four four four four",
     "[card]"),
    ("four one one one uh one one one one um one one one one one one one one", "[card]"),
    ("it is four one one one one one one one one one one one one one one one one more thing",
     "it is [card] one more thing"),
    ("oh four one one one one one one one one one one one one one one one",
     "[card]"),
    ("4111 1111 1111 1112 is not a card number", "4111 1111 1111 1112 is not a card number"),
    ("expiry twelve twenty five and the cvv is one two three",
     "expiry [card] and the cvv is [card]"),
    ("card 5555 5555 5555 4444 exp 12/25 cvv 123", "card [card] exp [card] cvv [card]"),
    ("the security code on the back is 4 4 2", "the security code on the back is [card]"),
    ("it expires oh four twenty seven", "it expires [card]"),
    ("my card was declined", "my card was declined"),
    ("call me at 555 123 4567 tomorrow", "call me at 555 123 4567 tomorrow"),
    ("room 123", "room 123"),
    # 18 digits said as counting, 123456789101112123: they pass the check, so they go
    ("one two three four five six seven eight nine ten eleven twelve 123", "[card]"),
], ids=lambda v: v[:40])
def test_redaction_by_example(said: str, redacted: str) -> None:
    assert redact_text(said) == redacted


def test_near_means_at_most_ten_words_between() -> None:
    words = " ".join(["word"] * 10)
    assert redact_text(f"card {words} 123") == f"card {words} [card]"
    assert redact_text(f"card {words} word 123") == f"card {words} word 123"
    assert redact_text(f"123 {words} card") == f"[card] {words} card"
    assert redact_text(f"123 {words} word card") == f"123 {words} word card"
    # punctuation and fillers are not words
    assert redact_text(f"card, uh, {words}, um 123") == f"card, uh, {words}, um [card]"


def test_a_number_split_across_segments_is_redacted_in_each() -> None:
    t = redact(transcript("my card number is 4111 1111", "1111 1111 thanks"))
    assert [s.text for s in t.segments] == ["my card number is [card]", "[card] thanks"]
    assert t.text == "my card number is [card] [card] thanks"
    assert [w.word for w in t.words] == ["my", "card", "number", "is", "[card]", "thanks"]
    card = t.words[4]
    assert (card.start, card.end) == (0.9 * 4 / 6, 1 + 0.9 * 2 / 3)  # first to last covered


def test_channels_are_read_apart() -> None:
    # each side alone holds 8 digits: together they would pass the check, apart they do not
    left, right = transcript("my number 4111 1111").segments, transcript(
        "1111 1111 ok", channel="right").segments
    both = Transcript("en", "e", "m", (left[0], Segment(0.95, 1.9, right[0].text, "right")))
    assert redact(both) == both


def test_words_only_partly_covered_keep_the_rest() -> None:
    t = Transcript("en", "e", "m", (), (Word(0, 1, "is"), Word(1, 2, "4111"), Word(2, 3, "1111"),
                                        Word(3, 4, "1111"), Word(4, 5, "1111,"), Word(5, 6, "ok")))
    assert [(w.word, w.start, w.end) for w in redact(t).words] == [
        ("is", 0, 1), ("[card]", 1, 4), ("[card],", 4, 5), ("ok", 5, 6)]


def test_patterns_are_redacted_across_segments_and_words() -> None:
    t = transcript("my passport is AB", "123456 and my pin is 9999")
    r = Redactor(redact=(), patterns=[r"AB\s+\d{6}", r"pin is \d+"])(t)
    assert [s.text for s in r.segments] == ["my passport is [redacted]",
                                            "[redacted] and my [redacted]"]
    assert [w.word for w in r.words] == ["my", "passport", "is", "[redacted]", "and", "my",
                                         "[redacted]"]


def test_redaction_off_changes_nothing_and_settings_feed_the_redactor() -> None:
    t = transcript("card 4111 1111 1111 1111")
    assert Redactor(redact=())(t) is t
    s = Settings(engine="x", redact_patterns=(r"\bsecret\b",))
    r = Redactor(s.redact, s.redact_patterns)(transcript("a secret 4111 1111 1111 1111"))
    assert r.text == "a [redacted] [card]"
    with pytest.raises(ValueError, match="unknown redaction"):
        Redactor(redact=("ssn",))


def test_spans_point_at_the_number_in_the_text() -> None:
    text = "yes it's 4111 1111 1111 1111, thanks"
    [(a, b)] = card_spans(text)
    assert text[a:b] == "4111 1111 1111 1111"


# -- by property -------------------------------------------------------------------------


@st.composite
def card_numbers(draw: st.DrawFn, valid: bool = True) -> str:
    length = draw(st.integers(13, 19))
    body = draw(st.text("0123456789", min_size=length - 1, max_size=length - 1))
    good = check_digit(body)
    if valid:
        return body + good
    return body + draw(st.sampled_from([d for d in "0123456789" if d != good]))


#: One group of a written number: its text (one or more words) and the digits it says.
Group = tuple[str, str]


def in_words(digits: str, rng: random.Random) -> list[Group]:
    """``digits`` said as words, one or two digits at a time, as people read numbers."""
    groups: list[Group] = []
    i = 0
    while i < len(digits):
        pair = digits[i:i + 2]
        # (a round ten, "twenty", is never said alone: "twenty one" would then be 21)
        if len(pair) == 2 and pair[1] != "0" and rng.random() < 0.4:
            a, b = int(pair[0]), int(pair[1])
            if a == 0:
                text = f"oh {UNITS[b]}"
            elif a == 1:
                text = TEENS[b]
            elif a == b and rng.random() < 0.5:
                text = f"double {UNITS[a]}"
            else:
                text = rng.choice([f"{TENS[a]}-{UNITS[b]}", f"{TENS[a]} {UNITS[b]}"])
            groups.append((text, pair))
            i += 2
        else:
            d = int(digits[i])
            groups.append((rng.choice(["zero", "oh"]) if d == 0 else UNITS[d], digits[i]))
            i += 1
    return groups


def written(digits: str, form: str, rng: random.Random) -> tuple[list[Group], str]:
    """The groups a number is written in, in one of the forms engines use, and what
    joins the groups in one segment."""
    if form == "words":
        return in_words(digits, rng), " "
    if form == "digits":  # one string of digits (cut anywhere when it is cut)
        cuts = sorted(rng.sample(range(1, len(digits)), rng.randint(0, 3)))
        bounds = [0, *cuts, len(digits)]
        return [(digits[a:b],) * 2 for a, b in zip(bounds, bounds[1:], strict=False)], ""
    size = 2 if form == "pairs" else 4
    groups = [(digits[i:i + size],) * 2 for i in range(0, len(digits), size)]
    return groups, "-" if form == "dashed" else " "


def said(number: str, form: str, cuts: int, seed: int) -> tuple[list[str], list[list[Group]]]:
    """Segments saying ``number`` (between context words), cut in ``cuts`` places between
    its groups, and the groups in each segment."""
    rng = random.Random(seed)
    groups, joiner = written(number, form, rng)
    places = sorted(rng.sample(range(1, len(groups)), min(cuts, len(groups) - 1)))
    pieces = [groups[a:b] for a, b in zip([0, *places], [*places, len(groups)], strict=True)]
    before = rng.sample(CONTEXT, rng.randint(0, 3))
    after = rng.sample(CONTEXT, rng.randint(0, 3))
    texts = [joiner.join(text for text, _ in p) for p in pieces]
    texts[0] = " ".join([*before, texts[0]])
    texts[-1] = " ".join([texts[-1], *after])
    return texts, pieces


FORMS = st.sampled_from(["digits", "grouped", "dashed", "pairs", "words"])


@settings(max_examples=1500, deadline=None)
@given(card_numbers(), FORMS, st.integers(0, 3), st.integers(0, 2**32))
@example("4111111111111111", "words", 2, 7)
@example("378282246310005", "grouped", 3, 1)
def test_a_valid_card_number_is_always_gone(number: str, form: str, cuts: int,
                                            seed: int) -> None:
    texts, _ = said(number, form, cuts, seed)
    r = redact(transcript(*texts))
    left = " ".join([r.text, *(w.word for w in r.words)])
    assert "[card]" in r.text and "[card]" in [w.word for w in r.words]
    assert not re.search(r"\d", left), (texts, left)
    assert not NUMBER_WORDS & set(re.split(r"[\s-]+", left)), (texts, left)
    assert all(s.start < s.end for s in r.segments)


def may_pass(number: str, pieces: list[list[Group]], form: str) -> bool:
    """True when the documented rules allow part of an invalid number to be redacted:
    the digits of a stretch of whole segments, or (said in words) the number without
    an everyday ``one`` or ``oh`` said alone at an end, that has 13 to 19 digits and
    passes the check."""
    digits = ["".join(d for _, d in p) for p in pieces]
    stretches = {"".join(digits[a:b]) for a in range(len(digits))
                 for b in range(a + 1, len(digits) + 1)}
    if form == "words":
        first, last = pieces[0][0][0], pieces[-1][-1][0]
        head = number[1:] if first.split()[0] in ("one", "oh") else number
        tail = last in ("one", "oh", "oh one")
        stretches |= {head, number[:-1] if tail else number, head[:-1] if tail else head}
    return any(13 <= len(s) <= 19 and luhn_valid(s) for s in stretches if s != number)


@settings(max_examples=1500, deadline=None)
@given(card_numbers(valid=False), FORMS, st.integers(0, 3), st.integers(0, 2**32))
@example("4111111111111112", "words", 0, 3)
def test_an_invalid_number_stays(number: str, form: str, cuts: int, seed: int) -> None:
    texts, pieces = said(number, form, cuts, seed)
    assume(not may_pass(number, pieces, form))
    t = transcript(*texts)
    assert redact(t) == t
