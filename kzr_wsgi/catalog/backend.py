"""Kept so that ``import kzr_wsgi.catalog.backend``, documented before, still works: the
catalog is in :mod:`kzr_wsgi.catalog.facade`, the backends' base class in
:mod:`kzr_wsgi.catalog.backends.base`."""

from __future__ import annotations

from .backends.base import Backend, translate_named
from .facade import ROOT_CATALOG, UNAVAILABLE_FOR, WRITE_FAILURES, Catalog, WriteFailures

__all__ = [
    "ROOT_CATALOG",
    "UNAVAILABLE_FOR",
    "WRITE_FAILURES",
    "Backend",
    "Catalog",
    "WriteFailures",
    "translate_named",
]
