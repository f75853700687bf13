"""The config file and the commands: ``--config FILE`` (or ``KZR_CONFIG``) on any command.

Every option a command reads from the file is a top-level key under its long name
without the dashes (``max-size = "2G"``, ``read-back = true``); a repeatable option takes
an array (``basic-auth = ["kazoo:secret"]``). Tables (``[retention]``) are registered
in :data:`kzr_wsgi.configfile.TABLES`::

    root = "/srv/recordings"
    port = 8080
    token = ["s3cret"]

    [retention]
    default = "90d"

Each command declares what it reads through its ``--config`` option
(:func:`config_option`): which of its options (``serve``: every one; the store
commands: the store's, :data:`STORE_KEYS`) and which tables. The reader learns the
valid keys from the root command group, every command's declarations together, so
one file is checked whole (a key no command reads, a value of the wrong type, a bad
age: errors naming the key and its line) and still serves every command. The file's
keys a command reads become its click ``default_map``, so the precedence is click's
own: the command line, then the environment (``KZR_…``), then the file, then the
built-in default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from ..configfile import RETENTION, TABLES, Config, ConfigError, Locator, Table, parse_table
from ..configfile import read_toml as _read_toml
from ..housekeeping.policy import DEFAULT_INTERVAL, KINDS, RetentionPolicy
from .environment import commands
from .params import CommandLineOnly, config_key

__all__ = [
    "DEFAULT_INTERVAL", "KINDS", "RETENTION", "STORE_KEYS", "Config", "ConfigError",
    "ConfigOption", "Reading", "RetentionPolicy", "config_option", "load_config",
    "option_keys", "read_config", "readings",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The keys a store command reads from the file (the options of ``store_options``).
STORE_KEYS = ("root", "s3", "s3-endpoint", "catalog")


class ConfigOption(click.Option):
    """The ``--config`` option, carrying what its command reads from the file."""

    def __init__(self, *args: Any, keys: tuple[str, ...] | None = None,
                 tables: tuple[Table[Any], ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The config keys the command reads; ``None``: every option it has.
        self.keys = keys
        #: The tables the command reads.
        self.tables = tables


@dataclass(frozen=True)
class Reading:
    """What one command reads from the config file."""

    #: The command's name, a subcommand's after its group's (``hold add``).
    command: str
    #: Config key -> the command's option.
    keys: dict[str, click.Parameter]
    tables: tuple[Table[Any], ...]


def option_keys(command: click.Command) -> dict[str, click.Parameter]:
    """``command``'s options by config key (its first long name without the dashes).

    ``--config`` itself is not a key; nor is an option given on the command line only.
    """
    keys: dict[str, click.Parameter] = {}
    for param in command.params:
        # A table's option (``--transcribe-url``) is spelled in its table, never at the top.
        if isinstance(param, click.Option) and not isinstance(
                param, ConfigOption | CommandLineOnly) and not getattr(param, "table", None):
            key = config_key(param)
            if key is not None and param.expose_value:
                keys[key] = param
    return keys


def reading(name: str, command: click.Command) -> Reading | None:
    """What ``command`` reads from the file, as its ``--config`` declares; ``None``: nothing."""
    declared = next((p for p in command.params if isinstance(p, ConfigOption)), None)
    if declared is None:
        return None
    own = option_keys(command)
    wanted = own if declared.keys is None else declared.keys
    missing = [key for key in wanted if key not in own]
    if missing:
        # A mistake in the program, not in a file: say it loudly.
        raise RuntimeError(f"{name} declares config keys it has no option for: {missing}")
    return Reading(name, {key: own[key] for key in wanted}, declared.tables)


def readings(program: click.Command) -> Iterator[Reading]:
    """What every command under ``program`` (itself included) reads, in name order."""
    for path, command in commands(program):
        found = reading(" ".join(path) or (command.name or ""), command)
        if found is not None:
            yield found


def load_config(path: str | Path, program: click.Command) -> Config:
    """Read and check ``path`` against what the commands of ``program`` read.

    ``program`` is the root group (``kzr-wsgi``), or one command alone. Every value is
    converted with each reading option's own click type now, so a wrong one fails at
    start-up with its line, not later. Raises :class:`ConfigError`.
    """
    data, where = _read_toml(path)
    readers: dict[str, list[click.Parameter]] = {}
    tables: dict[str, Table[Any]] = {}
    for found in readings(program):
        for key, param in found.keys.items():
            readers.setdefault(key, []).append(param)
        tables.update((table.name, table) for table in found.tables)
    options: dict[str, Any] = {}
    parsed: dict[str, Any] = {}
    for key, value in data.items():
        if key in tables:
            parsed[key] = parse_table(tables[key], value, where)
            continue
        if key not in readers:
            raise ConfigError(where.say((), key, _unknown(key, program, tables)))
        for param in readers[key]:
            _check_value(param, key, value, where)
        options[key] = value
    return Config(path=Path(path), options=options, tables=parsed)


def _unknown(key: str, program: click.Command, read: dict[str, Table[Any]]) -> str:
    """Why ``key`` is refused: a table's, an option no command reads from a file, or none."""
    claimed = TABLES.claiming(key)
    if claimed is not None:
        table, rest = claimed
        if table.name not in read:
            return f"unknown: no command here reads a [{table.name}] table"
        if not rest:
            return f"a table: write it as [{table.name}]"
        return f"belongs in the [{table.name}] table: write `{rest} = …` under [{table.name}]"
    having = [(" ".join(path), param) for path, command in commands(program)
              for param in command.params
              if isinstance(param, click.Option) and config_key(param) == key]
    if having and all(isinstance(param, CommandLineOnly) for _, param in having):
        return "given on the command line only, never in a file or the environment"
    if having:
        named = ", ".join(sorted({name for name, param in having
                                  if not isinstance(param, CommandLineOnly)}))
        return (f"an option of {named}, not read from a file: give it on the command "
                "line or in the environment")
    return "unknown: not an option kzr-wsgi knows (see `kzr-wsgi serve --help`)"


def _check_value(param: click.Parameter, key: str, value: Any, where: Locator) -> None:
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


def read_config(ctx: click.Context, path: str) -> Config:
    """Load ``path`` for the command of ``ctx`` and set its ``default_map``.

    Called by ``--config``'s callback, before the other options are processed (the
    option is eager), so the file's values take their place below the command line
    and the environment. The file is checked against the whole program (the root of
    ``ctx``); the command takes the keys its ``--config`` declares.
    """
    try:
        config = load_config(path, ctx.find_root().command)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param_hint="--config") from exc
    mine = reading(ctx.info_name or "", ctx.command)
    taken = {} if mine is None else {
        str(param.name): config.options[key] for key, param in mine.keys.items()
        if key in config.options and param.name}
    ctx.default_map = {**(ctx.default_map or {}), **taken}
    return config


def config_option(keys: Iterable[str] | None = None, tables: Iterable[Table[Any]] = ()
                  ) -> Callable[[F], F]:
    """The ``--config FILE`` option (also ``KZR_CONFIG``); the command receives the Config.

    It declares what the command reads from the file: ``keys`` (config keys of its own
    options; ``None``: every option it has) and ``tables`` (see
    :data:`kzr_wsgi.configfile.TABLES`).
    """

    def callback(ctx: click.Context, param: click.Parameter, value: str | None
                 ) -> Config | None:
        return None if value is None else read_config(ctx, value)

    keys = None if keys is None else tuple(keys)
    tables = tuple(tables)
    said = ("options under their long names" if keys is None
            else " and ".join(filter(None, (", ".join(keys[:-1]), *keys[-1:]))) or "no option")
    if tables:
        said += ", and a " + ", ".join(f"[{t.name}]" for t in tables) + " table"
    return click.option(
        "--config", "config", cls=ConfigOption, keys=keys, tables=tables,
        type=click.Path(dir_okay=False, exists=True), default=None, envvar="KZR_CONFIG",
        is_eager=True, expose_value=True, callback=callback, metavar="FILE",
        help=f"TOML config file: {said} (also KZR_CONFIG). The command line and the "
             "environment override it.")
