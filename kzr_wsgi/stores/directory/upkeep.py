"""The disk stores' upkeep: each live store's :meth:`~kzr_wsgi.stores.DirectoryStore.upkeep`
pass, on its first use in each process and every few seconds after.

A pass is three clean-ups, each of what writers that died left: it *recovers* their
uploads from their markers (:mod:`~kzr_wsgi.stores.directory.markers`), *reaps* their
named temporary files (:func:`~kzr_wsgi.stores.tempfiles.reap_named`) and *repairs* the
catalog from the markers stores from before left. (The whole-store work one process
does for all, pruning and the bucket's sweep, is the housekeeper's:
:mod:`kzr_wsgi.housekeeping.housekeeper`.)

No constructor starts anything: a store's first use in a process (an upload, a read, a
listing, ``preflight``) runs :meth:`Upkeep.start`, which makes that first pass before
the use goes on (a dead writer's upload is finished before the first request is
served) and, when the store's ``upkeep_every`` is not ``None``, has the process's one
daemon thread repeat it. After a fork (gunicorn's workers) the child has no thread and
has made no pass: its own first use starts both, so the bare middleware and the Flask
extension get the same upkeep as ``serve``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import DirectoryStore

log = logging.getLogger("kzr_wsgi.store")


class Upkeep:
    """The process's upkeep of its disk stores: first passes, and the thread repeating them.

    Holds the stores weakly, with when each last had its pass. A fork waits for a pass
    to end: a child must not inherit a shard lock's descriptor mid-pass (a lock it would
    then hold forever).
    """

    def __init__(self) -> None:
        #: Each store looked after, and the monotonic time of its last pass.
        self.stores: weakref.WeakKeyDictionary[DirectoryStore, float] = (
            weakref.WeakKeyDictionary())
        #: Each store started in this process (its first pass made).
        self.started: weakref.WeakSet[DirectoryStore] = weakref.WeakSet()
        self.lock = threading.Lock()
        #: Held by every pass, and by a fork: reentrant, since a pass may meet another
        #: store's first use (a row's writer opening the root again).
        self.busy = threading.RLock()
        self.thread: threading.Thread | None = None

    def start(self, store: DirectoryStore, first_pass: Callable[[], None]) -> None:
        """Make ``store``'s first pass in this process, once, then look after it.

        Threads using the store at once wait for that one pass. Without
        ``upkeep_every`` the store gets no further passes from here.
        """
        with self.busy:
            if store in self.started:
                return
            first_pass()
            self.started.add(store)
        if store.upkeep_every is not None:
            with self.lock:
                self.stores[store] = time.monotonic()
                if self.thread is None:
                    self.thread = threading.Thread(target=self._run, name="kzr-upkeep",
                                                   daemon=True)
                    self.thread.start()

    def is_started(self, store: DirectoryStore) -> bool:
        """Whether ``store`` had its first pass in this process."""
        return store in self.started

    def before_fork(self) -> None:
        """Wait for a pass to end, and start none until the fork is done."""
        self.busy.acquire()

    def after_fork_in_parent(self) -> None:
        """Let passes run again."""
        self.busy.release()

    def after_fork_in_child(self) -> None:
        """Nothing started here: fresh locks, no thread, each store's next use starts it."""
        self.lock = threading.Lock()
        self.busy = threading.RLock()
        self.thread = None
        self.stores = weakref.WeakKeyDictionary()
        self.started = weakref.WeakSet()

    def _run(self) -> None:
        while True:
            time.sleep(0.5)
            with self.lock:
                due = [(store, last) for store, last in self.stores.items()]
            for store, last in due:
                every = store.upkeep_every
                if every is None or time.monotonic() - last < every:
                    continue
                if not store.places.state.is_dir():
                    # The store's directory was removed (a test's temporary root, an
                    # unmounted disk): nothing of it is left to look after.
                    with self.lock:
                        self.stores.pop(store, None)
                    continue
                with self.busy:
                    try:
                        store.upkeep()
                    except Exception:  # a full or vanished disk: say so, try again later
                        log.exception("upkeep of %r failed", store)
                with self.lock:
                    if store in self.stores:
                        self.stores[store] = time.monotonic()


#: The process's one upkeep.
UPKEEP = Upkeep()
os.register_at_fork(before=UPKEEP.before_fork,
                    after_in_parent=UPKEEP.after_fork_in_parent,
                    after_in_child=UPKEEP.after_fork_in_child)
