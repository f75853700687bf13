"""Kept so that ``import kzr_wsgi.stores.directory.housekeeper``, documented before, still
works: the per-process loop of the disk stores is their upkeep, now in
:mod:`kzr_wsgi.stores.directory.upkeep` (the housekeeper is serve's, one per store:
:mod:`kzr_wsgi.housekeeping.housekeeper`)."""

from __future__ import annotations

from .upkeep import UPKEEP, Upkeep

__all__ = ["UPKEEP", "Upkeep"]
