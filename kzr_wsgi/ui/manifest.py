"""An export's manifests: one row per recording, as CSV and as JSON; pure, no I/O.

Each row is the JSON API's item for the recording (see :func:`kzr_wsgi.ui.api.item`),
its ``audio_url`` and ``transcript_url`` pointing into the ZIP. ``manifest.json`` holds
the items as they are (a JSON array, one item a line). ``manifest.csv`` flattens them
for a spreadsheet:

* nested keys become dotted columns (``audio.format``), lists are joined with ``;``
  (a list's nested values as compact JSON), ``null`` is an empty cell, booleans are
  ``true``/``false``;
* a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return,
  which some spreadsheets skip before reading a formula) gets a ``'`` in front: caller
  names and numbers come from SIP headers anyone can set, and a spreadsheet would run
  ``=HYPERLINK(...)`` as a formula. So a number ``+15551234567`` reads ``'+15551234567``;
* UTF-8 with a byte-order mark, so that a spreadsheet reads accents as written.

Both are made a row at a time (generators), so a manifest of 10,000 recordings is
never held whole.

>>> flatten({"id": "a", "audio": {"format": "mp3", "flags": ["silent", "empty"]}})
{'id': 'a', 'audio.format': 'mp3', 'audio.flags': 'silent;empty'}
>>> csv_cell("=HYPERLINK(\\"http://x\\")"), csv_cell("+1555"), csv_cell("Alice")
('\\'=HYPERLINK("http://x")', "'+1555", 'Alice')
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

#: What a cell may not start with, unquoted: the characters that start a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Between a list's values in a CSV cell.
LIST_SEPARATOR = ";"
_BOM = "\ufeff"


def flatten(item: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``item`` as flat text cells: dotted keys for nested objects, lists joined.

    The cells are not yet guarded against formulas (see :func:`csv_cell`).
    """
    cells: dict[str, str] = {}
    for key, value in item.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            cells.update(flatten(value, name + "."))
        elif isinstance(value, (list, tuple)):
            cells[name] = LIST_SEPARATOR.join(_text(v) for v in value)
        else:
            cells[name] = _text(value)
    return cells


def csv_cell(text: str) -> str:
    """``text`` safe for a spreadsheet: ``'`` before a leading formula character."""
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_columns(items: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every flattened column, in the order first seen.

    A key that is an object in some items and ``null`` in others (``audio`` of a row not
    inspected) gives only the dotted columns: the ``null`` is their empty cells.
    """
    seen: dict[str, None] = {}
    for item in items:
        for name in flatten(item):
            seen.setdefault(name, None)
    parents = {name.rsplit(".", 1)[0] for name in seen if "." in name}
    return [name for name in seen if name not in parents]


def manifest_csv(columns: list[str], items: Iterable[Mapping[str, Any]]) -> Iterator[bytes]:
    """``manifest.csv``'s bytes, a row at a time (the header first)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def line(cells: list[str]) -> bytes:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([csv_cell(c) for c in cells])
        return buffer.getvalue().encode("utf-8", "surrogateescape")

    yield _BOM.encode("utf-8") + line(columns)
    for item in items:
        cells = flatten(item)
        yield line([cells.get(name, "") for name in columns])


def manifest_json(items: Iterable[Mapping[str, Any]]) -> Iterator[bytes]:
    """``manifest.json``'s bytes: a JSON array, one item a line."""
    first = True
    for item in items:
        text = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
        yield (("[\n" if first else ",\n") + text).encode("utf-8", "surrogateescape")
        first = False
    yield b"[]\n" if first else b"\n]\n"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)
