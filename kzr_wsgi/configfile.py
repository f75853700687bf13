"""The TOML config file, apart from the command line: its tables, its lines, what it holds.

No click here (the command line's side is :mod:`kzr_wsgi.cli.config`, which knows the
options), so the layers that use what a file says (the housekeeper reads its
``[retention]`` policy) do not depend on the commands. This module:

* reads a file and finds the line of every key (:func:`read_toml`, :class:`Locator`);
* keeps the registry of the file's tables (:data:`TABLES`): each is a name and a pure
  parser (see :mod:`kzr_wsgi.configtable`). Registering a table is one call,
  ``TABLES.register("name", parse, about="…")``; the commands then declare that they
  read it, and the config page lists it under them;
* holds a loaded, checked file (:class:`Config`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from .configtable import TableError
from .errors import KzrError
from .housekeeping.policy import RetentionPolicy, parse_retention
from .pipeline.settings import PipelineSettings, parse_analysis
from .transcribe.table import TranscribeTable, parse_transcribe

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

T = TypeVar("T")


class ConfigError(KzrError):
    """The config file cannot be used; the message names the file, the line and the key."""


@dataclass(frozen=True)
class Table(Generic[T]):
    """One table the file may hold (``[retention]``): its name and its parser."""

    name: str
    #: The table as ``tomllib`` gave it -> its value; raises ``TableError``.
    parse: Callable[[Mapping[str, Any]], T]
    #: One line for the config page: what the table says.
    about: str

    def of(self, config: Config | None) -> T | None:
        """This table's value in ``config``; ``None`` without a file or without the table."""
        if config is None:
            return None
        value: T | None = config.tables.get(self.name)
        return value


class Tables:
    """The registry of the tables a config file may hold, by name."""

    def __init__(self) -> None:
        self._tables: dict[str, Table[Any]] = {}

    def register(self, name: str, parse: Callable[[Mapping[str, Any]], T], *, about: str
                 ) -> Table[T]:
        """Add the table ``[name]``, read by ``parse``; the handle reads its value."""
        if name in self._tables:
            raise ValueError(f"the table [{name}] is registered already")
        table = Table(name, parse, about)
        self._tables[name] = table
        return table

    def __iter__(self) -> Iterator[Table[Any]]:
        return iter(self._tables.values())

    def get(self, name: str) -> Table[Any] | None:
        """The table named ``name``, or ``None``."""
        return self._tables.get(name)

    def claiming(self, key: str) -> tuple[Table[Any], str] | None:
        """The table a top-level ``key`` belongs to when spelled as one, and the rest.

        ``retention-default``, ``Retention_Default`` or ``RETENTION`` are the
        ``[retention]`` table's, written as a top-level key: the reader refuses them
        naming the table, rather than as merely unknown.
        """
        spelled = key.lower().replace("_", "-")
        for table in self:
            if spelled == table.name:
                return table, ""
            if spelled.startswith(table.name + "-"):
                return table, spelled[len(table.name) + 1:]
        return None


#: Every table a config file may hold.
TABLES = Tables()
#: ``[retention]``: the pruning policy.
RETENTION: Table[RetentionPolicy] = TABLES.register(
    "retention", parse_retention,
    about="the retention policy: how long recordings are kept, by account and by kind")
#: ``[analysis]``: the analysis's thresholds, the caller's side, the queue's lease and retries.
ANALYSIS: Table[PipelineSettings] = TABLES.register(
    "analysis", parse_analysis,
    about="the analysis: every threshold, which side the caller is on (by kind and by "
          "account), and the queue's lease, attempts and backoff")
#: ``[transcribe]``: the transcription engine, which recordings it transcribes, redaction.
TRANSCRIBE: Table[TranscribeTable] = TABLES.register(
    "transcribe", parse_transcribe,
    about="transcription: the engine (openai, pocketsphinx or a plug-in), where it is, "
          "which recordings it transcribes, and what is redacted from transcripts")


@dataclass(frozen=True)
class Config:
    """A loaded, checked config file."""

    path: Path
    #: Top-level keys as written (``"max-size": "2G"``): options some command reads.
    options: Mapping[str, Any]
    #: Each table the file holds, parsed, by name (see :data:`TABLES`).
    tables: Mapping[str, Any] = field(default_factory=dict)

    @property
    def retention(self) -> RetentionPolicy | None:
        """The ``[retention]`` table; ``None`` when the file has none."""
        return RETENTION.of(self)


def read_toml(path: str | Path) -> tuple[dict[str, Any], Locator]:
    """The file's data, and a :class:`Locator` for its lines; raises :class:`ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return data, Locator(path, text)


def parse_table(table: Table[T], value: Any, where: Locator) -> T:
    """``value`` (the file's ``[name]``) through ``table``'s parser; errors with their line."""
    if not isinstance(value, dict):
        raise ConfigError(where.say((), table.name, f"must be a table, [{table.name}]"))
    try:
        return table.parse(value)
    except TableError as exc:
        raise ConfigError(where.say((table.name, *exc.below), exc.key, exc.problem)) from exc


# A table header ([a.b] or [[a.b]]) and the start of a key/value line (bare, quoted or
# dotted keys). tomllib reports no positions, so lines are found in the text itself.
_HEADER = re.compile(r"\s*\[\[?\s*(?P<name>[^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"\s*(?P<key>(?:[A-Za-z0-9_-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*')"
                  r"(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*'))*)\s*=")
_PART = re.compile(r"[A-Za-z0-9_-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*'")


def _split_key(text: str) -> tuple[str, ...]:
    """``a."b.c".d`` -> ``("a", "b.c", "d")``."""
    parts = []
    for raw in _PART.findall(text):
        if raw.startswith('"'):
            parts.append(tomllib.loads(f"k = {raw}")["k"])
        elif raw.startswith("'"):
            parts.append(raw[1:-1])
        else:
            parts.append(raw)
    return tuple(parts)


class Locator:
    """Finds the line a key was written on, respecting tables and dotted keys."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        #: (full key path, line number) for every key and table header, in order.
        self.lines: list[tuple[tuple[str, ...], int]] = []
        table: tuple[str, ...] = ()
        in_multiline: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if in_multiline is not None:
                # Inside a multi-line string: its lines are data, not keys.
                if line.count(in_multiline) % 2 == 1:
                    in_multiline = None
                continue
            header = _HEADER.match(line)
            if header is not None:
                table = _split_key(header.group("name"))
                self.lines.append((table, number))
                continue
            key = _KEY.match(line)
            if key is not None:
                self.lines.append(((*table, *_split_key(key.group("key"))), number))
                rest = line[key.end():]
                for quote in ('"""', "'''"):
                    if rest.count(quote) % 2 == 1:
                        in_multiline = quote

    def line_of(self, full: tuple[str, ...]) -> int | None:
        """The first line that defines ``full`` (or a dotted key beneath it)."""
        for keys, number in self.lines:
            if keys[: len(full)] == full:
                return number
        return None

    def say(self, table: tuple[str, ...], key: str, problem: str) -> str:
        """``FILE:LINE: key 'k' in [table]: PROBLEM``."""
        number = self.line_of((*table, key))
        where = f"{self.path}:{number}" if number is not None else str(self.path)
        inside = f" in [{'.'.join(table)}]" if table else ""
        return f"{where}: key {key!r}{inside}: {problem}"
