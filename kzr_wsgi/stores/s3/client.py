"""boto3 at the S3 store's edge: the client it makes, what the store's modules are handed
(:class:`Bucket`), and S3's errors in the project's terms.

Every S3 request of :mod:`kzr_wsgi.stores.s3` runs inside :func:`mapped_errors`, so a
caller sees :class:`~kzr_wsgi.errors.NotFound` or
:class:`~kzr_wsgi.errors.StoreUnavailable`, never a botocore exception.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ...errors import NotFound, StoreUnavailable
from ...textenum import TextEnum

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

    from ...catalog import Catalog

_T = TypeVar("_T")

log = logging.getLogger("kzr_wsgi.store")


@dataclass(frozen=True)
class Bucket:
    """Where an S3 store keeps its copies, and the catalog their rows go to: what the
    store's modules (reading, the index, changes, the sweep) are handed, never the store."""

    client: S3Client
    #: The bucket's name.
    name: str
    #: The store's key prefix: ``""`` or ending in ``/``.
    prefix: str
    #: Where each newly committed copy's row goes (``None``: no catalog).
    catalog: Catalog | None = None

    def url_for(self, key: str) -> str:
        """The ``s3://bucket/key`` location of ``key``."""
        return f"s3://{self.name}/{key}"


class Operation(TextEnum):
    """What a request is for: how :func:`mapped_errors` logs it, and whether S3's 404
    means the copy is not there (a read) or the store is out of order (anything else)."""

    STORE = "store"
    READ = "read"
    DISCARD = "discard"
    REMOVE = "remove"
    SWEEP = "sweep"


@contextmanager
def mapped_errors(what: Operation) -> Iterator[None]:
    """Turn boto3's errors into the project's: 404 -> NotFound (reads), else StoreUnavailable.

    The project's own errors (a body cut short, a NotFound raised inside) pass unchanged.
    """
    try:
        yield
    except ClientError as exc:
        if what is Operation.READ and missing(exc):
            raise NotFound("no such recording") from exc
        code = exc.response.get("Error", {}).get("Code", "error")
        log.error("S3 %s failed: %s (HTTP %s)", what, code, http_status(exc))
        raise StoreUnavailable("the object store refused the request") from exc
    except BotoCoreError as exc:
        log.error("S3 %s failed: %s", what, exc)
        raise StoreUnavailable("the object store cannot be reached") from exc


def make_client(endpoint_url: str | None, region_name: str | None) -> S3Client:
    """A boto3 S3 client with bounded retries and timeouts, shared by every request."""
    config = Config(
        # "standard" retries throttling and 5xx with backoff before we give up.
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=10,
        read_timeout=120,
        # Several requests, each with a few parts in flight, share one client.
        max_pool_connections=64,
    )
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url, region_name=region_name,
                          config=config)


def http_status(exc: ClientError) -> int | None:
    """The HTTP status S3 answered with, when there was one."""
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def missing(exc: ClientError) -> bool:
    """Whether ``exc`` says the object is absent (a missing bucket is misconfiguration)."""
    code = exc.response.get("Error", {}).get("Code")
    if code == "NoSuchBucket":
        return False  # a misconfigured store, not a missing recording
    return code in ("NoSuchKey", "404", "NotFound") or http_status(exc) == 404


def unless_missing(call: Callable[..., _T], **request: Any) -> _T | None:
    """``call(**request)`` (a client method); ``None`` when S3 says the object is absent."""
    try:
        return call(**request)
    except ClientError as exc:
        if missing(exc):
            return None
        raise


def preflight_message(exc: ClientError, bucket: str, where: str) -> str:
    """What a refused probe write means, in the operator's words."""
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    status = http_status(exc)
    detail = f"({code or 'HTTP'} {status}: {error.get('Message', '')})".replace(": )", ")")
    if code == "NoSuchBucket":
        return f"no such bucket: {bucket!r} {detail}"
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                "InvalidToken"):
        return f"the S3 credentials were refused for bucket {bucket!r} {detail}"
    if code in ("AccessDenied", "AllAccessDisabled") or status == 403:
        return f"no permission to write to {where} {detail}"
    return f"cannot write to {where} {detail}"
