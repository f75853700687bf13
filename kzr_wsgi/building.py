"""Building a store and its catalog from settings: what ``serve``, the commands and the
Flask extension share.

No command line here (the commands turn these errors into their own), so the Flask
extension and the commands use one construction and one answer to "which catalog does
this store write", without the extension importing the commands.
"""

from __future__ import annotations

from .catalog import Catalog, open_catalog
from .stores import DirectoryStore, FanOut
from .stores.base import CataloguedStore, Store


def build_store(
    root: str, root_given: bool, s3_url: str | None, s3_endpoint: str | None,
    catalog_url: str | None = None,
) -> tuple[Store, str]:
    """The store to store with, and a line saying where that is.

    The disk by default; S3 with ``s3_url``; both (a fan-out) with ``s3_url`` and an
    explicit root (``root_given``). The catalog: ``catalog_url`` when given, written by
    the first store (the bucket, when there is one: every host shares it, and it decides
    what is a retry); else the disk store's own SQLite catalog; with a bucket alone,
    none. Raises ``ValueError`` for settings that do not go together and
    ``ImportError`` when a bucket is named without boto3.
    """
    catalog = _open_for_serving(catalog_url) if catalog_url is not None else None
    if s3_url is None:
        if s3_endpoint is not None:
            raise ValueError("--s3-endpoint needs --s3 s3://BUCKET/PREFIX")
        disk = (DirectoryStore(root, catalog=catalog) if catalog is not None
                else DirectoryStore(root))
        return disk, f"under {disk.root}"
    from .stores.s3 import S3Store  # boto3: the s3 extra

    bucket = S3Store.from_url(s3_url, endpoint_url=s3_endpoint, catalog=catalog)
    shown = s3_url + (f" at {s3_endpoint}" if s3_endpoint else "")
    if not root_given:
        return bucket, f"in {shown}"
    disk = DirectoryStore(root, catalog=None) if catalog is not None else DirectoryStore(root)
    # The bucket first: every host shares it, so it decides what is a retry.
    return FanOut(bucket, disk), f"in {shown} and under {disk.root} (both must succeed)"


def _open_for_serving(url: str) -> Catalog:
    """The catalog at ``url``; one out of reach is a warning (uploads never depend on it)."""
    try:
        return open_catalog(url)
    except ValueError:
        raise
    except Exception:
        # Said once, by serve's catalog notice, beside the catalog's own start-up line.
        return open_catalog(url, connect_now=False)


def catalog_of(store: object) -> Catalog | None:
    """The catalog a store (a fan-out's: its first part's that has one) writes to.

    ``None`` for a handler that is not a :class:`~kzr_wsgi.stores.base.CataloguedStore`.
    """
    catalog = store.catalog if isinstance(store, CataloguedStore) else None
    return catalog if isinstance(catalog, Catalog) else None
