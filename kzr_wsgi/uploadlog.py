"""The one log line each upload gets: what came, how it ended, what its audio is.

Logger ``kzr_wsgi``, level INFO; WARNING when the recording was stored but its audio is
flagged. For example (one line, folded here)::

    upload call_id='abc@pbx' bytes=40320 seconds=0.012 outcome=stored location=/srv/…
     audio=mp3 duration_ms=10080 flags=-
"""

from __future__ import annotations

import logging
import time

from .audio import AudioInfo
from .body import Body
from .recording import Recording

log = logging.getLogger("kzr_wsgi")


def log_upload(
    label: str,
    body: Body | None,
    started: float,
    outcome: str,
    location: str | None = None,
    inspected: Recording | None = None,
) -> None:
    """Log how one upload ended (``outcome``), with its size, time, location and audio.

    ``inspected`` is the recording when its audio was inspected (``audio=none`` when
    that found nothing); ``None`` leaves the audio out of the line.
    """
    size = body.bytes_read if body is not None else 0
    audio = inspected.audio if inspected is not None else None
    # A flagged recording is stored and answered 2xx all the same: the WARNING is where
    # an operator (and a log alert) learns that its audio is not what it should be.
    level = logging.WARNING if audio is not None and audio.flagged else logging.INFO
    log.log(
        level,
        "upload %s bytes=%d seconds=%.3f outcome=%s%s%s",
        label,
        size,
        time.monotonic() - started,
        outcome,
        f" location={location}" if location else "",
        describe_audio(audio) if inspected is not None else "",
    )


def describe_audio(audio: AudioInfo | None) -> str:
    """`` audio=mp3 duration_ms=10080 flags=truncated`` for the upload log line."""
    if audio is None:
        return " audio=none"
    duration = "-" if audio.duration_ms is None else str(audio.duration_ms)
    flags = ",".join(audio.flags) or "-"
    return f" audio={audio.format or 'unknown'} duration_ms={duration} flags={flags}"
