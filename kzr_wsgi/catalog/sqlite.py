"""Kept so that ``import kzr_wsgi.catalog.sqlite``, documented before, still works: the code is in
:mod:`kzr_wsgi.catalog.backends.sqlite`."""

from __future__ import annotations

from .backends.sqlite import *  # noqa: F403
