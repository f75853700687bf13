"""Speech intervals on the recording's timeline, in milliseconds (pure).

An interval is ``(start_ms, end_ms)``, end exclusive; a channel's intervals are sorted
and do not touch. What the analysis reports about time is defined here:

* :func:`bridge` joins speech across short pauses; :func:`drop_short` removes bursts too
  short to be speech;
* :func:`union` is the speech on any channel;
* :func:`longest_silence` is the longest stretch of the recording, from its start to
  its end, with no speech on any channel (the whole duration when nobody spoke);
* :func:`longest_pause` is the longest stretch with no speech on any channel **between**
  the first and the last speech (what ``dead_air`` is decided by; 0 with fewer than two
  intervals).

>>> left, right = [(1000, 4000), (50000, 52000)], [(5000, 9000)]
>>> union([left, right])
[(1000, 4000), (5000, 9000), (50000, 52000)]
>>> longest_silence([left, right], duration_ms=60000), longest_pause([left, right])
(41000, 41000)
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence

Interval = tuple[int, int]


def bridge(intervals: Iterable[Interval], gap_ms: int) -> list[Interval]:
    """Join intervals separated by less than ``gap_ms``.

    >>> bridge([(0, 300), (500, 900), (2000, 2100)], 300)
    [(0, 900), (2000, 2100)]
    """
    out: list[Interval] = []
    for start, end in intervals:
        if out and start - out[-1][1] < gap_ms:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out


def drop_short(intervals: Iterable[Interval], min_ms: int) -> list[Interval]:
    """The intervals at least ``min_ms`` long.

    >>> drop_short([(0, 60), (100, 400)], 90)
    [(100, 400)]
    """
    return [(s, e) for s, e in intervals if e - s >= min_ms]


def subtract(intervals: Iterable[Interval], holes: Sequence[Interval]) -> list[Interval]:
    """``intervals`` with the parts that lie in ``holes`` cut out (both sorted).

    >>> subtract([(0, 100), (150, 400)], [(50, 200), (300, 350)])
    [(0, 50), (200, 300), (350, 400)]
    """
    out: list[Interval] = []
    first = 0
    for start, end in intervals:
        while first < len(holes) and holes[first][1] <= start:
            first += 1  # holes wholly before this interval: none of the rest needs them
        at = start
        for hole_start, hole_end in holes[first:]:
            if hole_start >= end:
                break
            if hole_start > at:
                out.append((at, hole_start))
            at = max(at, hole_end)
        if at < end:
            out.append((at, end))
    return out


def total_ms(intervals: Iterable[Interval]) -> int:
    """The time the intervals cover.

    >>> total_ms([(0, 300), (1000, 1500)])
    800
    """
    return sum(e - s for s, e in intervals)


def union(channels: Iterable[Sequence[Interval]]) -> list[Interval]:
    """Speech on any channel: the channels' intervals merged where they overlap or touch."""
    return bridge(heapq.merge(*channels), 1)


def longest_silence(channels: Iterable[Sequence[Interval]], duration_ms: int) -> int:
    """The longest stretch of ``0 .. duration_ms`` with no speech on any channel.

    The stretches before the first speech and after the last count too.

    >>> longest_silence([[(2000, 3000)]], 4000), longest_silence([[]], 4000)
    (2000, 4000)
    """
    edge = 0
    longest = 0
    for start, end in union(channels):
        longest = max(longest, start - edge)
        edge = max(edge, end)
    return max(longest, duration_ms - edge)


def longest_pause(channels: Iterable[Sequence[Interval]]) -> int:
    """The longest stretch with no speech on any channel between the first and last speech.

    >>> longest_pause([[(0, 1000)], [(31000, 32000)]]), longest_pause([[(0, 1000)]])
    (30000, 0)
    """
    spoken = union(channels)
    return max((b[0] - a[1] for a, b in zip(spoken[:-1], spoken[1:], strict=True)), default=0)
