"""Cutting a channel into pieces an engine takes, and putting the answers back. Pure.

A channel goes to the engine in **pieces**: each at most ``piece`` seconds long, cut
in the silences the pipeline's voice activity found (never inside a run of speech,
unless that one run is longer than a piece: then it is cut into equal parts), with a
little silence kept either side (``pad``) so no word loses its edges. A silence longer
than ``gap`` ends a piece even when the next speech would fit: whisper-class engines
invent text from long silences, and nothing is lost by not sending them. A channel
with no speech gives no pieces, so it is never sent.

The engine answers in the piece's own time; :meth:`Piece.place` moves the answer to
the recording's time (and keeps it inside the piece).

>>> [(p.start, p.end) for p in cut_pieces([(1000, 4000), (9000, 12000)], 20000)]
[(0.8, 12.2)]
>>> [(p.start, p.end) for p in cut_pieces([(1000, 4000), (9000, 12000)], 20000, piece=5)]
[(0.8, 4.2), (8.8, 12.2)]
>>> [(p.start, p.end) for p in cut_pieces([(0, 1500)], 1500, piece=1, pad=0)]
[(0.0, 0.75), (0.75, 1.5)]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .model import Transcript, join_pieces

if TYPE_CHECKING:
    from .engine import Transcriber

#: Silence kept before and after the speech of a piece, in seconds.
PAD = 0.2
#: A silence at least this long (seconds) ends a piece.
GAP = 30.0


@dataclass(frozen=True)
class Piece:
    """One request's worth of a channel: ``start`` and ``end`` in the recording, in ms."""

    start_ms: int
    end_ms: int

    @property
    def start(self) -> float:
        """Where the piece starts in the recording, in seconds (its offset)."""
        return self.start_ms / 1000

    @property
    def end(self) -> float:
        """Where the piece ends in the recording, in seconds."""
        return self.end_ms / 1000

    @property
    def duration(self) -> float:
        """The piece's length in seconds."""
        return (self.end_ms - self.start_ms) / 1000

    def cut(self, samples: Any, rate: int) -> Any:
        """The piece's samples out of the whole channel's (a slice: no copy for numpy)."""
        return samples[self.start_ms * rate // 1000:self.end_ms * rate // 1000]

    def place(self, answer: Transcript) -> Transcript:
        """``answer`` (in the piece's time) in the recording's time, kept inside the piece."""
        return _clamped(answer, self.duration).shifted(self.start)


def cut_pieces(speech_ms: Sequence[tuple[int, int]], duration_ms: int, *, piece: float = 600.0,
               pad: float = PAD, gap: float = GAP) -> list[Piece]:
    """The pieces that cover every run of speech in ``speech_ms``; ``[]`` when there is none.

    ``speech_ms`` holds ``(start, end)`` pairs in milliseconds (in any order; they may
    overlap or touch); ``duration_ms`` is the channel's length. ``piece``, ``pad`` and
    ``gap`` are seconds. Pieces never overlap, and each is at most ``piece`` long.
    """
    if piece <= 0 or pad < 0 or gap <= 0:
        raise ValueError("piece and gap must be above 0, pad at least 0")
    limit, pad_ms, gap_ms = int(piece * 1000), int(pad * 1000), int(gap * 1000)
    runs = _runs(speech_ms, duration_ms, limit)
    pieces: list[list[int]] = []  # [first speech start, last speech end] of each piece
    for start, end in runs:
        if pieces and start - pieces[-1][1] < gap_ms and end - pieces[-1][0] <= limit:
            pieces[-1][1] = end
        else:
            pieces.append([start, end])
    return _padded(pieces, duration_ms, pad_ms, limit)


def transcribe_channel(engine: Transcriber, samples: Any, rate: int,
                       speech_ms: Sequence[tuple[int, int]], *, language: str | None,
                       piece: float = 600.0,
                       known: Callable[[Piece], Transcript | None] | None = None,
                       on_piece: Callable[[Piece, Transcript], None] | None = None) -> Transcript:
    """Transcribe one channel: a request per piece, the answers in the recording's time.

    No speech, no request: the result is then an empty transcript. ``known`` (if
    given) is asked first for each piece and may return its answer from an earlier
    run (already placed): then the engine is not called for it. ``on_piece`` sees each
    piece's placed answer as it arrives from the engine, e.g. to keep it, so a retry
    after a failure asks only for the pieces still missing. An engine's
    :class:`~kzr_wsgi.transcribe.errors.TranscribeError` propagates at the first piece
    that fails.
    """
    duration_ms = len(samples) * 1000 // rate
    done: list[Transcript] = []
    for p in cut_pieces(speech_ms, duration_ms, piece=piece):
        placed = known(p) if known is not None else None
        if placed is None:
            placed = p.place(engine.transcribe(p.cut(samples, rate), rate, language))
            if on_piece is not None:
                on_piece(p, placed)
        done.append(placed)
    return join_pieces(done, language=language, engine=engine.name, model=engine.model)


def _runs(speech_ms: Sequence[tuple[int, int]], duration_ms: int,
          limit: int) -> list[tuple[int, int]]:
    """The runs of speech, merged, inside the channel, none longer than ``limit`` ms."""
    merged: list[list[int]] = []
    for start, end in sorted((max(0, int(s)), min(duration_ms, int(e))) for s, e in speech_ms):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    runs: list[tuple[int, int]] = []
    for start, end in merged:
        # One run longer than a piece: equal parts, so no part is a sliver.
        parts = math.ceil((end - start) / limit)
        bounds = [start + (end - start) * i // parts for i in range(parts + 1)]
        runs.extend(zip(bounds, bounds[1:], strict=False))
    return runs


def _padded(pieces: list[list[int]], duration_ms: int, pad_ms: int,
            limit: int) -> list[Piece]:
    """Each piece widened by ``pad_ms`` where there is room: inside the channel, half
    the silence to a neighbour at most, and never past ``limit``."""
    out: list[Piece] = []
    for i, (start, end) in enumerate(pieces):
        before = start - pieces[i - 1][1] if i else start
        after = pieces[i + 1][0] - end if i + 1 < len(pieces) else duration_ms - end
        room = max(0, limit - (end - start))
        lead = min(pad_ms, before // 2 if i else before, room)
        tail = min(pad_ms, after // 2 if i + 1 < len(pieces) else after, room - lead)
        out.append(Piece(start - lead, end + tail))
    return out


def _clamped(answer: Transcript, duration: float) -> Transcript:
    def inside(t: float) -> float:
        return min(max(t, 0.0), duration)

    return replace(
        answer,
        segments=tuple(replace(s, start=inside(s.start), end=max(inside(s.end), inside(s.start)))
                       for s in answer.segments),
        words=tuple(replace(w, start=inside(w.start), end=max(inside(w.end), inside(w.start)))
                    for w in answer.words),
    )


__all__ = ["GAP", "PAD", "Piece", "cut_pieces", "transcribe_channel"]
