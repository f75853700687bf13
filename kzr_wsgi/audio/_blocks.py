"""What both parsers do with a stream fed block by block. Pure."""

from __future__ import annotations


def skip_ahead(block: bytes, skip: int) -> tuple[bytes, int]:
    """Drop up to ``skip`` bytes from the front of ``block`` (a tag or chunk not looked at).

    Returns what is left of the block (empty when it was all skipped) and of ``skip``.

    >>> skip_ahead(b"abcdef", 2), skip_ahead(b"ab", 5)
    ((b'cdef', 0), (b'', 3))
    """
    if len(block) <= skip:
        return b"", skip - len(block)
    return block[skip:], 0
