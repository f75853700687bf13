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

__all__ = ["TAIL_DIGITS", "is_number", "is_international", "number_key", "tail"]

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
