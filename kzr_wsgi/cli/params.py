"""The command line's value types, and the mark for options typed on the command line only.

Every size option is a :class:`Size`, every age option (``--older-than``) an :class:`Age`
and every ``--since``/``--until`` a :class:`When`, so each is spelled, checked and shown
alike in every command. An option declared with ``cls=CommandLineOnly`` is never read
from the environment nor from the config file (see :class:`CommandLineOnly`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import click

from ..ages import AgeError, parse_age
from ..catalog import parse_when

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class Size(click.ParamType):  # type: ignore[type-arg]
    """A byte count: ``1048576``, ``500M``, ``2G`` (binary units; ``B``/``iB`` may follow)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("IB").removesuffix("B")
        unit = text[-1:] if text[-1:] in _UNITS else ""
        number = text[: len(text) - len(unit)]
        try:
            size = int(float(number) * _UNITS[unit])
        except ValueError:
            self.fail(f"{value!r} is not a size such as 1048576, 500M or 2G", param, ctx)
        if size <= 0:
            self.fail("size must be positive", param, ctx)
        return size


class Age(click.ParamType):  # type: ignore[type-arg]
    """An age option: ``90d``, ``12w``, ``2y``, ``30m``, ``0s`` (see :mod:`kzr_wsgi.ages`)."""

    name = "age"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_age(str(value))
        except AgeError as exc:
            self.fail(str(exc), param, ctx)


class When(click.ParamType):  # type: ignore[type-arg]
    """A date (``2026-01-31``, UTC) or an ISO 8601 time; ``end`` makes a date its last moment."""

    name = "when"

    def __init__(self, end: bool = False) -> None:
        self.end = end

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_when(str(value), end=self.end)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class CountryCode(click.ParamType):  # type: ignore[type-arg]
    """An ISO 3166 alpha-2 country code the number rule knows (``US``, ``gb``), upper-cased."""

    name = "country"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        import phonenumbers

        code = str(value).strip().upper()
        if code not in phonenumbers.SUPPORTED_REGIONS:
            self.fail(f"{value!r} is not an ISO 3166 country code phone numbers are read in "
                      "(e.g. US, GB, DE)", param, ctx)
        return code


class CommandLineOnly(click.Option):
    """An option read from the command line alone: never the environment, never the file.

    For what must be typed each time because a value left over in an environment or a
    shared config file would act on the wrong thing (which recordings a destructive
    command selects)::

        @click.option("--call-id", cls=CommandLineOnly, help="…")

    The environment naming (:mod:`kzr_wsgi.cli.environment`) gives it no variable, and the
    config reader refuses it as a key, saying why.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("envvar") is not None:
            raise TypeError("a command-line-only option takes no envvar")
        kwargs["allow_from_autoenv"] = False
        super().__init__(*args, **kwargs)


def config_key(option: click.Option) -> str | None:
    """``option``'s key in the config file and its name in the environment (as ``KZR_…``).

    Its first long name without the dashes (``--max-size``: ``max-size``); ``None`` for
    an option with no long name.
    """
    long = [opt for opt in option.opts if opt.startswith("--")]
    return long[0][2:] if long else None
