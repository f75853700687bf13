"""The transcription options of ``serve`` and ``kzr-wsgi worker``, declared once.

``--transcribe ENGINE`` and the ``--transcribe-…`` options are read from the command line,
then the environment (``KZR_TRANSCRIBE_URL``, …, as every option), then the config
file's ``[transcribe]`` table, never from a top-level key of the file (the reader refuses
``transcribe-url = …``, naming the table). The API key is never an option: it is read
from ``--transcribe-key-file`` (or the table's ``key-file``), else from
``KZR_TRANSCRIBE_KEY``, so it appears on no command line and in no ``ps``.

:func:`transcribe_settings` puts them together and builds the engine once, so a bad
setting (a plain ``http://`` URL to a remote host, an engine that is not installed)
ends start-up with its reason.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from ..configfile import TRANSCRIBE, Config
from ..transcribe import Settings
from ..transcribe.table import settings_of

F = TypeVar("F", bound=Callable[..., Any])

#: Where the key is read when no key file is named.
KEY_ENV = "KZR_TRANSCRIBE_KEY"


class TableOption(click.Option):
    """An option whose file spelling is a key of a table (``--transcribe-url``: ``url``
    under ``[transcribe]``): read from the command line and the environment, and never
    as a top-level key of the config file."""

    #: The table it belongs to in the file.
    table = "transcribe"


class Duration(click.ParamType):  # type: ignore[type-arg]
    """A time as an age (``300s``, ``10m``) or a number of seconds."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        from ..configtable import TableError
        from ..transcribe.table import seconds

        try:
            return seconds(param.name if param is not None and param.name else "time",
                           float(value) if _numeric(value) else value)
        except TableError as exc:
            self.fail(exc.problem, param, ctx)


def _numeric(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


#: (option, field, click keyword arguments), in the order --help shows them.
OPTIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("--transcribe", "engine", {"metavar": "ENGINE", "help": (
        "Transcribe each analysed recording with ENGINE: openai (any OpenAI-compatible "
        "server), pocketsphinx (offline; extra transcribe) or a plug-in's name. Off by "
        "default. Or [transcribe] engine in the config file.")}),
    ("--transcribe-url", "url", {"metavar": "URL", "help": (
        "The engine's base URL (openai), e.g. https://gpu1:8000/v1.")}),
    ("--transcribe-model", "model", {"metavar": "NAME", "help": (
        "The model name the engine expects (openai: e.g. whisper-1, large-v3).")}),
    ("--transcribe-key-file", "key_file", {
        "type": click.Path(dir_okay=False, exists=True), "help": (
            "File holding the engine's API key (else KZR_TRANSCRIBE_KEY). The key is "
            "never taken on the command line.")}),
    ("--transcribe-language", "language", {"metavar": "CODE", "help": (
        "The language spoken, e.g. en (default: the engine detects it).")}),
    ("--transcribe-timeout", "timeout", {"type": Duration(), "help": (
        "Longest one request may take (default 300s).")}),
    ("--transcribe-concurrency", "concurrency", {"type": click.IntRange(1, 64), "help": (
        "Requests at once per worker (default 2).")}),
    ("--transcribe-ca-file", "ca_file", {
        "type": click.Path(dir_okay=False, exists=True), "help": (
            "PEM file of CAs to trust for the engine's certificate (default: the "
            "system's).")}),
    ("--transcribe-insecure", "insecure", {"is_flag": True, "default": None, "help": (
        "Allow plain http:// to a host that is not loopback (call audio is personal "
        "data: refused otherwise).")}),
    ("--transcribe-piece", "piece", {"type": Duration(), "help": (
        "Longest piece of audio sent in one request (default 600s; cut at silences).")}),
    ("--transcribe-attempts", "attempts", {"type": click.IntRange(1, 100), "help": (
        "Tries before a transcription is failed (default 5).")}),
    ("--transcribe-redact", "redact", {"multiple": True, "metavar": "WHAT", "help": (
        "What to redact from transcripts before they are stored: card (the default). "
        "Repeatable; 'none' turns redaction off.")}),
)


def transcribe_options(func: F) -> F:
    """Add the transcription options; the command receives ``transcribe: dict``
    (field name -> value, ``None`` where neither the command line nor the environment
    gave one)."""
    names = [field for _, field, _ in OPTIONS]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(f"transcribe_{name}") for name in names}
        if not given["redact"]:
            given["redact"] = None
        elif given["redact"] == ("none",):
            given["redact"] = ()
        return func(*args, transcribe=given, **kwargs)

    for option, field, extra in reversed(OPTIONS):
        declared = {"default": None, **extra}
        wrapper = click.option(option, f"transcribe_{field}", cls=TableOption,
                               **declared)(wrapper)
    return wrapper  # type: ignore[return-value]


def read_key(key_file: str | None) -> str | None:
    """The API key: the key file's first line, else ``KZR_TRANSCRIBE_KEY``, else none."""
    if key_file:
        try:
            text = Path(key_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"--transcribe-key-file {key_file}: {exc}") from exc
        key = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not key:
            raise click.ClickException(f"--transcribe-key-file {key_file}: empty")
        return key
    return os.environ.get(KEY_ENV) or None


def transcribe_settings(given: Mapping[str, Any], config: Config | None) -> Settings | None:
    """The transcription settings (``None``: off), the engine built once to check them;
    a click error naming the problem."""
    table = TRANSCRIBE.of(config)
    key_file = given.get("key_file") or (table.values.get("key_file") if table else None)
    try:
        settings = settings_of(given, table, key=None)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if settings is None:
        return None
    from dataclasses import replace

    from ..transcribe import TranscribeError, create

    settings = replace(settings, key=read_key(key_file))
    try:
        create(settings).close()
    except (ValueError, TranscribeError) as exc:
        raise click.UsageError(f"--transcribe {settings.engine}: {exc}") from exc
    return settings


def transcribing_line(settings: Settings, workers: int) -> str:
    """What start-up says of transcription (never the key)."""
    where = f" at {settings.url}" if settings.url else ""
    model = f", model {settings.model}" if settings.model else ""
    key = ", with a key" if settings.key else ""
    runs = (f"{workers} background worker(s)" if workers
            else "other hosts' workers (--background-workers 0)")
    return (f"transcription: {settings.engine}{where}{model}{key}, by {runs}; "
            f"redacting {', '.join(settings.redact) or 'nothing'}")


def redactor_of(given: Mapping[str, Any], config: Config | None) -> Any:
    """The :class:`~kzr_wsgi.transcribe.Redactor` of the rules as given (the command line,
    the environment, then the file), with or without an engine."""
    from ..transcribe import Redactor

    table = TRANSCRIBE.of(config)
    values = dict(table.values) if table is not None else {}
    redact = given.get("redact")
    return Redactor(redact if redact is not None else values.get("redact", ("card",)),
                    values.get("redact_patterns", ()))


def worker_env(given: Mapping[str, Any]) -> dict[str, str]:
    """``given`` as the ``KZR_WORKER_TRANSCRIBE…`` variables of a worker process
    (``serve``'s background workers): the key file's name, never the key."""
    out: dict[str, str] = {}
    for option, field, _ in OPTIONS:
        value = given.get(field)
        if value is None:
            continue
        name = "KZR_WORKER_" + option[2:].upper().replace("-", "_")
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, tuple):
            out[name] = " ".join(value) if value else "none"
        else:
            out[name] = str(value)
    return out


__all__ = ["KEY_ENV", "OPTIONS", "TableOption", "read_key", "redactor_of", "transcribe_options",
           "transcribe_settings", "transcribing_line", "worker_env"]
