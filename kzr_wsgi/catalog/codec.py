"""A :class:`~kzr_wsgi.catalog.rows.Row` to and from the values the database holds (pure).

Times are integer microseconds (UTC), ``segments`` and ``audio`` JSON text, booleans
0/1; the search columns (``sort_us``, ``flagged``, ``flag_bits``, ``noted``, the
normalised numbers, the lower-cased caller name) are derived here, once, on the way in.

A row written again (a retry from another host, a reindex) keeps what its analysis
found: ``analysis_bits`` is never written by :data:`UPSERT`, and ``flagged`` and
``noted`` are worked out from both the inspection's bits and the analysis's.
"""

from __future__ import annotations

import json
from typing import Any

from ..audio import AudioInfo
from ..numbers import number_key
from .analysis import DEFECT_MASK, bits_of
from .rows import Row, clean_text
from .schema import COLUMNS, QUEUED, TABLE, WRITTEN
from .search import from_micros, micros

#: The column list of a ``SELECT`` that :func:`row_from_db` reads.
SELECT_COLUMNS = ", ".join(COLUMNS)
#: On conflict, what the columns that remember the analysis become (every other column
#: takes the new value). Every inspection flag is a defect, so any ``flag_bits`` flags.
_KEPT = {
    "flagged": f"CASE WHEN excluded.flag_bits <> 0 OR ({TABLE}.analysis_bits & {DEFECT_MASK})"
               " <> 0 THEN 1 ELSE 0 END",
    "noted": f"CASE WHEN excluded.flag_bits <> 0 OR {TABLE}.analysis_bits <> 0"
             " THEN 1 ELSE 0 END",
    # A job once written stays (1); a job owed (0) stays owed until repair writes it.
    "queued": f"CASE WHEN excluded.queued = {QUEUED} OR {TABLE}.queued = {QUEUED}"
              f" THEN {QUEUED} WHEN {TABLE}.queued = 0 THEN 0 ELSE excluded.queued END",
}
#: Insert a row, or refresh every column of the row with its id (``seq`` and what its
#: analysis found stay).
UPSERT = (
    f"INSERT INTO {TABLE} ({', '.join(WRITTEN)}) VALUES ({', '.join(':' + c for c in WRITTEN)})"
    f" ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = {_KEPT.get(c, f'excluded.{c}')}" for c in WRITTEN if c != "id")
)


def row_from_db(values: tuple[Any, ...] | list[Any]) -> Row:
    """A :class:`Row` from a ``SELECT`` of :data:`~kzr_wsgi.catalog.schema.COLUMNS`."""
    v = dict(zip(COLUMNS, values, strict=True))
    audio = json.loads(v["audio"]) if v["audio"] else None
    return Row(
        id=v["id"],
        kind=v["kind"],
        call_id=v["call_id"],
        recording_id=v["recording_id"],
        account_id=v["account_id"],
        owner_id=v["owner_id"],
        from_=v["from_uri"],
        to=v["to_uri"],
        caller_id_name=v["caller_id_name"],
        caller_id_number=v["caller_id_number"],
        start=None if v["start_us"] is None else from_micros(int(v["start_us"])),
        duration_ms=None if v["duration_ms"] is None else int(v["duration_ms"]),
        received_at=from_micros(int(v["received_us"])),
        size=int(v["size"]),
        sha256=v["sha256"],
        content_type=v["content_type"],
        location=v["location"],
        segments=() if v["segments"] == "[]" else tuple(json.loads(v["segments"])),
        filename=v["filename"],
        audio=AudioInfo.from_json(audio) if isinstance(audio, dict) else None,
        self_test=bool(v["self_test"]),
        seq=int(v["seq"]),
    )


def write_params(row: Row, queued: int = QUEUED) -> dict[str, Any]:
    """The named parameters of :data:`UPSERT` for ``row``; ``queued`` says whether its
    analysis job is written with it (see :data:`~kzr_wsgi.catalog.schema.QUEUED`)."""
    bits = bits_of(row.flags)
    return {
        "id": row.id,
        "kind": row.kind,
        "call_id": row.call_id,
        "recording_id": row.recording_id,
        "account_id": row.account_id,
        "owner_id": row.owner_id,
        "from_uri": row.from_,
        "to_uri": row.to,
        "caller_id_name": row.caller_id_name,
        "caller_id_number": row.caller_id_number,
        "start_us": None if row.start is None else micros(row.start),
        "duration_ms": row.duration_ms,
        "received_us": micros(row.received_at),
        "size": row.size,
        "sha256": row.sha256,
        "content_type": row.content_type,
        "location": row.location,
        "segments": json.dumps(list(row.segments), ensure_ascii=True),
        "filename": row.filename,
        "audio": None if row.audio is None else json.dumps(row.audio.to_json(),
                                                           sort_keys=True),
        "self_test": int(row.self_test),
        "sort_us": micros(row.sort_at),
        "flagged": int(bool(bits)),
        "flag_bits": bits,
        # The one number rule: every spelling of a number is stored as its key, read
        # without a country (a search asks for every key it may have; kzr_wsgi.numbers).
        "from_norm": _key(row.from_),
        "to_norm": _key(row.to),
        "cid_norm": _key(row.caller_id_number),
        "cname_norm": _key(row.caller_id_name),
        "cid_name_lower": None if row.caller_id_name is None else row.caller_id_name.lower(),
        "noted": int(bool(bits)),
        "queued": queued,
    }


def _key(text: str | None) -> str | None:
    """The number key stored for a from, to or caller id field (``None``: not a number)."""
    key = number_key(text)
    return None if key is None else clean_text(key)
