"""Kept so that ``import kzr_wsgi.catalog.postgres``, documented before, still works: the code is in
:mod:`kzr_wsgi.catalog.backends.postgres`."""

from __future__ import annotations

from .backends.postgres import *  # noqa: F403
