"""Kept so that ``import kzr_wsgi.check``, documented before, still works: the code is in
:mod:`kzr_wsgi.selftest.check`."""

from __future__ import annotations

from .selftest.check import *  # noqa: F403
