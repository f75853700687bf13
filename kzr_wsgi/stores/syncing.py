"""How many syncs a commit needs: one where the filesystem's journal orders everything.

A :class:`~kzr_wsgi.stores.directory.DirectoryStore` commit makes several things durable:
the body's file, its name, the sidecar and the index entry (two names of one file).
Each ``fsync`` costs a journal commit and a flush of the disk's write cache; a small
upload used to pay for two commits (the body, then the sidecar) and two directory
syncs. :func:`journaled` says whether one sync will do, and :func:`write_back` is how
a file's bytes reach the disk *without* a commit.

**One sync** (``journaled(root)`` is true: ext4 with its journal, ext3, XFS):

1. the body's bytes are written back and waited for (``sync_file_range`` with
   ``WAIT_BEFORE | WRITE | WAIT_AFTER``): the blocks are allocated and written, and the
   allocation and the new size join the journal's *running* transaction; no commit;
2. only then is the file given its name (``linkat``), in the same or a later
   transaction; the sidecar is written, written back the same way, and linked twice;
3. one ``fsync`` of the sidecar, the inode changed last, commits the transaction that
   holds its last change, and with it every earlier one: the journal (jbd2, XFS's log)
   commits transactions in order, and a commit starts with a flush of the disk's write
   cache (``barrier``, the default), so the bytes written back in steps 1 and 2 are on
   stable storage before the commit record that names them.

After a power cut, a name is therefore never durable without the allocation and size
of the file it names (they are in the same or an earlier transaction), whose blocks
were written before the name existed: a visible file is complete. When the ``fsync``
returns, everything is durable: the ``2xx`` can go. The directory ``fsync`` calls
are not needed (a name's change is in the transaction that changes the linked inode).
This holds on ext4 in every data mode (``ordered``, ``writeback``, ``journal``: the
data was written before the name existed, whatever the mode orders) and on XFS.

**Every sync** (anything else: ext4 without a journal, as on some VM images, btrfs,
NFS, tmpfs, an unknown filesystem, no ``sync_file_range``): the body's file is
``fsync``-ed before it is named, the sidecar after its names, and each directory that
got a name: correct on any POSIX filesystem, at the cost of a flush each.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable
from pathlib import Path

#: ``SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER``
_WRITE_AND_WAIT = 1 | 2 | 4
#: Filesystems whose journal always exists and commits in order.
_ALWAYS_JOURNALED = ("xfs",)
#: Filesystems that have a journal unless made without one (checked in sysfs).
_MAYBE_JOURNALED = ("ext4", "ext3")


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        func = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_SYNC_FILE_RANGE = _sync_file_range()


def write_back(fd: int) -> None:
    """Write the file's dirty bytes to the disk and wait, without a journal commit.

    Not durable by itself (the inode and the disk's cache are not flushed): a later
    ``fsync`` on the same filesystem completes it (see the module's docstring). Where
    ``sync_file_range`` is missing, ``fdatasync`` (durable, dearer) stands in.
    """
    if _SYNC_FILE_RANGE is None:
        os.fdatasync(fd)
        return
    if _SYNC_FILE_RANGE(fd, 0, 0, _WRITE_AND_WAIT) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def journaled(directory: Path) -> bool:
    """Whether ``directory``'s filesystem commits metadata through an ordered journal.

    Read from ``/proc/self/mountinfo`` (the filesystem type of the mount with this
    device) and, for ext3/ext4, ``/sys/fs/ext4/<device>/journal_task`` (``<none>``
    when it runs without a journal). ``False`` whenever anything cannot be read.
    """
    if _SYNC_FILE_RANGE is None:
        return False
    try:
        st = os.stat(directory)
        device = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
        fstype = _fstype(device)
        if fstype in _ALWAYS_JOURNALED:
            return True
        if fstype not in _MAYBE_JOURNALED:
            return False
        name = os.path.basename(os.path.realpath(f"/sys/dev/block/{device}"))
        task = Path(f"/sys/fs/ext4/{name}/journal_task").read_text().strip()
    except (OSError, ValueError):
        return False
    return task not in ("", "<none>")


def _fstype(device: str) -> str | None:
    """The filesystem type of the mount of block device ``major:minor``."""
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            fields = line.split()
            if len(fields) > 2 and fields[2] == device and "-" in fields:
                return fields[fields.index("-") + 1]
    return None
