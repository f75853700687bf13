"""The search-and-listen page and its JSON API, behind viewers scoped per account.

>>> from kzr_wsgi.ui import SearchUI
>>> ui = SearchUI(catalog, store, viewers=["ops:s3cret"], app=receiver)   # doctest: +SKIP

See :mod:`kzr_wsgi.ui.app` for the routes, :mod:`kzr_wsgi.ui.viewers` for the
viewer file, and ``docs/ui.md`` for the whole picture.
"""

from __future__ import annotations

from .app import SearchUI, StoredOpener
from .viewers import Viewer, ViewerFileError, Viewers, parse_viewer_file, read_viewer_file

__all__ = [
    "SearchUI",
    "StoredOpener",
    "Viewer",
    "ViewerFileError",
    "Viewers",
    "parse_viewer_file",
    "read_viewer_file",
]
