"""Kept so that ``import kzr_wsgi.commands``, documented before, still works: the code is in
:mod:`kzr_wsgi.cli.options` (the store's options), :mod:`kzr_wsgi.cli.params` (value types),
:mod:`kzr_wsgi.building` (building a store) and :mod:`kzr_wsgi.cli.announce`."""

from __future__ import annotations

from .cli.announce import catalog_notices
from .cli.options import *  # noqa: F403
from .cli.options import __all__ as _options

__all__ = [*_options, "catalog_notices"]
