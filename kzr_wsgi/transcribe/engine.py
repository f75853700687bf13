"""The engine interface, and the registry that finds an engine by its name.

An engine is a subclass of :class:`Transcriber`, constructed with the
:class:`~kzr_wsgi.transcribe.settings.Settings`, whose :meth:`~Transcriber.transcribe`
turns the samples of one piece of one channel into a
:class:`~kzr_wsgi.transcribe.model.Transcript` (times in the piece's own time, channel
left empty: the caller places and labels it). Two are built in, ``openai`` and
``pocketsphinx``; any installed distribution can add more under the entry-point group
``kzr_wsgi.transcribers``, e.g. in its ``pyproject.toml``::

    [project.entry-points."kzr_wsgi.transcribers"]
    phrases = "kzr_phrases:PhraseSpotter"

The built-in names cannot be taken by a plug-in (a plug-in that tries is reported by
:func:`engine_class` when it is asked for by that name, and never loaded).

>>> sorted(BUILTIN)
['openai', 'pocketsphinx']
>>> engine_class("openai").__name__
'OpenAITranscriber'
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from .errors import EngineUnavailable

if TYPE_CHECKING:
    from .model import Transcript
    from .settings import Settings

#: The entry-point group plug-in engines register under.
ENTRY_POINT_GROUP = "kzr_wsgi.transcribers"

#: The built-in engines: name -> ``module:class``, imported only when chosen, so a
#: missing extra matters only to the engine that needs it.
BUILTIN: dict[str, str] = {
    "openai": "kzr_wsgi.transcribe.openai_api:OpenAITranscriber",
    "pocketsphinx": "kzr_wsgi.transcribe.sphinx:PocketsphinxTranscriber",
}


class Transcriber(ABC):
    """The base of every engine: constructed once per worker, then called per piece.

    A subclass sets :attr:`name`, checks the settings it needs in ``__init__``
    (``ValueError`` for a bad one, so start-up fails before any recording is taken),
    and implements :meth:`transcribe`. It may be called from several threads at once
    (up to ``concurrency``); an engine that cannot be must lock.
    """

    #: The engine's name, as ``--transcribe`` spells it and transcripts record it.
    name: str = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def model(self) -> str:
        """The model name transcripts record (by default the ``model`` setting)."""
        return self.settings.model or ""

    @abstractmethod
    def transcribe(self, samples: Any, rate: int, language: str | None) -> Transcript:
        """What was said in ``samples``: one channel, 1-D ``float32`` (-1…1) or ``int16``.

        ``rate`` is the samples' rate in Hz; ``language`` (e.g. ``en``) or None to
        let the engine detect it. Times in the answer are seconds from the first
        sample. Raises a :class:`~kzr_wsgi.transcribe.errors.TranscribeError`
        (retryable or not) when the engine fails.
        """

    def close(self) -> None:  # noqa: B027 - optional: most engines hold nothing to close
        """Let go of what the engine holds (connections, models). Called once, at the end."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} model={self.model!r}>"


def plugin_entry_points() -> list[EntryPoint]:
    """The entry points registered under :data:`ENTRY_POINT_GROUP` by installed packages."""
    return list(entry_points(group=ENTRY_POINT_GROUP))


def engine_names(plugins: Iterable[EntryPoint] | None = None) -> list[str]:
    """Every engine that can be chosen: the built-ins, then the plug-ins, sorted."""
    found = plugin_entry_points() if plugins is None else plugins
    return [*sorted(BUILTIN), *sorted({ep.name for ep in found} - set(BUILTIN))]


def engine_class(name: str, plugins: Iterable[EntryPoint] | None = None) -> type[Transcriber]:
    """The class of the engine called ``name``.

    ``plugins`` defaults to the installed entry points (:func:`plugin_entry_points`);
    pass a list of :class:`importlib.metadata.EntryPoint` to register some without
    installing anything. Raises
    :class:`~kzr_wsgi.transcribe.errors.EngineUnavailable` for an unknown name, a
    plug-in that fails to load or is not a :class:`Transcriber`-like class, or a
    built-in whose extra is missing.
    """
    found = plugin_entry_points() if plugins is None else list(plugins)
    if name in BUILTIN:
        module, _, attr = BUILTIN[name].partition(":")
        try:
            loaded: Any = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            raise EngineUnavailable(
                f"the {name} engine needs the 'transcribe' extra: "
                f"pip install 'kzr_wsgi[transcribe]' ({exc})") from exc
        return _checked(name, loaded)
    matches = [ep for ep in found if ep.name == name]
    if not matches:
        raise EngineUnavailable(
            f"no transcription engine {name!r} (known: {', '.join(engine_names(found))})")
    if len({ep.value for ep in matches}) > 1:
        raise EngineUnavailable(f"two plug-ins call themselves {name!r}: "
                                f"{', '.join(sorted(ep.value for ep in matches))}")
    try:
        loaded = matches[0].load()
    except Exception as exc:  # a plug-in's import can fail in any way; say which one
        raise EngineUnavailable(
            f"transcription plug-in {name!r} ({matches[0].value}) failed to load: "
            f"{type(exc).__name__}: {exc}") from exc
    return _checked(name, loaded)


def create(settings: Settings, plugins: Iterable[EntryPoint] | None = None) -> Transcriber:
    """The engine ``settings.engine`` names, constructed with ``settings``.

    A plug-in that leaves :attr:`Transcriber.name` empty is known by its entry
    point's name.
    """
    engine = engine_class(settings.engine, plugins)(settings)
    if not engine.name:
        engine.name = settings.engine
    return engine


def _checked(name: str, loaded: Any) -> type[Transcriber]:
    if not (isinstance(loaded, type) and issubclass(loaded, Transcriber)):
        raise EngineUnavailable(
            f"transcription engine {name!r} is not a subclass of "
            f"kzr_wsgi.transcribe.Transcriber")
    return loaded


__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "Transcriber",
    "create",
    "engine_class",
    "engine_names",
    "plugin_entry_points",
]
