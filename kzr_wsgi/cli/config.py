"""The TOML config file: ``kzr-wsgi serve --config FILE`` (or ``KZR_CONFIG``).

Every ``serve`` option is a top-level key under its long name without the dashes
(``max-size = "2G"``, ``read-back = true``); a repeatable option takes an array
(``basic-auth = ["kazoo:secret"]``). A ``[retention]`` table holds the pruning policy::

    root = "/srv/recordings"
    port = 8080
    token = ["s3cret"]

    [retention]
    default = "90d"
    [retention.accounts]
    4a1b0c2d3e4f5a6b7c8d9e0f1a2b3c4d = "forever"
    [retention.kinds]
    attachment = "2y"

The file's keys become the command's click ``default_map``, so the precedence is
click's own: the command line, then the environment (``KZR_…``), then the file, then
the built-in default. The known keys are read from the ``serve`` command's own
parameters, so an option added to ``serve`` is a config key without a list to keep.
A key the program does not know, a value of the wrong type and a bad age are errors
naming the key and its line; nothing is ignored.

The other commands (``ls``, ``prune``, …) take ``--config`` too and read the store's
keys from it: ``root``, ``s3``, ``s3-endpoint`` and ``catalog``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from ..ages import AgeError, format_age, parse_age, parse_policy_age
from ..errors import KzrError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

F = TypeVar("F", bound=Callable[..., Any])

#: The keys a store command reads from the file (the options of ``store_options``).
STORE_KEYS = ("root", "s3", "s3-endpoint", "catalog")
#: The recording kinds a policy may name (``Kind`` values).
KINDS = ("call", "caller", "attachment")
#: How often the housekeeper runs when ``[retention]`` does not say.
DEFAULT_INTERVAL = timedelta(hours=1)


class ConfigError(KzrError):
    """The config file cannot be used; the message names the file, the line and the key."""


@dataclass(frozen=True)
class RetentionPolicy:
    """How long recordings are kept: a default, per-account and per-kind overrides.

    An age of ``None`` means forever. :meth:`age_for` decides for one recording.
    """

    #: For call and caller recordings with no override; ``None``: kept forever.
    default: timedelta | None = None
    #: Account id -> age (``None``: that account's recordings are kept forever).
    accounts: Mapping[str, timedelta | None] = field(default_factory=dict)
    #: Kind (``call``, ``caller``, ``attachment``) -> age.
    kinds: Mapping[str, timedelta | None] = field(default_factory=dict)
    #: How often ``serve``'s housekeeper prunes.
    interval: timedelta = DEFAULT_INTERVAL

    def age_for(self, account_id: str | None, kind: str) -> timedelta | None:
        """How old a recording of ``kind`` in ``account_id`` may grow; ``None``: forever.

        The account's rule and the kind's rule replace the default; when both apply the
        longer one wins (deleting is the direction that cannot be undone). Storage-plan
        attachments (voicemail, greetings, prompts Kazoo still plays) are pruned only
        when ``[retention.kinds]`` names ``attachment``.
        """
        if kind not in self.kinds and kind not in ("call", "caller"):
            return None
        rules: list[timedelta | None] = []
        if account_id is not None and account_id in self.accounts:
            rules.append(self.accounts[account_id])
        if kind in self.kinds:
            rules.append(self.kinds[kind])
        if not rules:
            return self.default
        if any(rule is None for rule in rules):
            return None
        return max(rule for rule in rules if rule is not None)

    def describe(self) -> str:
        """One line for logs: ``default 90d; accounts a=forever; kinds attachment=2y``."""
        parts = [f"default {format_age(self.default)}"]
        if self.accounts:
            parts.append("accounts " + ", ".join(
                f"{k}={format_age(v)}" for k, v in sorted(self.accounts.items())))
        if self.kinds:
            parts.append("kinds " + ", ".join(
                f"{k}={format_age(v)}" for k, v in sorted(self.kinds.items())))
        return "; ".join(parts)


@dataclass(frozen=True)
class Config:
    """A loaded, checked config file."""

    path: Path
    #: Top-level keys as written (``"max-size": "2G"``), options of ``serve`` or the store's.
    options: Mapping[str, Any]
    #: The ``[retention]`` table; ``None`` when the file has none.
    retention: RetentionPolicy | None

    def default_map(self, command: click.Command, only: Iterable[str] | None = None
                    ) -> dict[str, Any]:
        """The file's options as ``command``'s click ``default_map`` (keys: parameter names).

        ``only`` limits it to those config keys (a store command takes just the store's).
        """
        wanted = set(self.options if only is None else only)
        by_key = option_keys(command)
        return {by_key[key].name: value for key, value in self.options.items()
                if key in wanted and key in by_key and by_key[key].name}


def option_keys(command: click.Command) -> dict[str, click.Parameter]:
    """``command``'s options by config key: the first long name without its dashes."""
    keys: dict[str, click.Parameter] = {}
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        long = [opt for opt in param.opts if opt.startswith("--")]
        if long and long[0] != "--config":
            keys[long[0][2:]] = param
    return keys


def load_config(path: str | Path, serve: click.Command,
                extra: Mapping[str, click.Parameter] | None = None) -> Config:
    """Read and check ``path`` against ``serve``'s options (and ``extra`` ones).

    Every value is converted with its option's own click type now, so a wrong one
    fails at start-up with its line, not later. Raises :class:`ConfigError`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    known = {**option_keys(serve), **(extra or {})}
    where = _Locator(path, text)
    options: dict[str, Any] = {}
    retention = None
    for key, value in data.items():
        if key == "retention":
            if not isinstance(value, dict):
                raise ConfigError(where.say((), key, "must be a table, [retention]"))
            retention = _retention(value, where)
            continue
        param = known.get(key)
        if param is None:
            raise ConfigError(where.say((), key, "unknown: not an option kzr-wsgi knows "
                                                 "(see `kzr-wsgi serve --help`)"))
        _check_value(param, key, value, where)
        options[key] = value
    return Config(path=path, options=options, retention=retention)


def _check_value(param: click.Parameter, key: str, value: Any, where: _Locator) -> None:
    if param.multiple and not isinstance(value, list):
        raise ConfigError(where.say((), key, "repeatable, so an array, e.g. "
                                             f'{key} = ["…"]'))
    if isinstance(value, (dict, list)) and not param.multiple:
        raise ConfigError(where.say((), key, "takes one value, not a table or an array"))
    if isinstance(param, click.Option) and param.is_flag and not isinstance(value, bool):
        raise ConfigError(where.say((), key, "a switch: true or false"))
    try:
        ctx = click.Context(click.Command("config"))
        param.type_cast_value(ctx, value)
    except click.BadParameter as exc:
        raise ConfigError(where.say((), key, exc.message)) from exc


def _retention(table: dict[str, Any], where: _Locator) -> RetentionPolicy:
    def age(path: tuple[str, ...], key: str, value: Any, forever: bool) -> timedelta | None:
        if not isinstance(value, str):
            raise ConfigError(where.say(path, key, "must be an age in quotes, e.g. \"90d\""))
        try:
            return parse_policy_age(value) if forever else parse_age(value)
        except AgeError as exc:
            raise ConfigError(where.say(path, key, str(exc))) from exc

    def subtable(name: str) -> dict[str, timedelta | None]:
        value = table.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(where.say(("retention",), name,
                                        f"must be a table, [retention.{name}]"))
        out = {}
        for key, item in value.items():
            if name == "kinds" and key not in KINDS:
                raise ConfigError(where.say(("retention", name), key,
                                            "unknown: not a kind (call, caller, attachment)"))
            out[str(key)] = age(("retention", name), key, item, True)
        return out

    for key in table:
        if key not in ("default", "accounts", "kinds", "interval"):
            raise ConfigError(where.say(
                ("retention",), key,
                "unknown: not a retention setting (default, interval, "
                "[retention.accounts], [retention.kinds])"))
    default = age(("retention",), "default", table["default"], True) \
        if "default" in table else None
    interval = DEFAULT_INTERVAL
    if "interval" in table:
        interval = age(("retention",), "interval", table["interval"], False) or interval
        if interval <= timedelta(0):
            raise ConfigError(where.say(("retention",), "interval", "must be longer than 0s"))
    return RetentionPolicy(default=default, accounts=subtable("accounts"),
                           kinds=subtable("kinds"), interval=interval)


# A table header ([a.b] or [[a.b]]) and the start of a key/value line (bare, quoted or
# dotted keys). tomllib reports no positions, so lines are found in the text itself.
_HEADER = re.compile(r"\s*\[\[?\s*(?P<name>[^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"\s*(?P<key>(?:[A-Za-z0-9_-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*')"
                  r"(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*'))*)\s*=")
_PART = re.compile(r"[A-Za-z0-9_-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*'")


def _split_key(text: str) -> tuple[str, ...]:
    """``a."b.c".d`` -> ``("a", "b.c", "d")``."""
    parts = []
    for raw in _PART.findall(text):
        if raw.startswith('"'):
            parts.append(tomllib.loads(f"k = {raw}")["k"])
        elif raw.startswith("'"):
            parts.append(raw[1:-1])
        else:
            parts.append(raw)
    return tuple(parts)


class _Locator:
    """Finds the line a key was written on, respecting tables and dotted keys."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        #: (full key path, line number) for every key and table header, in order.
        self.lines: list[tuple[tuple[str, ...], int]] = []
        table: tuple[str, ...] = ()
        in_multiline: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if in_multiline is not None:
                # Inside a multi-line string: its lines are data, not keys.
                if line.count(in_multiline) % 2 == 1:
                    in_multiline = None
                continue
            header = _HEADER.match(line)
            if header is not None:
                table = _split_key(header.group("name"))
                self.lines.append((table, number))
                continue
            key = _KEY.match(line)
            if key is not None:
                self.lines.append(((*table, *_split_key(key.group("key"))), number))
                rest = line[key.end():]
                for quote in ('"""', "'''"):
                    if rest.count(quote) % 2 == 1:
                        in_multiline = quote

    def line_of(self, full: tuple[str, ...]) -> int | None:
        """The first line that defines ``full`` (or a dotted key beneath it)."""
        for keys, number in self.lines:
            if keys[: len(full)] == full:
                return number
        return None

    def say(self, table: tuple[str, ...], key: str, problem: str) -> str:
        """``FILE:LINE: key 'k' in [table]: PROBLEM``."""
        number = self.line_of((*table, key))
        where = f"{self.path}:{number}" if number is not None else str(self.path)
        inside = f" in [{'.'.join(table)}]" if table else ""
        return f"{where}: key {key!r}{inside}: {problem}"


# -- click glue ---------------------------------------------------------------------------


def _serve_command() -> click.Command:
    # Imported when a file is read, not at import time: cli imports the commands.
    from . import serve

    return serve


def _store_params() -> dict[str, click.Parameter]:
    """The store options' parameters, by key (they are known keys even where serve lacks one)."""
    from .options import store_options

    @store_options
    def probe(**kwargs: Any) -> None:
        """Only its parameters are used."""

    return option_keys(click.command()(probe))


def read_config(ctx: click.Context, path: str, only: Iterable[str] | None = None) -> Config:
    """Load ``path`` for the command of ``ctx`` and set its ``default_map``.

    Called by ``--config``'s callback, before the other options are processed (the
    option is eager), so the file's values take their place below the command line
    and the environment.
    """
    try:
        config = load_config(path, _serve_command(), extra=_store_params())
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param_hint="--config") from exc
    ctx.default_map = {**(ctx.default_map or {}), **config.default_map(ctx.command, only)}
    return config


def config_option(only: Iterable[str] | None = None) -> Callable[[F], F]:
    """The ``--config FILE`` option (also ``KZR_CONFIG``); the command receives the Config.

    ``only`` limits the keys fed to the command (the store commands take the store's).
    """
    keys = tuple(only) if only is not None else None

    def callback(ctx: click.Context, param: click.Parameter, value: str | None
                 ) -> Config | None:
        return None if value is None else read_config(ctx, value, keys)

    return click.option(
        "--config", "config", type=click.Path(dir_okay=False, exists=True), default=None,
        envvar="KZR_CONFIG", is_eager=True, expose_value=True, callback=callback,
        metavar="FILE",
        help="TOML config file: options under their long names, and a [retention] table "
             "(also KZR_CONFIG). The command line and the environment override it.")
