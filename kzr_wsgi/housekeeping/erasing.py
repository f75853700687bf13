"""What an erase selects: its selectors, and which rows they match (pure: no I/O).

``kzr-wsgi erase`` selects by ``--number``, ``--call-id``, ``--account`` and ``--id`` (the
catalog id). Selectors of different kinds combine with AND, repeats of one kind with OR.
A number is compared by the one number rule (:mod:`kzr_wsgi.numbers`) in from, to, the
caller id number and a caller id name that is itself a number: the same keys
``kzr-wsgi ls --number`` searches the catalog for, so ``ls`` shows what
``erase --dry-run`` lists. A stored national form that could not be read as E.164 and
ends in the same :data:`~kzr_wsgi.numbers.TAIL_DIGITS` digits as an E.164 number asked
for is a *possible* match: listed by the dry run, never selected.

>>> s = Selectors(numbers=("+1 415 555 0123",))
>>> row = {"from": "sip:+14155550123@realm", "to": "1001"}
>>> s.selects(row), s.possible({"from": "5550199", "to": "1001"})
(True, False)
>>> s.possible({"from": "(415) 555-0123", "to": "1001"})
True
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..numbers import is_international, match_keys, number_key, tail

#: A number with fewer digits than this is an extension: erasing by it needs ``--account``.
MIN_NUMBER_DIGITS = 7
#: The fields of a row (as :meth:`~kzr_wsgi.catalog.Row.to_json` names them) a number is
#: compared in.
NUMBER_FIELDS = ("from", "to", "caller_id_number", "caller_id_name")


class SelectorError(ValueError):
    """Selectors that cannot be used as given (the message says what is missing)."""


@dataclass(frozen=True)
class Selectors:
    """Which recordings an erase selects (kinds AND, repeats OR)."""

    numbers: tuple[str, ...] = ()
    call_ids: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    #: Catalog ids (:func:`~kzr_wsgi.catalog.row_id`).
    ids: tuple[str, ...] = ()
    #: ISO 3166 code national forms of the numbers are read in.
    country: str | None = None

    def check(self, entire_account: bool) -> None:
        """Raise :class:`SelectorError` for selectors an erase refuses."""
        if not (self.numbers or self.call_ids or self.accounts or self.ids):
            raise SelectorError("say what to erase: --number, --call-id, --account or --id")
        for number in self.numbers:
            key = number_key(number, self.country)
            if key is None:
                raise SelectorError(f"--number {number!r} is not a number")
            if len(key.lstrip("+")) < MIN_NUMBER_DIGITS and not self.accounts:
                raise SelectorError(
                    f"--number {number!r} is an extension (fewer than {MIN_NUMBER_DIGITS} "
                    "digits): give its --account too")
        alone = not (self.numbers or self.call_ids or self.ids)
        if self.accounts and alone and not entire_account:
            raise SelectorError("--account alone erases every recording of the account: "
                                "add --entire-account to mean it")

    def keys(self) -> frozenset[str]:
        """Every stored number key the numbers select."""
        found: set[str] = set()
        for number in self.numbers:
            found |= match_keys(number, self.country)
        return frozenset(found)

    def selects(self, row: Mapping[str, Any]) -> bool:
        """True when the row (``Row.to_json()``'s keys) is selected."""
        if self.ids and row.get("id") not in self.ids:
            return False
        if self.call_ids and row.get("call_id") not in self.call_ids:
            return False
        if self.accounts and row.get("account_id") not in self.accounts:
            return False
        if self.numbers:
            keys = self.keys()
            return any(number_key(row.get(f)) in keys for f in NUMBER_FIELDS)
        return True

    def possible(self, row: Mapping[str, Any]) -> bool:
        """True for a row not selected whose stored national number has the tail of an
        E.164 number asked for (listed by a dry run as a possible match)."""
        if not self.numbers or self.selects(row):
            return False
        if (self.ids and row.get("id") not in self.ids) or (
                self.call_ids and row.get("call_id") not in self.call_ids) or (
                self.accounts and row.get("account_id") not in self.accounts):
            return False
        wanted = {tail(k) for k in self.keys() if is_international(k)} - {None}
        for f in NUMBER_FIELDS:
            key = number_key(row.get(f))
            if key is not None and not is_international(key) and tail(key) in wanted:
                return True
        return False

    def fingerprint(self, key: bytes) -> str:
        """The selectors as a keyed hash (HMAC-SHA256): what the audit trail keeps.

        Numbers by their keys, so a later request for the same number in another
        spelling has the same fingerprint; never the selectors themselves.
        """
        canonical = json.dumps({
            "numbers": sorted(number_key(n, self.country) or n for n in self.numbers),
            "call_ids": sorted(self.call_ids), "accounts": sorted(self.accounts),
            "ids": sorted(self.ids)}, sort_keys=True, ensure_ascii=True)
        return keyed_hash(key, canonical)


def keyed_hash(key: bytes, text: str) -> str:
    """HMAC-SHA256 of ``text`` under ``key``, hex (the erase key: see :mod:`.tombstones`)."""
    return hmac.new(key, text.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()
