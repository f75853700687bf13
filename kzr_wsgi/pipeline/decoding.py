"""A stored recording's bytes, seekable, and its channels decoded whole for transcription.

The transcription decodes the recording a second time, after its analysis: it needs the
analysis's speech intervals before it cuts pieces, and most recordings are never
transcribed (silent, no speech, filtered out), so the analysis pass does not keep 16 kHz
samples of every recording for it. Decoding is cheap beside any engine (libsndfile
decodes phone-rate MP3 hundreds of times faster than real time; the manual's
transcripts page has the measured numbers). The channels are kept as 16-bit integers at
the recording's own rate (an hour of 8 kHz stereo: 110 MiB); each engine brings a piece
to its own rate.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from ..errors import KzrError

if TYPE_CHECKING:
    from ..catalog import Row
    from ..stores.base import Store
    from .spool import Spool


def open_recording(store: Store, spool: Spool, stack: contextlib.ExitStack, row: Row) -> BinaryIO:
    """The recording's bytes, seekable: the file itself, or a spooled copy (closed with
    ``stack``)."""
    stored = store.open_stored(row.location, row.sha256)
    stack.callback(stored.close)
    try:
        stored.fileobj.fileno()
    except (OSError, io.UnsupportedOperation, AttributeError):
        return stack.enter_context(spool.copy_of(stored.fileobj, row.size, row.sha256))
    return stored.fileobj  # type: ignore[return-value]  # an open disk file


def channels_of(store: Store, spool: Spool, stack: contextlib.ExitStack, row: Row,
                names: Sequence[str]) -> tuple[dict[str, Any], int]:
    """The recording's channels called ``names`` (``left``/``right``, ``mono``,
    ``ch1``…), whole, as ``int16`` arrays, and their sample rate."""
    import numpy as np

    from ..analysis.channels import channel_names
    from ..analysis.decode import Skipped, open_audio

    decoder = open_audio(open_recording(store, spool, stack, row))
    if isinstance(decoder, Skipped):
        raise KzrError(f"the recording cannot be decoded ({decoder.reason})")
    with decoder:
        all_names = channel_names(decoder.info.channels)
        wanted = [all_names.index(n) for n in names]
        blocks: list[Any] = []
        for block in decoder.blocks():
            blocks.append((block[:, wanted] * 32767.0).astype(np.int16))
        rate = decoder.info.sample_rate
    whole = np.concatenate(blocks) if blocks else np.zeros((0, len(names)), dtype=np.int16)
    return {n: np.ascontiguousarray(whole[:, i]) for i, n in enumerate(names)}, rate


__all__ = ["channels_of", "open_recording"]
