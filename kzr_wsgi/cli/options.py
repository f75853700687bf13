"""The ``kzr-wsgi`` commands beside ``serve``, and what they share: which store.

Every command that works on a store (``ls``, ``reindex``, ``verify``, ``prune``,
``sweep``, …) takes the same options through :func:`store_options` and gets a
:class:`StoreSpec`, so "which store, which catalog" is decided in one place. Every
age option (``--older-than``) is an :class:`Age` and every ``--since``/``--until`` a
:class:`When`, so each is spelled, checked and shown alike in every command.
Each topic's commands live in a module of this package; :mod:`kzr_wsgi.cli`
registers them on the ``kzr-wsgi`` group.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from ..ages import AgeError, parse_age
from ..catalog import ROOT_CATALOG, Catalog, open_catalog, parse_when
from ..recording import Handler
from ..stores import DirectoryStore, FanOut
from ..stores.base import CataloguedStore, Store
from .config import STORE_KEYS, Config, config_option

F = TypeVar("F", bound=Callable[..., Any])

#: Where ``serve`` and every other command look when neither ``--root`` nor ``--s3`` is given.
DEFAULT_ROOT = "./recordings"


class Age(click.ParamType):  # type: ignore[type-arg]
    """An age option: ``90d``, ``12w``, ``2y``, ``0s`` (see :mod:`kzr_wsgi.ages`)."""

    name = "age"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_age(str(value))
        except AgeError as exc:
            self.fail(str(exc), param, ctx)


class When(click.ParamType):  # type: ignore[type-arg]
    """A date (``2026-01-31``, UTC) or an ISO 8601 time; ``end`` makes a date its last moment."""

    name = "when"

    def __init__(self, end: bool = False) -> None:
        self.end = end

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_when(str(value), end=self.end)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@dataclass(frozen=True)
class StoreSpec:
    """Which store a command works on, as the options named it."""

    root: str
    #: True when ``--root`` (or ``KZR_ROOT``, or a config file) named the root.
    root_given: bool
    s3_url: str | None
    s3_endpoint: str | None
    #: ``--catalog URL`` / ``KZR_CATALOG``; ``None`` means the default for the store.
    catalog_url: str | None
    #: The ``--config`` file (``KZR_CONFIG``), when one was given: its retention policy, ….
    config: Config | None = None

    def open_store(self) -> tuple[Store, str]:
        """The store, and a line saying where that is (see :func:`build_store`)."""
        return build_store(self.root, self.root_given, self.s3_url, self.s3_endpoint,
                           self.catalog_url)

    def open_catalog(self, create: bool = False) -> Catalog:
        """The catalog these options name (as ``serve`` would keep it).

        ``--catalog URL`` when given; else the SQLite catalog under ``--root``, which
        must exist unless ``create`` (``reindex`` makes it). With ``--s3`` and no
        explicit ``--root`` there is no default catalog: a usage error says so.
        """
        try:
            if self.catalog_url is not None:
                return open_catalog(self.catalog_url)
            if self.s3_url is not None and not self.root_given:
                raise click.UsageError(
                    "--s3 alone keeps no catalog: name one with --catalog URL "
                    "(postgresql://… or sqlite:///PATH)")
            path = Path(self.root).absolute() / ROOT_CATALOG
            if not create and not path.is_file():
                if not (path.parent / "index").is_dir():
                    # A mistyped --root: reindex would find nothing there either.
                    raise click.ClickException(
                        f"no store at {path.parent.parent} (no .kzr/index): check --root")
                raise click.ClickException(
                    f"no catalog at {path}: run `kzr-wsgi reindex --root {self.root}`")
            return Catalog.for_root(self.root)
        except (ValueError, OSError) as exc:
            raise click.ClickException(f"cannot open the catalog: {exc}") from exc
        except Exception as exc:
            # The driver's own errors (psycopg.OperationalError, sqlite3.Error).
            if isinstance(exc, click.ClickException):
                raise
            raise click.ClickException(f"cannot open the catalog: {exc}") from exc


def store_options(func: F) -> F:
    """Add ``--root``, ``--s3``, ``--s3-endpoint``, ``--catalog`` and ``--config``.

    The command receives ``spec: StoreSpec``. With ``--config FILE`` (or ``KZR_CONFIG``)
    the store's keys (``root``, ``s3``, ``s3-endpoint``, ``catalog``) come from the file
    unless the command line or the environment gives them.
    """

    @click.option("--root", type=click.Path(file_okay=False), default=DEFAULT_ROOT,
                  show_default=True, envvar="KZR_ROOT",
                  help="The store's directory (as given to `serve --root`).")
    @click.option("--s3", "s3_url", default=None, metavar="s3://BUCKET/PREFIX",
                  envvar=["KZR_S3", "KZR_S3_URL"], help="The store's bucket (as `serve --s3`).")
    @click.option("--s3-endpoint", default=None, metavar="URL", envvar="KZR_S3_ENDPOINT",
                  help="S3 API endpoint for S3-compatible servers, e.g. http://minio:9000 "
                       "(as `serve --s3-endpoint`).")
    @click.option("--catalog", "catalog_url", default=None, metavar="URL", envvar="KZR_CATALOG",
                  help="The catalog: postgresql://… or sqlite:///PATH (as `serve --catalog`; "
                       "default: the SQLite catalog under --root).")
    @config_option(only=STORE_KEYS)
    def wrapper(root: str, s3_url: str | None, s3_endpoint: str | None,
                catalog_url: str | None, config: Config | None, **kwargs: Any) -> Any:
        source = click.get_current_context().get_parameter_source("root")
        spec = StoreSpec(
            root=root,
            root_given=source not in (click.core.ParameterSource.DEFAULT, None),
            s3_url=s3_url,
            s3_endpoint=s3_endpoint,
            catalog_url=catalog_url,
            config=config,
        )
        return func(spec=spec, **kwargs)

    # update_wrapper copies func's __dict__, and with it the options decorated onto
    # func before this (when store_options is not the innermost decorator): keep both.
    own = list(getattr(wrapper, "__click_params__", []))
    functools.update_wrapper(wrapper, func)
    wrapper.__click_params__ = [  # type: ignore[attr-defined]
        *getattr(func, "__click_params__", []), *own]
    return wrapper  # type: ignore[return-value]


def build_store(
    root: str, root_given: bool, s3_url: str | None, s3_endpoint: str | None,
    catalog_url: str | None = None,
) -> tuple[Store, str]:
    """The handler a command stores with, and a line saying where that is.

    The disk by default; S3 with ``--s3``; both (a fan-out) with ``--s3`` and an
    explicit ``--root``. The catalog: ``catalog_url`` when given, written by the
    first store (the bucket, when there is one: every host shares it, and it decides
    what is a retry); else the disk store's own SQLite catalog; with ``--s3`` alone,
    none.
    """
    catalog = _open_for_serving(catalog_url) if catalog_url is not None else None
    if s3_url is None:
        if s3_endpoint is not None:
            raise click.UsageError("--s3-endpoint needs --s3 s3://BUCKET/PREFIX")
        disk = (DirectoryStore(root, catalog=catalog) if catalog is not None
                else DirectoryStore(root))
        return disk, f"under {disk.root}"
    try:
        from ..stores.s3 import S3Store
    except ImportError as exc:
        raise click.ClickException(
            f"--s3 needs boto3: pip install 'kzr_wsgi[s3]' ({exc})"
        ) from exc
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
        # Said once, by catalog_notices, beside the catalog's own start-up line.
        return open_catalog(url, connect_now=False)


def catalog_of(store: Handler) -> Catalog | None:
    """The catalog a store (or the first store of a fan-out that has one) writes to."""
    catalog = store.catalog if isinstance(store, CataloguedStore) else None
    return catalog if isinstance(catalog, Catalog) else None


def catalog_notices(store: Store) -> list[str]:
    """What ``serve`` says at start-up about the catalog: where, or why there is none.

    A store that holds recordings while its catalog is empty is from before the
    catalog (or its catalog was lost): the notice names ``kzr-wsgi reindex``, which
    catalogues the sidecars and inspects the audio of those that have none.
    """
    catalog = catalog_of(store)
    if catalog is None:
        return ["no catalog is kept (--s3 alone): `kzr-wsgi ls` and searches need "
                "--catalog URL (postgresql://… shared by every host on the bucket)"]
    from ..catalog.reindex import NEEDS_REINDEX

    lines = [f"catalog: {catalog.url}"]
    try:
        # An empty catalog beside a store that holds copies: from before the catalog, or
        # lost. Remembered in the catalog until a reindex, so the notice stays after new
        # uploads have made it non-empty.
        if catalog.max_seq() is None and _holds_recordings(store):
            catalog.set_state(NEEDS_REINDEX, "1")
        behind = catalog.get_state(NEEDS_REINDEX) is not None
    except Exception as exc:  # a catalog out of reach never stops uploads
        said = " ".join(str(exc).split())  # drivers' messages span lines
        return [*lines, f"WARNING: the catalog cannot be reached ({said}); uploads are stored "
                        "all the same, rows are written once it answers, and "
                        "`kzr-wsgi reindex` adds the ones missed"]
    finally:
        catalog.release()  # nothing open across gunicorn's fork
    if behind:
        lines.append(
            "this store holds recordings from before its catalog (no catalog, or sidecars "
            "without `audio`): run `kzr-wsgi reindex` with the same --root/--s3/--catalog "
            "to catalog them and inspect their audio")
    return lines


def _holds_recordings(store: Store) -> bool:
    """True when the store has at least one index entry (cheap: stops at the first)."""
    for part in store.parts():
        try:
            if next(iter(part.records()), None) is not None:
                return True
        except Exception:
            continue
    return False
