"""Objects the S3 store keeps beside a copy, part of it: its analysis and its waveform.

``<object key>.kzr.analysis.json`` and ``<object key>.kzr.peaks.json`` (the endings are
:data:`~kzr_wsgi.naming.COMPANION_SUFFIXES`). S3 has no locks, so a write is made safe
against a removal racing it by looking again: the index entry is read (the copy must be
indexed), the objects are written, and the entry is read once more; if the recording
went meanwhile (a prune, an erase, a fan-out's rollback), what was written is deleted.
A removal deletes the entry first and the companions after it, so whichever order the
two interleave in, no companion outlives its recording (a host killed between its write
and its second look leaves objects the sweep removes:
:mod:`kzr_wsgi.housekeeping.sweep`).

Each carries the store's metadata (``kzr-name``, the name's digest, and
``kzr-companion``), so the sweep can tell whose they are without their recording.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import NotFound
from ...naming import COMPANION_SUFFIXES, name_digest
from ...recording import Kind, Name
from .client import Bucket, Operation, mapped_errors
from .entries import delete_quietly, read_entry, record_index_key


def companion_base(key: str) -> tuple[str, str] | None:
    """``(object key, ending)`` when ``key`` is a companion object's key, else ``None``.

    >>> companion_base("call/x~1.mp3.kzr.peaks.json")
    ('call/x~1.mp3', '.kzr.peaks.json')
    """
    for suffix in COMPANION_SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)], suffix
    return None


def put(bucket: Bucket, record: Mapping[str, Any], files: Mapping[str, bytes]) -> bool:
    """Write ``files`` (ending -> bytes) beside the copy ``record`` names; ``False`` when
    it is not indexed, before the write or after it (then what was written is deleted)."""
    for suffix in files:
        if suffix not in COMPANION_SUFFIXES:
            raise ValueError(f"{suffix!r} is not a companion file's ending")
    entry_key = record_index_key(bucket, record)
    name = Name(Kind(record["kind"]), tuple(record["segments"]), record["filename"])
    metadata = {"kzr-name": name_digest(name), "kzr-companion": "1"}
    written: list[str] = []
    with mapped_errors(Operation.STORE):
        entry = read_entry(bucket, entry_key)
        if entry is None or "key" not in entry:
            return False
        key = str(entry["key"])
        try:
            for suffix, data in files.items():
                bucket.client.put_object(Bucket=bucket.name, Key=key + suffix, Body=data,
                                        ContentType="application/json", Metadata=metadata)
                written.append(key + suffix)
        except BaseException:
            delete_quietly(bucket, *written)
            raise
        again = read_entry(bucket, entry_key)
    if again is None or again.get("key") != key:
        # Removed (or stored afresh under another key) while we wrote: ours must go.
        delete_quietly(bucket, *written)
        return False
    return True


def get(bucket: Bucket, record: Mapping[str, Any], suffix: str) -> bytes:
    """The companion object ``suffix`` of the copy ``record`` names; :class:`NotFound`
    when the copy is not indexed or has no such object."""
    if suffix not in COMPANION_SUFFIXES:
        raise ValueError(f"{suffix!r} is not a companion file's ending")
    with mapped_errors(Operation.READ):
        entry = read_entry(bucket, record_index_key(bucket, record))
        if entry is None or "key" not in entry:
            raise NotFound("no such recording")
        response = bucket.client.get_object(Bucket=bucket.name, Key=entry["key"] + suffix)
        with response["Body"] as body:
            return bytes(body.read())


def delete_all(bucket: Bucket, key: str) -> None:
    """Delete every companion object of the object ``key`` (absent ones too)."""
    for suffix in COMPANION_SUFFIXES:
        bucket.client.delete_object(Bucket=bucket.name, Key=key + suffix)
