"""The config file's ``[transcribe]`` table, and merging it under the command line. Pure.

Each key is an option without ``--transcribe-`` (``engine`` is ``--transcribe`` itself);
``accounts``, ``kinds``, ``min-duration``, ``max-duration`` and ``redact-patterns`` are
the file's alone. Times are ages in quotes (``"300s"``, ``"10m"``) or numbers of
seconds. A plug-in engine's own settings go in ``[transcribe.plugin]``::

    [transcribe]
    engine = "openai"
    url = "https://gpu1:8000/v1"
    model = "large-v3"
    key-file = "/etc/kzr/whisper.key"
    piece = "30s"
    kinds = ["call"]
    redact = ["card"]

>>> table = parse_transcribe({"engine": "openai", "url": "https://gpu1/v1", "piece": "30s",
...                           "min-duration": 2})
>>> table.values["piece"], table.values["min_duration"]
(30.0, 2.0)
>>> settings_of({"url": "https://gpu2/v1"}, table, key=None).url
'https://gpu2/v1'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..ages import AgeError, parse_age
from ..configtable import TableError
from .settings import Settings

#: The keys spelled as times.
TIME_KEYS = ("timeout", "piece", "min-duration", "max-duration")
#: The keys that are lists of strings.
LIST_KEYS = ("accounts", "kinds", "redact", "redact-patterns")
#: The keys that are strings.
TEXT_KEYS = ("engine", "url", "model", "key-file", "language", "ca-file")
#: Whole numbers.
NUMBER_KEYS = ("concurrency", "attempts")
#: Switches.
SWITCH_KEYS = ("insecure",)
#: Every key of the table (the plug-in's sub-table aside).
KEYS = (*TEXT_KEYS, *TIME_KEYS, *NUMBER_KEYS, *SWITCH_KEYS, *LIST_KEYS)


@dataclass(frozen=True)
class TranscribeTable:
    """What ``[transcribe]`` says: :class:`Settings` field names -> values (only those
    given), ``key_file`` beside them, and the plug-in's own settings."""

    values: Mapping[str, Any] = field(default_factory=dict)
    plugin: Mapping[str, Any] = field(default_factory=dict)


def parse_transcribe(table: Mapping[str, Any]) -> TranscribeTable:
    """The ``[transcribe]`` table; raises :class:`~kzr_wsgi.configtable.TableError`."""
    values: dict[str, Any] = {}
    plugin: Mapping[str, Any] = {}
    for key, value in table.items():
        if key == "plugin":
            if not isinstance(value, dict):
                raise TableError((), key, "must be a table, [transcribe.plugin]")
            plugin = dict(value)
            continue
        if key not in KEYS:
            raise TableError((), key, "unknown: not a transcription setting (one of "
                             f"{', '.join(KEYS)}, or a plug-in's under [transcribe.plugin])")
        values[key.replace("-", "_")] = _value(key, value)
    try:  # what only the values together say (max under min, a bad pattern…)
        checked = {k: v for k, v in values.items() if k not in ("engine", "key_file")}
        Settings(engine=values.get("engine", "check"), **checked)
    except (ValueError, TypeError) as exc:
        name = str(exc).split(":")[0].removeprefix("transcribe ").split("/")[0]
        name = name.split("[")[0].strip()
        raise TableError((), name if name in KEYS else "engine", str(exc)) from None
    return TranscribeTable(values, plugin)


def settings_of(given: Mapping[str, Any], table: TranscribeTable | None, *,
                key: str | None) -> Settings | None:
    """The settings from the command line and environment (``given``: field names ->
    values, ``None`` for what neither gave) over the file's ``table``; ``None`` when no
    engine is named anywhere (transcription off). ``key`` is the API key itself.

    Raises ``ValueError`` for a bad value.
    """
    merged: dict[str, Any] = dict(table.values) if table is not None else {}
    merged.update({k: v for k, v in given.items() if v is not None})
    engine = merged.pop("engine", None)
    merged.pop("key_file", None)
    if not engine:
        return None
    plugin = tuple(sorted(table.plugin.items())) if table is not None else ()
    known = {f.name for f in fields(Settings)}
    return Settings(engine=str(engine), key=key, extra=plugin,
                    **{k: v for k, v in merged.items() if k in known})


def _value(key: str, value: Any) -> Any:
    if key in TIME_KEYS:
        return seconds(key, value)
    if key in LIST_KEYS:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TableError((), key, 'must be an array of strings, e.g. ["…"]')
        return tuple(value)
    if key in NUMBER_KEYS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TableError((), key, "must be a whole number of at least 1")
        return value
    if key in SWITCH_KEYS:
        if not isinstance(value, bool):
            raise TableError((), key, "a switch: true or false")
        return value
    if not isinstance(value, str) or not value:
        raise TableError((), key, "must be a string")
    return value


def seconds(key: str, value: Any) -> float:
    """``value`` (an age such as ``"300s"`` or a number) in seconds, above 0."""
    if isinstance(value, bool):
        raise TableError((), key, 'must be a time, e.g. "300s"')
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = parse_age(value).total_seconds()
        except AgeError as exc:
            raise TableError((), key, str(exc)) from None
    else:
        raise TableError((), key, 'must be a time, e.g. "300s"')
    if not math.isfinite(number) or number < 0 or (number == 0 and key != "min-duration"):
        raise TableError((), key, "must be a time above 0")
    return number


__all__ = ["KEYS", "TranscribeTable", "parse_transcribe", "seconds", "settings_of"]
