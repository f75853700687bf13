"""The disk stores' housekeeping thread: each live store's :meth:`housekeep` every few
seconds while the process serves (recover dead writers' uploads, sweep their temporary
files, repair the catalog).

One daemon thread per process, started with the first store that asks for it
(``sweep_every`` not ``None``), and again in a forked child (gunicorn's workers), where
threads do not survive the fork.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import DirectoryStore

log = logging.getLogger("kzr_wsgi.store")


class Housekeeper:
    """One daemon thread per process running every live store's :meth:`housekeep`.

    Holds the stores weakly. A fork waits for a housekeeping pass to end: a child must
    not inherit a shard lock's descriptor mid-pass (a lock it would then hold forever).
    """

    def __init__(self) -> None:
        self.stores: weakref.WeakSet[DirectoryStore] = weakref.WeakSet()
        self.lock = threading.Lock()
        self.busy = threading.Lock()
        self.thread: threading.Thread | None = None

    def add(self, store: DirectoryStore) -> None:
        """Look after ``store`` from now on (starting the thread if need be)."""
        with self.lock:
            self.stores.add(store)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="kzr-housekeeper",
                                               daemon=True)
                self.thread.start()

    def before_fork(self) -> None:
        """Wait for a pass to end, and start none until the fork is done."""
        self.busy.acquire()

    def after_fork_in_parent(self) -> None:
        """Let passes run again."""
        self.busy.release()

    def after_fork_in_child(self) -> None:
        """Fresh locks, and a thread of the child's own (the parent's did not survive)."""
        self.lock = threading.Lock()
        self.busy = threading.Lock()
        self.thread = None
        stores = list(self.stores)
        if stores:
            self.add(stores[0])

    def _run(self) -> None:
        while True:
            time.sleep(0.5)
            with self.lock:
                stores = list(self.stores)
            for store in stores:
                every = store.sweep_every
                if every is None or time.monotonic() - store._last_sweep < every:
                    continue
                if not store._pending.parent.is_dir():
                    # The store's directory was removed (a test's temporary root, an
                    # unmounted disk): nothing of it is left to sweep.
                    with self.lock:
                        self.stores.discard(store)
                    continue
                with self.busy:
                    try:
                        store.housekeep()
                    except Exception:  # a full or vanished disk: say so, try again later
                        store._last_sweep = time.monotonic()
                        log.exception("housekeeping of %r failed", store)


#: The process's one housekeeper.
HOUSEKEEPER = Housekeeper()
os.register_at_fork(before=HOUSEKEEPER.before_fork,
                    after_in_parent=HOUSEKEEPER.after_fork_in_parent,
                    after_in_child=HOUSEKEEPER.after_fork_in_child)
