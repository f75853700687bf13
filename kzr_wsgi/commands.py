"""Kept so that ``import kzr_wsgi.commands``, documented before, still works: the code is in
:mod:`kzr_wsgi.cli.options`."""

from __future__ import annotations

from .cli.options import *  # noqa: F403
