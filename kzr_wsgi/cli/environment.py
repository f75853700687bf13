"""One naming of the environment for every command's options.

Each option of each command is read, when the command line does not give it, from:

1. ``KZR_<COMMAND>_<OPTION>``: for that command alone (``KZR_PRUNE_OLDER_THAN``,
   ``KZR_HOLD_ADD_REASON``); it wins, so one command can be told apart from the others;
2. ``KZR_<OPTION>``: for every command with that option (``KZR_ROOT``, ``KZR_PORT``);
3. the names it was read under before, kept as aliases: the ``envvar`` the option
   declares, if it declares one (``--s3``: ``KZR_S3_URL``); otherwise click's automatic
   ``KZR_<COMMAND>_<DEST>`` where ``DEST`` (the parameter's name) is not the option's
   long name (``ls --json``: ``KZR_LS_AS_JSON``).

``<OPTION>`` is the long name in capitals with ``-`` as ``_`` (``--max-size``:
``MAX_SIZE``); ``<COMMAND>`` the command's name, a subcommand's after its group's
(``hold add``: ``HOLD_ADD``). Options declared with
:class:`~kzr_wsgi.cli.params.CommandLineOnly` get no name at all.

:func:`name_variables` sets every option's ``envvar`` to its list once, when the
``kzr-wsgi`` group is put together; click reads the first that is set.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import click

from .params import CommandLineOnly, config_key

PREFIX = "KZR"

#: What each option declared as its ``envvar`` before it was named (so naming twice is
#: naming once).
_DECLARED: weakref.WeakKeyDictionary[click.Option, tuple[str, ...]] = (
    weakref.WeakKeyDictionary())


@dataclass(frozen=True)
class Names:
    """The environment variables one option of one command is read from, first first."""

    #: ``KZR_<COMMAND>_<OPTION>``.
    command: str
    #: ``KZR_<OPTION>``.
    general: str
    #: Earlier names, still read.
    older: tuple[str, ...]

    def all(self) -> list[str]:
        """Every name, in the order they are tried."""
        return [self.command, self.general, *self.older]


def _upper(text: str) -> str:
    return text.upper().replace("-", "_")


def names_for(path: tuple[str, ...], option: click.Option) -> Names | None:
    """The names ``option`` of the command at ``path`` (``("hold", "add")``) is read from.

    ``None`` for an option that is never read from the environment: command-line-only,
    one without a long name, or one that gives no value (``--help``, ``--version``).
    """
    key = config_key(option)
    if isinstance(option, CommandLineOnly) or key is None or not option.expose_value:
        return None
    command = "_".join([PREFIX, *(_upper(part) for part in path)])
    general = f"{PREFIX}_{_upper(key)}"
    mine = f"{command}_{_upper(key)}"
    if option not in _DECLARED:
        declared = option.envvar
        _DECLARED[option] = ((declared,) if isinstance(declared, str)
                             else tuple(declared or ()))
    older = _DECLARED[option] or (f"{command}_{_upper(option.name or key)}",)
    return Names(mine, general, tuple(n for n in dict.fromkeys(older) if n not in (mine, general)))


def commands(group: click.Command, path: tuple[str, ...] = ()
             ) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command under ``group`` (itself first), with its path of names."""
    yield path, group
    if isinstance(group, click.Group):
        for name, command in sorted(group.commands.items()):
            yield from commands(command, (*path, name))


def name_variables(group: click.Group) -> None:
    """Give every option of every command under ``group`` its environment variables."""
    for path, command in commands(group):
        for param in command.params:
            if isinstance(param, click.Option):
                names = names_for(path, param)
                if names is not None:
                    param.envvar = names.all()
