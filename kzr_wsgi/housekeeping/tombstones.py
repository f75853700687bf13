"""Tombstones: an erased recording's retry is answered ``200`` and not stored again.

Kazoo retries an upload for minutes and storage plans upload again; an erased recording
must not come back that way. For ``kzr-wsgi erase --tombstone AGE`` (default 30 days)
each erased copy leaves a tombstone in the store's state (``tombstones/<hash>.json``,
where every host on the store sees it), written before the copy's index entry is
removed. It keeps:

* a keyed hash (HMAC-SHA256 under the erase key) of the copy's name and
  ``recording_id``: the file's own name, so a lookup is one read;
* per erased body: its sha256, the request's reference and the tombstone's expiry.

Never a number or a name. An upload whose name, ``recording_id`` and sha256 all match
a live tombstone is an erased recording's retry (:class:`RetryGuard`); anything else is a
new recording. No tombstone is made for bodies that recur across calls: empty ones,
ones that are not audio, and ``kzr-wsgi check``'s self-tests (:func:`wanted`).

**The erase key** (:func:`erase_key`) is 32 random bytes created once in the store's
state (``erase.key``, by an exclusive create, so two hosts agree on one). The audit
trail's selector hashes use it too: whoever holds the state can test a guess, which is
why the trail is pseudonymous, not anonymous.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import tempfile
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from ..errors import KzrError
from ..recording import Name, Recording
from ..stores.state import DiskState, S3State
from .erasing import keyed_hash

log = logging.getLogger("kzr_wsgi.erase")

#: How long a tombstone stops retries, by default.
DEFAULT_TOMBSTONE = timedelta(days=30)
#: The audio flags of bodies that recur across calls: no tombstone for them.
RECURRING_FLAGS = ("empty", "not_audio")
#: Bytes a retry's body is hashed in.
_CHUNK = 1 << 20
#: A body up to this size is held in memory while it is hashed; larger ones spill to disk.
_IN_MEMORY = 8 << 20


def erase_key(state: DiskState | S3State) -> bytes:
    """The store's erase key, created on first use (one for every host on the store)."""
    found = state.read("erase.key")
    if found is None:
        state.create("erase.key", secrets.token_hex(32).encode("ascii"))
        found = state.read("erase.key")
    if found is None:
        raise RuntimeError(f"the erase key cannot be kept in {state.where}")
    return bytes.fromhex(found.decode("ascii").strip())


def wanted(record: Mapping[str, Any]) -> bool:
    """Whether an erased copy (its sidecar dict) gets a tombstone: not for empty bodies,
    bodies that are not audio, or self-tests (identical bytes recur across calls)."""
    from ..recording import is_self_test

    audio = record.get("audio")
    flags = audio.get("flags") or () if isinstance(audio, Mapping) else ()
    if any(flag in RECURRING_FLAGS for flag in flags) or not int(record.get("size") or 0):
        return False
    return not (record.get("self_test") or is_self_test(record.get("call_id")))


def name_hash(key: bytes, name_key: tuple[str, ...] | list[str], recording_id: str | None) -> str:
    """The keyed hash a tombstone is filed under: of a copy's name and ``recording_id``."""
    return keyed_hash(key, json.dumps([list(name_key), recording_id or ""], ensure_ascii=True))


def record_name_key(record: Mapping[str, Any]) -> tuple[str, ...]:
    """The :attr:`~kzr_wsgi.recording.Name.key` of the name a sidecar dict was stored under."""
    from ..recording import Kind

    return Name(Kind(record["kind"]), tuple(record.get("segments") or ()),
                str(record.get("filename") or "")).key


class Tombstones:
    """The tombstones of one store (in its state: disk or bucket)."""

    def __init__(self, state: DiskState | S3State) -> None:
        #: Where they are kept.
        self.state = state
        self._key: bytes | None = None

    @property
    def key(self) -> bytes:
        """The erase key (read once)."""
        if self._key is None:
            self._key = erase_key(self.state)
        return self._key

    def add(self, record: Mapping[str, Any], reference: str, age: timedelta,
            now: datetime | None = None) -> str:
        """Make (or extend) the tombstone of an erased copy; return its file's name."""
        name = self._file(record_name_key(record), record.get("recording_id"))
        now = now or datetime.now(timezone.utc)
        doc = self._read(name)
        doc = {sha: v for sha, v in doc.items() if _live(v, now)}
        doc[str(record["sha256"])] = {"reference": reference,
                                      "expires": (now + age).isoformat()}
        self.state.write(name, json.dumps(doc, sort_keys=True).encode("ascii"))
        return name

    def lookup(self, name: Name, recording_id: str | None,
               now: datetime | None = None) -> dict[str, str]:
        """The live tombstones of this name and recording id: sha256 -> reference."""
        if self._key is None:
            found = self.state.read("erase.key")
            if found is None:
                return {}  # nothing was ever erased here: no key, so no tombstone
            self._key = bytes.fromhex(found.decode("ascii").strip())
        doc = self._read(self._file(name.key, recording_id))
        now = now or datetime.now(timezone.utc)
        return {sha: str(v["reference"]) for sha, v in doc.items() if _live(v, now)}

    def purge(self, now: datetime | None = None) -> int:
        """Remove the tombstones that have all expired; how many files went."""
        now = now or datetime.now(timezone.utc)
        gone = 0
        for name, _ in list(self.state.list("tombstones")):
            if not any(_live(v, now) for v in self._read(name).values()):
                self.state.delete(name)
                gone += 1
        return gone

    def _file(self, name_key: tuple[str, ...] | list[str], recording_id: Any) -> str:
        return f"tombstones/{name_hash(self.key, name_key, recording_id)}.json"

    def _read(self, name: str) -> dict[str, Any]:
        data = self.state.read(name)
        if data is None:
            return {}
        try:
            doc = json.loads(data)
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}


def _live(value: Any, now: datetime) -> bool:
    try:
        return datetime.fromisoformat(str(value["expires"])) > now
    except (KeyError, TypeError, ValueError):
        return False


class RetryGuard:
    """Tells an erased recording's retry from a new upload, before anything is stored.

    :meth:`check` costs one or two reads of the state per upload (a file, or a ``GET``
    on a bucket: the erase key until one exists, then the tombstone's); only when a
    tombstone names the upload's name and recording id is the body read ahead and hashed
    (held in memory, or in a temporary file past 8 MiB), then handed on to the store
    unchanged when it is not the erased one.
    """

    def __init__(self, state: DiskState | S3State) -> None:
        #: The store's tombstones.
        self.tombstones = Tombstones(state)

    @classmethod
    def of(cls, handler: object) -> RetryGuard | None:
        """The guard of a store that keeps state (``None`` for a handler that keeps none)."""
        from ..stores.base import StateKeeper

        if not isinstance(handler, StateKeeper):
            return None
        try:
            return cls(handler.state())
        except KzrError:
            return None

    def check(self, recording: Recording) -> str | None:
        """The request's reference when ``recording`` is an erased one's retry, else
        ``None`` (then ``recording.stream`` still gives every byte of the body)."""
        try:
            found = self.tombstones.lookup(recording.name, recording.recording_id)
        except KzrError as exc:
            # The state out of reach: the store is too (it answers for the upload); a
            # retry stored then is stored where nothing erased it since.
            log.warning("tombstones of %s cannot be read (%s): upload taken as new",
                        self.tombstones.state.where, exc)
            return None
        if not found:
            return None
        spool = tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY)  # noqa: SIM115 - handed on
        digest = hashlib.sha256()
        while chunk := recording.stream.read(_CHUNK):
            digest.update(chunk)
            spool.write(chunk)
        reference = found.get(digest.hexdigest())
        if reference is not None:
            spool.close()
            return reference
        spool.seek(0)
        recording.stream = spool
        return None
