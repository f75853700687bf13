"""A store's temporary files: unnamed where the filesystem allows it, named where not.

A body is written to a temporary file in the store's own directory (``ROOT/.kzr/tmp``,
the same filesystem as the recordings) and given its final name only once complete and
``fsync``-ed. :class:`TempFile` is that file.

**Unnamed** (Linux ``O_TMPFILE``, ext4, XFS, btrfs, tmpfs): ``open(dir, O_TMPFILE)``
makes an inode with no name at all. Nothing can see it, and the kernel frees it when
its last descriptor closes, which includes the process being killed: a dead writer
leaves nothing to reap, however soon the restart comes. :meth:`TempFile.link` names
it with ``linkat(AT_FDCWD, "/proc/self/fd/N", dirfd, name, AT_SYMLINK_FOLLOW)``, which
fails with ``EEXIST`` rather than replace a file. (Python's ``os.link`` without a
``dst_dir_fd`` calls ``link(2)``, which links the ``/proc`` symlink itself and fails
with ``EXDEV``; with one it calls ``linkat`` with ``AT_SYMLINK_FOLLOW``.) The file is
opened without ``O_EXCL``, so it can be given several names (the sidecar and the index
entry are two names of one file).

**Named** (any other filesystem: NFS, FUSE, vfat, old kernels): a file
``<random>.part`` created with ``O_EXCL``, locked with ``flock`` for as long as its writer
lives, hard-linked into place, unlinked when done. A writer that dies leaves it behind
until :func:`reap_named` (the store's upkeep: on its first use in each process and
every few seconds after) finds it unlocked and removes it. A live writer's file is
locked and never removed, in this process or another sharing the root.

:func:`supports_unnamed` decides which, once per directory: a filesystem without
``O_TMPFILE`` answers ``EOPNOTSUPP`` (``EISDIR`` on kernels older than 3.11, which take
the flag for ``O_DIRECTORY``; ``EINVAL`` on some), and a system without ``/proc``
cannot name the file afterwards.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("kzr_wsgi.store")

#: What ``open(O_TMPFILE)`` or naming the file answers where unnamed files cannot work.
_UNSUPPORTED = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT, errno.EXDEV,
                errno.EPERM)
#: Suffix of named temporary files (:func:`reap_named` removes only these).
NAMED_SUFFIX = ".part"


def supports_unnamed(directory: Path) -> bool:
    """Whether unnamed temporary files can be made in ``directory`` and named afterwards.

    Makes one, names it, removes the name: the whole cycle a store relies on. Errors
    other than "not supported" (a full disk, no permission) are raised.
    """
    if not hasattr(os, "O_TMPFILE"):
        return False
    probe = f"probe-{uuid.uuid4().hex}"
    try:
        with _unnamed(directory) as fd:
            _link_fd(fd, directory / probe)
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            log.info("%s: no O_TMPFILE (%s); temporary files are named and swept",
                     directory, os.strerror(exc.errno or 0))
            return False
        raise
    (directory / probe).unlink(missing_ok=True)
    return True


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than it is given)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class TempFile:
    """A temporary file open for writing; :meth:`link` gives it a name in the store."""

    __slots__ = ("fd", "path")

    def __init__(self, fd: int, path: Path | None) -> None:
        #: The open descriptor (write-only).
        self.fd = fd
        #: Its name in the temporary directory, or ``None`` when it has none.
        self.path = path

    def write(self, data: bytes) -> None:
        """Write all of ``data``."""
        write_all(self.fd, data)

    def sync(self) -> None:
        """``fsync`` the file's bytes (and, once linked, its names on a journaling fs)."""
        os.fsync(self.fd)

    def identity(self) -> tuple[int, int]:
        """``(st_dev, st_ino)``: how a name given to this file is recognised later."""
        st = os.fstat(self.fd)
        return st.st_dev, st.st_ino

    def link(self, target: Path) -> None:
        """Give the file the name ``target``; ``FileExistsError`` if it is taken."""
        if self.path is None:
            _link_fd(self.fd, target)
        else:
            os.link(self.path, target)


@contextmanager
def temporary(directory: Path, unnamed: bool) -> Iterator[TempFile]:
    """A :class:`TempFile` in ``directory``, gone on the way out whatever happens.

    Names given by :meth:`TempFile.link` stay; the temporary itself (its name in
    ``directory``, if it has one) does not.
    """
    if unnamed:
        with _unnamed(directory) as fd:
            yield TempFile(fd, None)
        return
    path = directory / f"{uuid.uuid4().hex}{NAMED_SUFFIX}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        # Held until the descriptor closes (or the process dies): the reaper's sign
        # that this file's writer is alive.
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield TempFile(fd, path)
    finally:
        try:
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)


def reap_named(directory: Path, min_age: float) -> int:
    """Reap: remove the named temporary files no live writer holds; return how many.

    A file younger than ``min_age`` seconds is spared even when unlocked: its writer
    may be between creating it and locking it.
    """
    removed = 0
    now = time.time()
    for path in directory.glob("*" + NAMED_SUFFIX):
        try:
            with open(path, "rb") as fh:
                if now - os.fstat(fh.fileno()).st_mtime < min_age:
                    continue
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer
                path.unlink(missing_ok=True)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


@contextmanager
def _unnamed(directory: Path) -> Iterator[int]:
    fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o666)
    try:
        yield fd
    finally:
        os.close(fd)


def _link_fd(fd: int, target: Path) -> None:
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.link(f"/proc/self/fd/{fd}", target.name, dst_dir_fd=dir_fd, follow_symlinks=True)
    finally:
        os.close(dir_fd)
