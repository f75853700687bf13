"""Kept so that ``import kzr_wsgi.wire``, documented before, still works: the code is in
:mod:`kzr_wsgi.selftest.wire`."""

from __future__ import annotations

from .selftest.wire import *  # noqa: F403
