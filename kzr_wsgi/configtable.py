"""What the parser of one config-file table needs: the error that names a key, and ages.

Pure: no I/O, no click. A table's parser (``[retention]``'s is
:func:`kzr_wsgi.housekeeping.policy.parse_retention`) takes the table as ``tomllib``
gave it and returns a value object; on a mistake it raises :class:`TableError` naming the
key *inside the table*, and the config reader (:mod:`kzr_wsgi.configfile`) adds the
file, the line and the table's name. So a parser is tested without a file, and lives
beside the code that uses its value, not beside the command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from .ages import AgeError, parse_age, parse_policy_age


class TableError(ValueError):
    """A key of a table is wrong: where it is below the table, which key, and why."""

    def __init__(self, below: tuple[str, ...], key: str, problem: str) -> None:
        super().__init__(f"key {key!r}: {problem}")
        #: Sub-tables between the table and the key (``("kinds",)`` for
        #: ``[retention.kinds]``); ``()`` for a key of the table itself.
        self.below = below
        self.key = key
        self.problem = problem


def table_age(below: tuple[str, ...], key: str, value: Any, *, forever: bool = False
              ) -> timedelta | None:
    """``value`` as an age (``"90d"``); with ``forever``, ``"forever"`` is ``None``.

    Anything else raises :class:`TableError` naming ``key``.
    """
    if not isinstance(value, str):
        raise TableError(below, key, "must be an age in quotes, e.g. \"90d\"")
    try:
        return parse_policy_age(value) if forever else parse_age(value)
    except AgeError as exc:
        raise TableError(below, key, str(exc)) from exc


def sub_table(table: Mapping[str, Any], name: str, shown: str) -> Mapping[str, Any]:
    """``table[name]`` when it is a table (empty when absent); ``shown`` is its header."""
    value = table.get(name, {})
    if not isinstance(value, dict):
        raise TableError((), name, f"must be a table, [{shown}]")
    return value


def only_keys(table: Mapping[str, Any], known: tuple[str, ...], what: str) -> None:
    """Refuse the first key of ``table`` not in ``known``; ``what`` lists the known ones."""
    for key in table:
        if key not in known:
            raise TableError((), key, f"unknown: not {what}")
