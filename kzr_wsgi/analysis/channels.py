"""Channels, who is on them, and the flags: the analysis's vocabulary (pure, no numpy).

What reading a result needs (the catalog, ``ls``, the search page), apart from what
making one needs, so a reader never loads the decoder. :mod:`~kzr_wsgi.analysis.result`
re-exports every name.

The flags (:data:`FLAGS`): ``one_way_audio``, ``silent`` and ``clipped`` are defects of
the recording (:data:`DEFECTS`); ``dead_air`` and ``no_speech`` are facts about the call.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Every flag an analysis can set, in the order a result lists them.
FLAGS = ("one_way_audio", "silent", "clipped", "dead_air", "no_speech")
#: The flags that are defects of the recording (what "flagged" means), not facts of the call.
DEFECTS = ("one_way_audio", "silent", "clipped")
#: Which side of a stereo recording the caller may be on.
CALLER_SIDES = ("left", "right")


def channel_names(channels: int) -> tuple[str, ...]:
    """``mono``; ``left``, ``right``; ``ch1`` … ``chN`` for more.

    >>> channel_names(1), channel_names(2), channel_names(3)
    (('mono',), ('left', 'right'), ('ch1', 'ch2', 'ch3'))
    """
    if channels == 1:
        return ("mono",)
    if channels == 2:
        return ("left", "right")
    return tuple(f"ch{i}" for i in range(1, channels + 1))


def speakers(names: Sequence[str], caller: str = "left") -> dict[str, str]:
    """Who is on each channel: ``caller`` is the channel the caller is on (a setting).

    Stereo recordings put the recorded leg's own party on the left (Kazoo records the
    caller's leg): ``caller = "left"`` is the default. Mono is everyone; more channels
    than two have no speakers.

    >>> speakers(("left", "right")), speakers(("left", "right"), caller="right")
    ({'left': 'caller', 'right': 'callee'}, {'left': 'callee', 'right': 'caller'})
    >>> speakers(("mono",)), speakers(("ch1", "ch2", "ch3"))
    ({'mono': 'all'}, {})
    """
    if caller not in CALLER_SIDES:
        raise ValueError(f'caller must be "left" or "right", not {caller!r}')
    if tuple(names) == ("mono",):
        return {"mono": "all"}
    if tuple(names) == ("left", "right"):
        other = "callee" if caller == "left" else "caller"
        return {"left": "caller" if caller == "left" else "callee", "right": other}
    return {}
