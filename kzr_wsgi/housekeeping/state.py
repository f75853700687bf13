"""Where housekeeping keeps its own small files: the place the store names.

Holds, the audit trail, the prune journal and the housekeeper's lease live with the
store, so every host sees them: ``ROOT/.kzr/`` of a disk store, ``PREFIX/.kzr/`` of a
bucket. The places themselves are :mod:`kzr_wsgi.stores.state`'s (importable from here
as before); which one a store uses, the store says (:func:`state_for`).
"""

from __future__ import annotations

from ..naming import STATE_DIR as STATE
from ..stores.base import StateKeeper
from ..stores.state import DiskState, S3State, StatePlace, s3_errors

__all__ = ["STATE", "DiskState", "S3State", "StatePlace", "s3_errors", "state_for"]


def state_for(store: StateKeeper) -> DiskState | S3State:
    """Where ``store`` keeps its housekeeping state: its own ``state()``.

    A :class:`~kzr_wsgi.stores.DirectoryStore` its ``ROOT/.kzr``, an
    :class:`~kzr_wsgi.stores.s3.S3Store` its ``PREFIX/.kzr/``, a
    :class:`~kzr_wsgi.stores.FanOut` its bucket's (what every host shares), else its
    first store's. Raises :class:`~kzr_wsgi.errors.KzrError` when there is none.
    """
    return store.state()
