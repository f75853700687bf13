"""The one number rule (kzr_wsgi.numbers): every spelling of a number, one key."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kzr_wsgi.numbers import is_international, is_number, match_keys, number_key, tail


@pytest.mark.parametrize(("text", "country", "key"), [
    ("+14155550123", None, "+14155550123"),
    ("sip:+14155550123@kazoo.example", None, "+14155550123"),
    ("SIP:+1-415-555-0123@kazoo.example;user=phone", None, "+14155550123"),
    ("tel:+1.415.555.0123", None, "+14155550123"),
    ("+1 (415) 555-0123", None, "+14155550123"),
    ("14155550123", "US", "+14155550123"),
    ("4155550123", "us", "+14155550123"),
    ("(415) 555-0123", "US", "+14155550123"),
    ("4155550123", None, "4155550123"),
    ("14155550123", None, "14155550123"),
    ("020 7946 0018", "GB", "+442079460018"),
    ("0044 20 7946 0018", "GB", "+442079460018"),
    ("+44 20 7946 0018", "US", "+442079460018"),
    ("1001", None, "1001"),
    ("1001", "US", "1001"),
    ("1001@realm.example", None, "1001"),
], ids=lambda v: repr(v))
def test_spellings_of_a_number_share_its_key(text: str, country: str | None, key: str) -> None:
    assert number_key(text, country) == key


@pytest.mark.parametrize("text", ["", "Alice", "Bob 2", "sip:alice@example.net", "+", "12a3",
                                  "++1415", "anonymous", "\x00", "1-800-FLOWERS"])
def test_text_that_is_not_a_number_has_no_key(text: str) -> None:
    assert number_key(text) is None
    assert number_key(text, "US") is None
    assert not is_number(text)


def test_international_keys_and_tails() -> None:
    assert is_international(number_key("+14155550123"))
    assert not is_international(number_key("4155550123"))
    assert not is_international(None)
    # A national form without a country is a possible match by its last 7 digits.
    assert tail(number_key("4155550123")) == tail("+14155550123") == "5550123"
    assert tail("1001") is None
    assert tail("Alice") is None


_REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


@given(st.sampled_from(_REGIONS), st.sampled_from(["-", " ", ".", ""]), st.booleans())
def test_every_region_example_keys_the_same_however_written(
        region: str, sep: str, as_uri: bool) -> None:
    example = phonenumbers.example_number(region)
    if example is None:
        return
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    national = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL)
    spaced = phonenumbers.format_number(
        example, phonenumbers.PhoneNumberFormat.INTERNATIONAL).replace(" ", sep)
    written = f"sip:{spaced}@pbx.example" if as_uri else spaced
    assert number_key(e164) == e164
    assert number_key(written) == e164
    assert number_key(national, region) == e164


@given(st.text(max_size=40))
def test_never_raises_and_keys_are_digits(text: str) -> None:
    for country in (None, "US", "GB", "ZZ", "not a country"):
        key = number_key(text, country)
        assert key is None or key.lstrip("+").isdigit() and key.lstrip("+").isascii()


@pytest.mark.parametrize(("stored", "query", "country"), [
    ("sip:+14155550123@realm", "(415) 555-0123", "US"),
    ("14155550123@realm", "+1 415 555 0123", None),
    ("14155550123", "4155550123", "US"),
    ("4155550123", "+14155550123", "US"),
    ("(415) 555-0123", "+14155550123", "us"),
    ("02079460018", "+44 20 7946 0018", "GB"),
    ("00442079460018", "+442079460018", "GB"),
    ("011442079460018", "+442079460018", "US"),
    ("1001", "1001", None),
], ids=repr)
def test_a_search_finds_every_stored_spelling(stored: str, query: str,
                                               country: str | None) -> None:
    # What is stored is read without a country; the search brings the country.
    assert number_key(stored) in match_keys(query, country)


@pytest.mark.parametrize(("stored", "query", "country"), [
    ("4155550123", "+14155550123", None),  # a national form without a country: possible only
    ("4155550124", "+14155550123", "US"),
    ("02079460018", "+14155550123", "US"),
    ("1001", "+11001", "US"),
], ids=repr)
def test_a_search_does_not_find_other_numbers(stored: str, query: str,
                                              country: str | None) -> None:
    assert number_key(stored) not in match_keys(query, country)


@given(st.sampled_from(_REGIONS))
def test_every_spelling_of_a_region_example_is_matched(region: str) -> None:
    example = phonenumbers.example_number(region)
    if example is None:
        return
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    spellings = [e164, e164[1:],
                 phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL),
                 phonenumbers.national_significant_number(example)]
    keys = match_keys(e164, region)
    for spelling in spellings:
        assert number_key(spelling) in keys, spelling
    assert match_keys("not a number", region) == frozenset()
