"""A worker process's own set-up: the lowest priority, and the decoder's stderr in the log.

**Priority** (:func:`lower_priority`): uploads always come first. The CPU scheduling
policy becomes ``SCHED_IDLE`` (Linux: the process runs only when no normal process
wants the CPU), else the nice value 19; the I/O class becomes *idle* (``ioprio_set``:
the disk serves it only when nobody else asks), so a backlog of analysis never slows a
commit's ``fsync``. ``ioprio_set`` has no wrapper in Python's standard library; it is
called through ``ctypes`` as the system call it is (its number per architecture below),
rather than adding psutil to what every installation needs for one call. Both apply to
the calling thread and every thread it starts afterwards, so they are set first.

**The decoder's messages** (:func:`capture_stderr`): libsndfile and mpg123 write their
warnings (``Giving up resync after 1024 bytes``) straight to file descriptor 2. In a
worker, fd 2 becomes a pipe whose lines are logged (logger ``kzr_wsgi.decoder``,
escaped, one record each), and the log itself goes to where fd 2 went before: a
terminal or serve's log never gets a raw line from C code.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys
import threading
from typing import TextIO

from ..naming import shown

log = logging.getLogger("kzr_wsgi.pipeline")
decoder_log = logging.getLogger("kzr_wsgi.decoder")

#: ``ioprio_set``'s system call number, by machine (``uname -m``).
IOPRIO_SET = {"x86_64": 251, "i386": 289, "i686": 289, "aarch64": 30, "arm64": 30,
              "armv7l": 314, "ppc64le": 273, "ppc64": 273, "s390x": 282, "riscv64": 30}
_IOPRIO_WHO_PROCESS = 1
_IOPRIO_CLASS_IDLE = 3
_IOPRIO_CLASS_SHIFT = 13


def lower_priority() -> list[str]:
    """Give this process the lowest CPU and I/O priority it can have; what was done.

    Never raises: a system without these leaves the process as it was, and says so.
    """
    done: list[str] = []
    idle = getattr(os, "SCHED_IDLE", None)
    try:
        if idle is None:
            raise OSError("no SCHED_IDLE here")
        os.sched_setscheduler(0, idle, os.sched_param(0))
        done.append("CPU: SCHED_IDLE")
    except (OSError, AttributeError) as exc:
        try:
            os.nice(19 - os.nice(0))
            done.append(f"CPU: nice 19 ({exc})")
        except OSError as nice_exc:
            done.append(f"CPU: unchanged ({nice_exc})")
    number = IOPRIO_SET.get(platform.machine())
    if number is None or not sys.platform.startswith("linux"):
        done.append(f"I/O: unchanged (no ioprio_set on {platform.machine()})")
        return done
    libc = ctypes.CDLL(None, use_errno=True)
    value = _IOPRIO_CLASS_IDLE << _IOPRIO_CLASS_SHIFT
    if libc.syscall(number, _IOPRIO_WHO_PROCESS, 0, value) == 0:
        done.append("I/O: idle class")
    else:
        done.append(f"I/O: unchanged ({os.strerror(ctypes.get_errno())})")
    return done


def capture_stderr() -> TextIO:
    """Send what C code writes to fd 2 to the log; returns the stream the log should use.

    Call before logging is set up, and hand the returned stream to it (fd 2's previous
    target, duplicated). Lines are read by a daemon thread and logged at WARNING.
    """
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    stream = os.fdopen(original, "w", buffering=1, encoding="utf-8", errors="replace")
    sys.stderr = stream
    thread = threading.Thread(target=_relay, args=(read_end,), name="kzr-decoder-stderr",
                              daemon=True)
    thread.start()
    return stream


def _relay(fd: int) -> None:
    """Log each line written to the pipe that replaced fd 2."""
    with os.fdopen(fd, "rb") as pipe:
        for raw in pipe:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line:
                decoder_log.warning("%s", shown(line))
