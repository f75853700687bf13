"""Kept so that ``import kzr_wsgi.fastread``, documented before, still works: the code is in
:mod:`kzr_wsgi.server.fastread`."""

from __future__ import annotations

from .server.fastread import *  # noqa: F403
