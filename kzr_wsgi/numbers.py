"""The one number rule: a phone number, however it was written, as one comparable key.

Kazoo writes the same party's number in many spellings: ``sip:+14155550123@realm``,
``+1 (415) 555-0123``, ``14155550123``, ``tel:+1-415-555-0123``, or a national form
such as ``4155550123`` or ``020 7946 0018``. Searching (``ls --number``, the API's
``number`` and ``q``, the page) and erasing (``kzr-wsgi erase --number``) compare
numbers through :func:`number_key` only, so what ``ls`` shows is what
``erase --dry-run`` lists.

The rule (pure: no I/O):

* The ``sip:``/``sips:``/``tel:`` scheme, the ``@realm`` part, URI parameters
  (``;user=phone``) and separators (spaces, ``-``, ``.``, ``/``, parentheses) are
  ignored.
* A number written internationally (``+…``, or ``00…``/``011…`` when the country
  says so) is compared in E.164 (``+14155550123``), parsed by ``phonenumbers``
  (Google's libphonenumber, ``phonenumberslite``: the metadata without the geocoder).
* A national form is read in the ``country`` given (``--country`` or the config
  file's ``country``, an ISO 3166 code such as ``US`` or ``GB``) into E.164 too.
* Without a country, or where no country reading gives a possible number, a national
  form is compared by its digits (``4155550123``); :func:`tail` (its last 7 digits)
  is what finds it again as a *possible* match of an E.164 number.
* What is stored is the key read without a country (E.164 when written
  internationally, else the digits), so changing the country needs no reindex: a
  search asks for every key the number may have been stored under (:func:`match_keys`):
  its E.164 form, those digits without the ``+``, and with a country its national forms
  and the way that country dials it abroad.
* Anything else with no digits, or with letters in it (a caller name), is not a number.

>>> number_key("sip:+1-415-555-0123@kazoo.example")
'+14155550123'
>>> number_key("(415) 555-0123", "US"), number_key("(415) 555-0123")
('+14155550123', '4155550123')
>>> number_key("1001"), number_key("Alice"), tail("+14155550123")
('1001', None, '5550123')
"""

from __future__ import annotations

import re

import phonenumbers

__all__ = ["TAIL_DIGITS", "is_international", "is_number", "match_keys", "number_key", "tail"]

#: How many trailing digits make a *possible* match between an E.164 number and a
#: national form stored without a country (the subscriber number in most plans).
TAIL_DIGITS = 7

_SCHEME = re.compile(r"^(?:sips?|tel):", re.IGNORECASE)
#: What a written number may hold besides digits and a leading ``+``.
_SEPARATORS = re.compile(r"[\s\-./()\u00a0\u2010-\u2015]")
_NUMBER = re.compile(r"\+?[0-9]+")


def _bare(text: str) -> str | None:
    """``text`` without scheme, realm, parameters and separators; ``None`` if not a number."""
    text = _SCHEME.sub("", text.strip())
    text = text.partition("@")[0].partition(";")[0]
    text = _SEPARATORS.sub("", text)
    return text if _NUMBER.fullmatch(text) else None


def is_number(text: str | None) -> bool:
    """True when ``text`` is written as a number (a caller name that is itself a number).

    >>> is_number("+1 415 555 0123"), is_number("Bob 2"), is_number("")
    (True, False, False)
    """
    return text is not None and _bare(text) is not None


def _e164(bare: str, country: str | None) -> str | None:
    """``bare`` in E.164 when it can be read as a possible number, else ``None``."""
    region = country.upper() if country else None
    if not bare.startswith("+") and region is None:
        return None
    try:
        parsed = phonenumbers.parse(bare, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def number_key(text: str | None, country: str | None = None) -> str | None:
    """The key two spellings of one number share: E.164 when known, else the digits.

    ``None`` for text that is not a number (empty, a name, letters in it).
    ``country`` reads national forms (an ISO 3166 alpha-2 code, any case).
    """
    if text is None:
        return None
    bare = _bare(text)
    if bare is None:
        return None
    return _e164(bare, country) or bare.lstrip("+")


def is_international(key: str | None) -> bool:
    """True for a key in E.164 (what :func:`number_key` gives a number it could read)."""
    return key is not None and key.startswith("+")


def tail(key_or_text: str | None, digits: int = TAIL_DIGITS) -> str | None:
    """The last ``digits`` digits of a number (``None`` when it has fewer or is none).

    A national form stored without a country and an E.164 number with the same tail
    are a *possible* match: shown by ``erase --dry-run``, never selected by it.
    """
    if key_or_text is None:
        return None
    bare = _bare(key_or_text)
    if bare is None:
        return None
    only = bare.lstrip("+")
    return only[-digits:] if len(only) >= digits else None


def match_keys(text: str | None, country: str | None = None) -> frozenset[str]:
    """Every stored key (:func:`number_key` without a country) that is this number.

    ``text`` is read with ``country`` (so a national form finds E.164 rows). For a
    number read as E.164 the keys are that, its digits without ``+`` (Kazoo often
    writes ``14155550123``), and with a country: the national digits (when the number
    is that country's) and the digits that country dials it with from abroad. Without a
    country a national form matches its own digits only. Empty for text that is not a
    number.

    >>> sorted(match_keys("+1 415 555 0123", "US"))
    ['+14155550123', '01114155550123', '14155550123', '4155550123']
    >>> sorted(match_keys("020 7946 0018", "GB"))
    ['+442079460018', '00442079460018', '02079460018', '2079460018', '442079460018']
    >>> sorted(match_keys("4155550123"))
    ['4155550123']
    """
    key = number_key(text, country)
    if key is None:
        return frozenset()
    if not is_international(key):
        return frozenset((key,))
    keys = {key, key[1:]}
    region = country.upper() if country else None
    if region is not None and region in phonenumbers.SUPPORTED_REGIONS:
        parsed = phonenumbers.parse(key, None)
        national = phonenumbers.national_significant_number(parsed)
        abroad = phonenumbers.format_out_of_country_calling_number(parsed, region)
        keys.add(_digits(abroad))
        # The country's own international prefix works for its own numbers too (00 44…).
        keys.add(_international_prefix(region) + str(parsed.country_code) + national)
        # Countries sharing a calling code (+1, +7, +212…) dial each other nationally.
        if phonenumbers.country_code_for_region(region) == parsed.country_code:
            keys.add(national)
            keys.add(_digits(phonenumbers.format_number(
                parsed, phonenumbers.PhoneNumberFormat.NATIONAL)))
    return frozenset(k for k in keys if k)


def _digits(text: str) -> str:
    return "".join(c for c in text if "0" <= c <= "9")


def _international_prefix(region: str) -> str:
    """The digits ``region`` dials before a country code (``00``, ``011``); ``""`` if none."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None:
        return ""
    prefix = metadata.preferred_international_prefix or metadata.international_prefix or ""
    return prefix if prefix.isdigit() else ""
