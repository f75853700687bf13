"""Kept so that ``import kzr_wsgi.config``, documented before, still works: the code is in
:mod:`kzr_wsgi.cli.config`."""

from __future__ import annotations

from .cli.config import *  # noqa: F403
