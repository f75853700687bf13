"""Sweeping what killed hosts leave in an S3 bucket (``kzr-wsgi sweep --s3 URL``).

"Sweep" means this one job: a bucket's leftovers. (A disk store's dead writers are
dealt with by the store itself, in each process: see
:mod:`~kzr_wsgi.stores.directory.upkeep`.)

A host killed mid-upload leaves an *unfinished multipart upload* (invisible, but
billed); a host killed between completing an object and writing its index entry
leaves a *complete object no index entry names*, with or without its sidecar: never
served, never acknowledged (Kazoo got no 2xx and stored it again on retry); a worker
killed while writing a recording's analysis beside it as the recording was removed
leaves a *lone companion file* (``….kzr.analysis.json``, ``….kzr.peaks.json``) whose
recording no index entry names. This module finds all three, reports each, and removes
them::

    from kzr_wsgi.housekeeping.sweep import sweep_s3
    for leftover, removed in sweep_s3(store, older_than=timedelta(days=1)):
        print(leftover.describe(), removed)

What it never touches: anything outside the store's prefix (the listing is by
prefix, and :meth:`S3Store.delete` refuses other keys), the store's own ``.kzr/``
state, an object some index entry names (an acknowledged recording), an object without
the store's own metadata (not written by kzr_wsgi), a companion file whose recording is
indexed, and anything younger than the age. A complete object or companion file younger
than :data:`UNINDEXED_MIN_AGE` is never removed, whatever the age says: its host may be
between completing it and writing its index entry.

Cost: one listing of the prefix, and for each complete object older than the age one
request or two (its sidecar, its index entry); memory stays flat (the listing is
sorted, so a sidecar is matched to its object as it streams past). A bucket lifecycle
rule (:meth:`S3Store.lifecycle_rule`) can abort the unfinished uploads instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ..ages import format_age
from ..naming import COMPANION_SUFFIXES, SIDECAR_SUFFIX, STATE_DIR
from ..textenum import TextEnum

# Only a type here (resolvable, so the reference can show it): importable without boto3.
with contextlib.suppress(ImportError):
    from ..stores.s3 import S3Store

#: A complete object is never removed before this age, whatever ``older_than`` says.
UNINDEXED_MIN_AGE = timedelta(minutes=10)
#: What ``kzr-wsgi sweep`` and the housekeeper's daily sweep take as old enough.
DEFAULT_OLDER_THAN = timedelta(days=1)


class LeftoverKind(TextEnum):
    """What kind of leftover; the value is how reports name it."""

    #: A multipart upload never completed nor aborted (a kill mid-upload).
    UPLOAD = "unfinished upload"
    #: A complete object no index entry names (a kill before its entry), and its sidecar
    #: if it has one.
    OBJECT = "unindexed object"
    #: A sidecar whose object is gone and that no index entry names.
    SIDECAR = "lone sidecar"
    #: A companion file (analysis, waveform) whose recording no index entry names.
    COMPANION = "lone companion file"


# The kinds by their older names, still importable (the reference lists them by these).
UPLOAD = LeftoverKind.UPLOAD
OBJECT = LeftoverKind.OBJECT
SIDECAR = LeftoverKind.SIDECAR


@dataclass(frozen=True)
class Leftover:
    """One thing a killed host left behind."""

    what: LeftoverKind
    #: Its ``s3://bucket/key``.
    location: str
    key: str
    age: timedelta
    size: int = 0
    #: For an unfinished upload: the id to abort it by.
    upload_id: str | None = None
    #: For an object: whether its sidecar is there too (removed with it).
    sidecar: bool = False

    def describe(self) -> str:
        """One line for a report: what, where, how big, how old."""
        extra = f"{self.size} bytes, " if self.what is not LeftoverKind.UPLOAD else "started "
        with_sidecar = ", with its sidecar" if self.sidecar else ""
        return (f"{self.what.value} {self.location} "
                f"({extra}{rough_age(self.age)} ago{with_sidecar})")


def find_s3_leftovers(store: S3Store, older_than: timedelta = DEFAULT_OLDER_THAN,
                      now: datetime | None = None) -> Iterator[Leftover]:
    """Every leftover under ``store``'s prefix older than ``older_than``, as found."""
    now = now or datetime.now(timezone.utc)
    for upload in store.unfinished_uploads():
        age = now - upload["Initiated"]
        if age >= older_than:
            yield Leftover(LeftoverKind.UPLOAD, store.url_for(upload["Key"]), upload["Key"], age,
                           upload_id=upload["UploadId"])
    yield from _unindexed(store, max(older_than, UNINDEXED_MIN_AGE), now)


def sweep_s3(store: S3Store, older_than: timedelta = DEFAULT_OLDER_THAN, *,
             dry_run: bool = False, now: datetime | None = None
             ) -> Iterator[tuple[Leftover, bool]]:
    """Find each leftover and (unless ``dry_run``) remove it; yield it and whether it went.

    An object is looked at once more just before it is removed: if an index entry
    names it by then, it stays. ``now`` is the time ages are measured from.
    """
    for leftover in find_s3_leftovers(store, older_than, now):
        if dry_run:
            yield leftover, False
            continue
        if leftover.what is LeftoverKind.UPLOAD:
            assert leftover.upload_id is not None
            store.abort_upload(leftover.key, leftover.upload_id)
        elif leftover.what is LeftoverKind.OBJECT:
            if store.is_indexed(leftover.key, store.sidecar_record(leftover.key)):
                yield leftover, False
                continue
            store.delete(leftover.key, *([leftover.key + SIDECAR_SUFFIX]
                                         if leftover.sidecar else []))
        elif leftover.what is LeftoverKind.COMPANION:
            if store.companion_indexed(leftover.key):
                yield leftover, False
                continue
            store.delete(leftover.key)
        else:
            store.delete(leftover.key)
        yield leftover, True


def outcome(removed: bool, dry_run: bool = False) -> str:
    """What became of a leftover :func:`sweep_s3` yielded, as a report line starts."""
    return "would remove" if dry_run else "removed" if removed else "kept (now indexed)"


def summary(store: S3Store, found: int, removed: int, older_than: timedelta,
            dry_run: bool = False) -> str:
    """The line that ends a sweep of ``store`` (the command's last line, the job's log)."""
    where = store.url_for(store.prefix)
    if not found:
        return f"nothing to sweep in {where} older than {format_age(older_than)}"
    return (f"{found} leftover(s) in {where}, "
            f"{'none removed (dry run)' if dry_run else f'{removed} removed'}")


def _unindexed(store: S3Store, min_age: timedelta, now: datetime) -> Iterator[Leftover]:
    """Complete objects (and lone sidecars) under the prefix that no index entry names.

    The listing comes in key order and a sidecar's key is its object's key plus
    ``.kzr.json``, so an object waits only until the listing has passed where its
    sidecar would be.
    """
    internal = f"{store.prefix}{STATE_DIR}/"
    waiting: dict[str, list[Any]] = {}  # object key -> [listing item, sidecar item or None]

    def settle(key: str) -> Iterator[Leftover]:
        item, sidecar = waiting.pop(key)
        modified = max(item["LastModified"], sidecar["LastModified"] if sidecar else
                       item["LastModified"])
        if now - modified < min_age:
            return
        record = store.sidecar_record(key) if sidecar else None
        if store.is_indexed(key, record) is False:
            yield Leftover(LeftoverKind.OBJECT, store.url_for(key), key, now - modified,
                           size=int(item.get("Size", 0)), sidecar=sidecar is not None)

    pages = store.client.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix=store.prefix)
    for page in pages:
        for item in page.get("Contents", []):
            key = item["Key"]
            while waiting and next(iter(waiting)) + SIDECAR_SUFFIX < key:
                yield from settle(next(iter(waiting)))
            if key.startswith(internal):
                continue
            if key.endswith(COMPANION_SUFFIXES):
                yield from _lone_companion(store, item, min_age, now)
                continue
            if not key.endswith(SIDECAR_SUFFIX):
                waiting[key] = [item, None]
                continue
            base = key[: -len(SIDECAR_SUFFIX)]
            if base in waiting:
                waiting[base][1] = item
                continue
            # A sidecar whose object is gone (its host was killed while removing a
            # surplus copy): removed unless an entry still names that object.
            if now - item["LastModified"] < min_age:
                continue
            record = store.sidecar_record(base)
            if record is not None and store.is_indexed(base, record) is False:
                yield Leftover(LeftoverKind.SIDECAR, store.url_for(key), key,
                               now - item["LastModified"],
                               size=int(item.get("Size", 0)))
    while waiting:
        yield from settle(next(iter(waiting)))


def _lone_companion(store: S3Store, item: Any, min_age: timedelta,
                    now: datetime) -> Iterator[Leftover]:
    """The companion file ``item`` when its recording is not indexed and it is old enough.

    A companion is written only while its recording is indexed, so one whose recording
    is not was left by a worker killed as the recording was removed.
    """
    age = now - item["LastModified"]
    if age >= min_age and store.companion_indexed(item["Key"]) is False:
        yield Leftover(LeftoverKind.COMPANION, store.url_for(item["Key"]), item["Key"], age,
                       size=int(item.get("Size", 0)))


def rough_age(age: timedelta) -> str:
    """``age`` in its largest whole unit: ``45s``, ``3h``, ``2d``."""
    seconds = int(age.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"
