"""Recovery: finishing what writers that died left, from the markers they left.

Every upload of a :class:`~kzr_wsgi.stores.directory.DirectoryStore` has one marker,
``ROOT/.kzr/pending/<entry name>``, held under an ``flock`` by its writer until its commit
(and its row) is done (see :mod:`~kzr_wsgi.stores.directory.commit`, where the marker
and the commit steps are). A marker nobody holds, its shard's lock taken too, is a dead
writer's: :func:`recover` finishes its commit with
:func:`~kzr_wsgi.stores.directory.commit.finish_pending` (the commit's own steps) or,
when its file never got placed, drops it. It runs on the store's first use in each
process, with each upkeep pass (:mod:`~kzr_wsgi.stores.directory.upkeep`), and a
retry's own commit does the same for its marker.

Stores before the one-marker commit also wrote ``ROOT/.kzr/uncatalogued/<uuid>.json``
(an index entry's relative name) around each commit and its row; :func:`repair_legacy`
still reads those, so a root left by such a store after a crash is repaired.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable
from pathlib import Path

from .commit import Committing, Marker, finish_pending
from .files import ENTRY_NAME, Places, locked, makedirs, read_json

__all__ = ["Marker", "finish_pending", "recover", "repair_legacy"]

log = logging.getLogger("kzr_wsgi.store")


def recover(c: Committing) -> int:
    """Finish or drop the uploads of writers that died in them; return how many finished.

    Looks only at the markers (as many as uploads were in flight), each under its
    shard's lock and its own: a live writer holds the shard's lock for its whole commit
    and the marker's until its row is written, so a marker free of both is a dead
    writer's.
    """
    finished = 0
    for marker in c.places.pending.iterdir():
        if not ENTRY_NAME.fullmatch(marker.name):
            continue
        index_dir = c.places.index / marker.name[:2]
        makedirs(index_dir)
        with locked(index_dir / ".lock"):
            if finish_pending(c, index_dir / marker.name) is not None:
                finished += 1
    return finished


def repair_legacy(places: Places, catalogue: Callable[[Path], bool]) -> int:
    """Catalogue the copies named by the markers in ``ROOT/.kzr/uncatalogued``.

    Each names an index entry: when it exists, its copy's row is written (by
    ``catalogue``); either way the marker goes (kept only when the catalog cannot be
    written, for the next pass). A marker still held by a live writer in another
    process is left alone. Returns how many rows were written.
    """
    repaired = 0
    if places.uncatalogued.is_dir():
        for marker in places.uncatalogued.iterdir():
            try:
                fd = os.open(marker, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer's
                entry = os.read(fd, 4096).decode("utf-8", "replace")
                record = read_json(places.index / entry) if entry else None
                if record is not None and (places.root / record["path"]).is_file():
                    if not catalogue(places.root / record["path"]):
                        continue  # keep the marker: the catalog may be back next time
                    repaired += 1
                marker.unlink(missing_ok=True)
            finally:
                os.close(fd)
    if repaired:
        log.warning("catalogued %d upload(s) interrupted between commit and catalog",
                    repaired)
    return repaired
