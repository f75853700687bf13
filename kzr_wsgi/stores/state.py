"""Where a store keeps the small files of its housekeeping, so every host sees them.

A :class:`~kzr_wsgi.stores.DirectoryStore` keeps them under ``ROOT/.kzr/``
(:class:`DiskState`); an :class:`~kzr_wsgi.stores.s3.S3Store` under ``PREFIX/.kzr/`` in
its bucket (:class:`S3State`). Each store says which is its own (``store.state()``, see
:class:`~kzr_wsgi.stores.base.StateKeeper`). Holds, the audit trail, the prune journal
and the housekeeper's lease are built on the few operations here; each is durable when
it returns (files ``fsync``-ed with their directory; S3 objects exist once the PUT
returns). Importable without boto3: botocore is imported when an S3 place is used.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..errors import StoreUnavailable
from .directory.files import fsync_dir

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client


class StatePlace(Protocol):
    """The operations every place offers; names are relative (``holds/ab12.json``)."""

    @property
    def where(self) -> str:
        """``ROOT/.kzr`` or ``s3://bucket/PREFIX/.kzr``, for messages."""
        ...

    @property
    def shared(self) -> bool:
        """True for a place every host on the store sees (a bucket): a fan-out keeps its
        holds and audit trail there rather than on one host's disk."""
        ...

    def read(self, name: str) -> bytes | None:
        """The named file's bytes, ``None`` when there is none."""
        ...

    def write(self, name: str, data: bytes) -> None:
        """Create or replace the named file atomically and durably."""
        ...

    def create(self, name: str, data: bytes) -> bool:
        """Create the named file unless it exists; False when it did (nothing written)."""
        ...

    def delete(self, name: str, *, sync: bool = True) -> None:
        """Remove the named file; one that is already gone is not an error.

        ``sync=False`` lets a disk skip making the removal durable (a power cut may
        bring the file back), for files whose return is harmless.
        """
        ...

    def list(self, folder: str) -> Iterator[tuple[str, datetime]]:
        """``(name, last modified)`` of every file in ``folder``, in name order."""
        ...


@dataclass(frozen=True)
class DiskState:
    """``ROOT/.kzr`` of a disk store."""

    directory: Path
    #: One host's disk: a fan-out with a bucket keeps its state in the bucket.
    shared: ClassVar[bool] = False

    @property
    def where(self) -> str:
        return str(self.directory)

    def path(self, name: str) -> Path:
        """The file's path."""
        return self.directory / name

    def read(self, name: str) -> bytes | None:
        try:
            return self.path(name).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        self._publish(name, data, os.replace)

    def create(self, name: str, data: bytes) -> bool:
        # link() refuses an existing name: the file appears whole or not at all.
        return self._publish(name, data, os.link)

    def _publish(self, name: str, data: bytes, place: Callable[[Path, Path], None]) -> bool:
        """Write ``data`` to a synced temporary file beside ``name``, then ``place`` it.

        False when ``place`` finds the name taken (``os.link``; ``os.replace`` never does).
        """
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                place(tmp, target)
            except FileExistsError:
                return False
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(target.parent)
        return True

    def delete(self, name: str, *, sync: bool = True) -> None:
        """Remove the named file; ``sync=False`` when its coming back would be harmless."""
        target = self.path(name)
        try:
            target.unlink()
        except FileNotFoundError:
            return
        if sync:
            fsync_dir(target.parent)

    def list(self, folder: str) -> Iterator[tuple[str, datetime]]:
        try:
            entries = sorted(os.scandir(self.path(folder)), key=lambda e: e.name)
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            try:
                mtime = entry.stat().st_mtime
            except FileNotFoundError:
                continue
            yield f"{folder}/{entry.name}", datetime.fromtimestamp(mtime, tz=timezone.utc)

    @contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """An exclusive ``flock`` on ``ROOT/.kzr/<name>`` (made if missing) for the block."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path(name), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


@dataclass(frozen=True)
class S3State:
    """``PREFIX/.kzr/`` in an S3 store's bucket."""

    client: S3Client
    bucket: str
    #: ``PREFIX/.kzr/`` (the store's prefix, ending in ``/``, plus ``.kzr/``).
    prefix: str
    #: Every host on the bucket sees it.
    shared: ClassVar[bool] = True

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, name: str) -> str:
        """The object key of a name."""
        return self.prefix + name

    def read(self, name: str) -> bytes | None:
        from botocore.exceptions import ClientError

        with s3_errors():
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self.key(name))
            except ClientError as exc:
                if _status(exc) == 404:
                    return None
                raise
            with response["Body"] as body:
                return body.read()

    def write(self, name: str, data: bytes) -> None:
        with s3_errors():
            self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=data,
                                   ContentType="application/json")

    def create(self, name: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        with s3_errors():
            try:
                self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=data,
                                       ContentType="application/json", IfNoneMatch="*")
            except ClientError as exc:
                # 412: it exists; 409: a conditional write on it is in flight (someone
                # else is creating it right now). Either way it is not ours.
                if _status(exc) in (409, 412):
                    return False
                raise
        return True

    def delete(self, name: str, *, sync: bool = True) -> None:
        with s3_errors():
            self.client.delete_object(Bucket=self.bucket, Key=self.key(name))

    def list(self, folder: str) -> Iterator[tuple[str, datetime]]:
        with s3_errors():
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.key(folder) + "/")
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"][len(self.prefix):], item["LastModified"]


@contextmanager
def s3_errors() -> Iterator[None]:
    """boto3's errors as :class:`~kzr_wsgi.errors.StoreUnavailable` (the project's own)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise StoreUnavailable(f"the object store refused the request ({code})") from exc
    except BotoCoreError as exc:
        raise StoreUnavailable(f"the object store cannot be reached ({exc})") from exc


def _status(exc: Any) -> int | None:
    status: int | None = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status
