"""Ages, as every command and the config file spell them: a whole number and a unit.

Pure: no I/O. Units are ``s`` (seconds), ``m`` (minutes), ``h`` (hours), ``d`` (days),
``w`` (weeks) and ``y`` (years of 365 days: retention laws count years, not leap days).
``m`` is always minutes: a month is never a unit (months differ in length, and ``30d``
says what is meant). ``0s`` is an age too (everything older than now). ``forever`` is
not an age but a policy: only the config file's retention tables take it, through
:func:`parse_policy_age`.

>>> parse_age("90d")
datetime.timedelta(days=90)
>>> parse_age("2y").days
730
>>> parse_age("30m")
datetime.timedelta(seconds=1800)
>>> parse_policy_age("forever") is None
True
"""

from __future__ import annotations

import re
from datetime import timedelta

#: What one of each unit is.
UNITS: dict[str, timedelta] = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
    "y": timedelta(days=365),
}

#: The word a retention table uses for "never prune".
FOREVER = "forever"

_AGE = re.compile(r"([0-9]+)([smhdwy])")
#: What an age looks like, as every refusal says it.
_SHAPE = ("a whole number and a unit s, m, h, d, w or y (m is minutes, a year is 365 days), "
          "e.g. 90d, 12w, 2y, 30m, 0s")
#: Far beyond any retention law, and below what ``timedelta`` can hold.
_MAX = timedelta(days=365 * 10_000)


class AgeError(ValueError):
    """Text that is not an age; the message says what one looks like."""


def parse_age(text: str) -> timedelta:
    """``"90d"`` -> ``timedelta(days=90)``; raises :class:`AgeError` for anything else.

    Exactly digits then one unit letter, lower case, nothing around them: ``"1.5d"``,
    ``"-1d"``, ``"90"``, ``"90 d"``, ``"1M"``, ``"1mo"`` and ``"forever"`` are all refused.
    """
    match = _AGE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise AgeError(f"{text!r} is not an age: {_SHAPE}")
    # Leading zeros are harmless, but an absurd count would overflow timedelta.
    count = int(match.group(1))
    unit = UNITS[match.group(2)]
    if count > _MAX // unit:
        raise AgeError(f"{text!r} is too long an age")
    return count * unit


def parse_policy_age(text: str) -> timedelta | None:
    """An age as a retention policy states it: :func:`parse_age`, or ``None`` for ``forever``."""
    if text == FOREVER:
        return None
    try:
        return parse_age(text)
    except AgeError:
        raise AgeError(f"{text!r} is not an age: {_SHAPE}, or \"forever\"") from None


def format_age(age: timedelta | None) -> str:
    """The shortest exact spelling of ``age`` (``None`` is ``forever``); the inverse of parsing.

    >>> format_age(timedelta(days=14)), format_age(timedelta(hours=36))
    ('2w', '36h')
    >>> format_age(timedelta(minutes=90))
    '90m'
    """
    if age is None:
        return FOREVER
    for unit in ("y", "w", "d", "h", "m", "s"):
        count, rest = divmod(age, UNITS[unit])
        if not rest and count:
            return f"{count}{unit}"
    return f"{int(age.total_seconds())}s"
