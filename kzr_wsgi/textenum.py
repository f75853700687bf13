"""Enumerations whose members are their text: outcomes and statuses compared in code.

A :class:`TextEnum` member *is* its value as a string: it compares, hashes, prints,
formats and serialises to JSON exactly as the plain string it replaces, so labels,
printed lines and JSON keep every byte, while the code names each value once.

>>> class Colour(TextEnum):
...     RED = "red"
>>> Colour.RED == "red", f"{Colour.RED}", str(Colour.RED), Colour("red") is Colour.RED
(True, 'red', 'red', True)
"""

from __future__ import annotations

import enum
import sys

if sys.version_info >= (3, 11):
    from enum import StrEnum as TextEnum
else:  # pragma: no cover - Python 3.10

    class TextEnum(str, enum.Enum):
        """A :class:`str` enum that prints as its value (``enum.StrEnum`` before 3.11)."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return str(self.value).__format__(spec)


__all__ = ["TextEnum"]
