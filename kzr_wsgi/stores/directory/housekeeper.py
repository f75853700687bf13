"""Kept so that ``import kzr_wsgi.stores.directory.housekeeper``, documented before, still
works: the per-process loop is the store's upkeep, in
:mod:`kzr_wsgi.stores.directory.upkeep`."""

from __future__ import annotations

from .upkeep import *  # noqa: F403
