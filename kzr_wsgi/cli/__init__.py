"""``kzr-wsgi``: the command line. ``kzr-wsgi serve`` runs the receiver on its own.

One module per command or group: :mod:`~kzr_wsgi.cli.serve` (with
:mod:`~kzr_wsgi.cli.serving` and :mod:`~kzr_wsgi.cli.announce`),
:mod:`~kzr_wsgi.cli.catalog` (``ls``, ``reindex``, ``verify``),
:mod:`~kzr_wsgi.cli.retention` (``prune``, ``hold``, ``audit``), :mod:`~kzr_wsgi.cli.erase`,
:mod:`~kzr_wsgi.cli.export`, :mod:`~kzr_wsgi.cli.viewer` (``viewer add|rm|passwd``),
:mod:`~kzr_wsgi.cli.sweep`, :mod:`~kzr_wsgi.cli.worker`, :mod:`~kzr_wsgi.cli.transcript`
and :mod:`~kzr_wsgi.cli.check`;
what they share is in
:mod:`~kzr_wsgi.cli.options` (the store's options), :mod:`~kzr_wsgi.cli.params` (value
types), :mod:`~kzr_wsgi.cli.config` (the config file) and
:mod:`~kzr_wsgi.cli.environment`.

Every option can also come from the environment as ``KZR_<OPTION>`` (``KZR_ROOT``,
``KZR_PORT``, …), or as ``KZR_<COMMAND>_<OPTION>`` for one command alone, so secrets
need not appear on a command line.
"""

from __future__ import annotations

import click

from . import catalog as catalog_commands
from .check import check as check_command
from .environment import name_variables
from .erase import erase_command
from .export import export
from .params import Size
from .retention import audit, hold, prune
from .serve import serve
from .serving import not_found
from .sweep import sweep_command
from .transcript import transcript
from .viewer import viewer
from .worker import worker

__all__ = ["Size", "main", "not_found", "serve"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kzr_wsgi")
def main() -> None:
    """kzr_wsgi: a safe receiver for Kazoo (2600Hz) call recordings."""


main.add_command(serve)
main.add_command(check_command)
main.add_command(catalog_commands.ls)
main.add_command(catalog_commands.reindex)
main.add_command(catalog_commands.verify)
main.add_command(sweep_command)
main.add_command(prune)
main.add_command(hold)
main.add_command(audit)
main.add_command(erase_command)
main.add_command(worker)
main.add_command(export)
main.add_command(viewer)
main.add_command(transcript)
# Once every command is in: each option's KZR_… names (kzr_wsgi.cli.environment).
name_variables(main)
