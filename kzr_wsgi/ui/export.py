"""An export: chosen recordings as one ZIP, streamed as it is made, in constant memory.

:func:`export_zip` is an iterator of bytes, usable as a WSGI body (closing it closes the
file being read): nothing is staged on disk and no file is held in memory, however large;
past 4 GB the archive is ZIP64. It holds

* each recording's audio, stored as it is (MP3 and WAV gain nothing from deflate),
  under its readable download name (:func:`kzr_wsgi.ui.api.download_name`): see
  :func:`export_names` for collisions and hostile names;
* ``transcripts/NAME.vtt`` for each recording that has a transcript;
* ``manifest.csv`` and ``manifest.json`` (see :mod:`kzr_wsgi.ui.manifest`), last, so that
  they say what the archive really holds: a recording whose bytes could not be read
  (pruned meanwhile, a store gone away) has a ``null`` ``audio_url`` there.

The ZIP is written by ``zipstream-ng``: stored entries streamed with data descriptors,
ZIP64 where sizes or offsets need it, and no dependency of its own.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from zipstream import ZIP_STORED, ZipStream

from ..catalog import Row
from ..errors import KzrError
from ..recording import StoredFile
from .api import download_name
from .api import item as api_item
from .manifest import csv_columns, manifest_csv, manifest_json

log = logging.getLogger("kzr_wsgi.ui")

#: Bytes read from a stored file at a time.
CHUNK = 1 << 16
#: The folder of the transcripts, and the manifests' names.
TRANSCRIPTS = "transcripts"
MANIFEST_CSV = "manifest.csv"
MANIFEST_JSON = "manifest.json"
#: Longest stem of a name, in UTF-8 bytes: with a suffix and an extension it stays under
#: the 255 bytes most file systems allow a name.
_MAX_STEM = 180
_DOTS = re.compile(r"\.{2,}")
_NOT_ID = re.compile(r"[^A-Za-z0-9]+")

#: ``(row, the name of its audio in the ZIP)`` -> the manifest's item.
ItemMaker = Callable[[Row, str], Mapping[str, Any]]
#: A row -> its transcript as WebVTT (text, or text in pieces), ``None`` when it has none.
TranscriptMaker = Callable[[Row], str | Iterable[str] | None]


def export_names(rows: Iterable[Row]) -> dict[str, str]:
    """Row id -> the audio's name in the ZIP: the download name, made safe and unique.

    No name holds ``/``, ``\\`` or ``..``, starts with a dot, or is longer than a file
    system takes. When two names would be the same (also differing only in case, or
    only in their extension, which would give their transcripts one name), each gets
    ``_`` and the start of its row id before the extension. A row listed twice is
    exported once.
    """
    natural: dict[str, tuple[str, str]] = {}
    for row in rows:
        if row.id not in natural:
            natural[row.id] = _split(_safe(download_name(row)))
    counts = Counter(stem.casefold() for stem, _ext in natural.values())
    names: dict[str, str] = {}
    taken: set[str] = set()
    for row_id, (stem, ext) in natural.items():
        if counts[stem.casefold()] == 1:
            names[row_id] = f"{stem}.{ext}"
            taken.add(stem.casefold())
    for row_id, (stem, ext) in natural.items():
        if row_id in names:
            continue
        suffix = _NOT_ID.sub("", row_id) or "x"
        candidate = f"{stem}_{suffix[:12]}"
        if candidate.casefold() in taken:
            candidate = f"{stem}_{suffix[:32]}"
        number = 2
        base = candidate
        while candidate.casefold() in taken:
            candidate = f"{base}-{number}"
            number += 1
        taken.add(candidate.casefold())
        names[row_id] = f"{candidate}.{ext}"
    return names


def transcript_name(audio_name: str) -> str:
    """``transcripts/STEM.vtt`` for the audio named ``audio_name``."""
    return f"{TRANSCRIPTS}/{_split(audio_name)[0]}.vtt"


def export_zip(
    rows: Sequence[Row],
    open_audio: Callable[[Row], StoredFile],
    *,
    transcript: TranscriptMaker | None = None,
    item: ItemMaker = api_item,
    chunk_size: int = CHUNK,
) -> Iterator[bytes]:
    """The ZIP of ``rows``, made as it is read (see the module docs).

    :param open_audio: a row -> its stored bytes (the store's ``open_stored``); raising
        :class:`~kzr_wsgi.errors.KzrError` or :class:`OSError` leaves that audio out.
    :param transcript: a row -> its WebVTT, or ``None`` when it has none.
    :param item: ``(row, audio name)`` -> its manifest item; by default the API's item
        with ``audio_url`` the audio's name in the ZIP.
    """
    names = export_names(rows)
    unique = list({row.id: row for row in rows}.values())
    stream = ZipStream(compress_type=ZIP_STORED)
    opened: list[StoredFile] = []
    exported: dict[str, tuple[str | None, str | None]] = {}
    try:
        for row in unique:
            name = names[row.id]
            stored = _open(open_audio, row)
            audio_name = None
            if stored is not None:
                opened.append(stored)
                stream.add(_read(stored, chunk_size, opened), name, size=stored.size)
                yield from stream.all_files()
                audio_name = name
            vtt = _transcript(transcript, row)
            vtt_name = None
            if vtt is not None:
                vtt_name = transcript_name(name)
                stream.add(vtt, vtt_name)
                yield from stream.all_files()
            exported[row.id] = (audio_name, vtt_name)

        def items() -> Iterator[Mapping[str, Any]]:
            for row in unique:
                audio_name, vtt_name = exported[row.id]
                data = dict(item(row, names[row.id]))
                data["audio_url"] = audio_name
                data["transcript_url"] = vtt_name
                yield data

        stream.add(manifest_csv(csv_columns(items()), items()), MANIFEST_CSV)
        stream.add(manifest_json(items()), MANIFEST_JSON)
        yield from stream.finalize()
    finally:
        for stored in opened:
            stored.close()


def _open(open_audio: Callable[[Row], StoredFile], row: Row) -> StoredFile | None:
    try:
        return open_audio(row)
    except (KzrError, OSError) as exc:
        # Between the listing and the export a recording may be pruned or its store
        # become unreachable: the archive says so in its manifest, and goes on.
        log.warning("export: the audio of %s cannot be read (%s): left out", row.id,
                    type(exc).__name__)
        return None


def _read(stored: StoredFile, chunk_size: int, opened: list[StoredFile]) -> Iterator[bytes]:
    """The file's bytes, closed (and forgotten) once read."""
    try:
        while True:
            chunk = stored.fileobj.read(chunk_size)
            if not chunk:
                return
            yield chunk
    finally:
        stored.close()
        opened[:] = [s for s in opened if s is not stored]


def _transcript(make: TranscriptMaker | None, row: Row) -> bytes | None:
    """The row's WebVTT as bytes; a transcript is small, and made whole before its entry
    starts, so that one that fails leaves no broken entry behind."""
    if make is None:
        return None
    try:
        made = make(row)
    except (KzrError, OSError) as exc:
        log.warning("export: the transcript of %s cannot be made (%s): left out", row.id,
                    type(exc).__name__)
        return None
    if made is None:
        return None
    text = made if isinstance(made, str) else "".join(made)
    return text.encode("utf-8", "surrogateescape")


def _safe(name: str) -> str:
    """No separator, no ``..``, no leading dot, at most :data:`_MAX_STEM` bytes of stem."""
    name = _DOTS.sub(".", name.replace("/", "-").replace("\\", "-").replace("\0", "-"))
    name = name.lstrip(".") or "recording.bin"
    stem, ext = _split(name)
    encoded = stem.encode("utf-8", "surrogateescape")
    if len(encoded) > _MAX_STEM:
        stem = encoded[:_MAX_STEM].decode("utf-8", "ignore").rstrip(".-") or "recording"
    return f"{stem}.{ext}"


def _split(name: str) -> tuple[str, str]:
    stem, dot, ext = name.rpartition(".")
    return (stem, ext) if dot and stem else (name, "bin")
