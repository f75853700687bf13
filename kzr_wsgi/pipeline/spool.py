"""The local spool: an object-store recording copied to a local file, then decoded.

A recording in a bucket is downloaded once, in one streamed ``GET``, into a file of the
spool (``--spool-dir``; by default ``kzr-wsgi-spool`` under the system's temporary
directory), and decoded from there. Why a spool rather than decoding from the stream:
libsndfile seeks (a WAV's chunks, the end of an MP3, and the analysis reads a file
again where mpg123 gave up), and over S3 each seek is another request; a worker at idle
priority may decode slowly, and a stream held open at its pace can time out; and the
copy's sha256 is checked as it is written, so a changed object is never analysed as if
it were the recording.

The spool is bounded: a worker holds one file at a time (the recording it works on),
so the spool never holds more than one recording per worker process; a recording larger
than the free space is refused before anything is written. Each file is created mode
0600 (recordings are private), ``flock``-ed while in use, and removed when its job ends;
a killed worker's file is unlocked, and :meth:`Spool.sweep` (at every worker's start)
removes it: no audio is left behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import KzrError, StorageFull
from ..recording import Stream
from ..stores.tempfiles import NAMED_SUFFIX, reap_named

#: The spool's default place: a directory of kzr_wsgi's own under the system's temp dir.
DEFAULT_SPOOL = Path(tempfile.gettempdir()) / "kzr-wsgi-spool"
#: Bytes read from the store at a time.
CHUNK = 1 << 20
#: A file is never swept younger than this (its worker may be between creating and
#: locking it).
_MIN_AGE = 2.0


class ChangedCopy(KzrError):
    """The stored bytes no longer match the recording's sha256."""


class Spool:
    """A directory of local copies of recordings being decoded."""

    def __init__(self, directory: str | os.PathLike[str] = DEFAULT_SPOOL) -> None:
        #: Where the files are.
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r})"

    def sweep(self) -> int:
        """Remove the files of workers that died (nobody holds their lock); how many."""
        return reap_named(self.directory, _MIN_AGE)

    def remove_copies(self, sha256s: set[str]) -> int:
        """Remove the spooled copies whose bytes have one of these sha256s (erased
        recordings); how many. A worker reading one keeps its open file until it ends."""
        gone = 0
        for path in sorted(self.directory.glob(f"*{NAMED_SUFFIX}")):
            digest = hashlib.sha256()
            try:
                with open(path, "rb") as fh:
                    while chunk := fh.read(CHUNK):
                        digest.update(chunk)
            except FileNotFoundError:
                continue
            if digest.hexdigest() in sha256s:
                path.unlink(missing_ok=True)
                gone += 1
        return gone

    @contextmanager
    def copy_of(self, stream: Stream, size: int, sha256: str) -> Iterator[BinaryIO]:
        """``stream`` (``size`` bytes whose sha256 must be ``sha256``) as a local file,
        open for reading at its start; removed on the way out, whatever happens.

        Raises :class:`~kzr_wsgi.errors.StorageFull` when the spool's filesystem has
        not room for it, :class:`ChangedCopy` when the bytes are not the recording's.
        """
        free = shutil.disk_usage(self.directory).free
        if size > free:
            raise StorageFull(f"the spool {self.directory} has {free} bytes free, "
                              f"the recording needs {size}")
        path = self.directory / f"{uuid.uuid4().hex}{NAMED_SUFFIX}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held while in use: sweep leaves it alone
            with os.fdopen(os.dup(fd), "w+b") as fh:
                digest = hashlib.sha256()
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
                    fh.write(chunk)
                fh.flush()
                if digest.hexdigest() != sha256:
                    raise ChangedCopy(f"the stored bytes' sha256 is {digest.hexdigest()}, "
                                      f"not the recording's {sha256}")
                fh.seek(0)
                yield fh
        finally:
            path.unlink(missing_ok=True)
            os.close(fd)
