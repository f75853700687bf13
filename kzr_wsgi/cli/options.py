"""What every command that works on a store shares: the store's options, declared once.

``serve`` and every command that works on a store (``ls``, ``reindex``, ``verify``,
``prune``, ``sweep``, …) take ``--root``, ``--s3``, ``--s3-endpoint``, ``--catalog`` and
``--config`` through :func:`store_options` and get a :class:`StoreSpec`, so "which
store, which catalog" is decided in one place. ``serve`` shows its own help for them
and reads every one of its options from the config file; the other commands read the
store's keys.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

import click

from ..building import build_store, catalog_of
from ..catalog import ROOT_CATALOG, Catalog, open_catalog
from ..configfile import Config, Table
from ..stores.base import Store
from .config import STORE_KEYS, config_option
from .params import Age, When

if TYPE_CHECKING:
    from ..stores.s3 import S3Store

__all__ = ["DEFAULT_ROOT", "Age", "StoreSpec", "When", "build_store", "catalog_of",
           "store_options"]

F = TypeVar("F", bound=Callable[..., Any])

#: Where ``serve`` and every other command look when neither ``--root`` nor ``--s3`` is given.
DEFAULT_ROOT = "./recordings"


@dataclass(frozen=True)
class StoreSpec:
    """Which store a command works on, as the options named it."""

    root: str
    #: True when ``--root`` (or ``KZR_ROOT``, or a config file) named the root: with
    #: ``--s3`` too, both are written.
    root_given: bool
    s3_url: str | None
    s3_endpoint: str | None
    #: ``--catalog URL`` / ``KZR_CATALOG``; ``None`` means the default for the store.
    catalog_url: str | None
    #: The ``--config`` file (``KZR_CONFIG``), when one was given: its retention policy, ….
    config: Config | None = None

    def open_store(self) -> tuple[Store, str]:
        """The store, and a line saying where (see :func:`~kzr_wsgi.building.build_store`)."""
        if self.s3_url is None and self.s3_endpoint is not None:
            raise click.UsageError("--s3-endpoint needs --s3 s3://BUCKET/PREFIX")
        try:
            return build_store(self.root, self.root_given, self.s3_url, self.s3_endpoint,
                               self.catalog_url)
        except ImportError as exc:
            raise _no_boto3(exc) from exc

    def open_bucket(self) -> S3Store:
        """The bucket ``--s3`` names, on its own (no catalog, no disk beside it)."""
        assert self.s3_url is not None
        try:
            from ..stores.s3 import S3Store
        except ImportError as exc:
            raise _no_boto3(exc) from exc
        try:
            return S3Store.from_url(self.s3_url, endpoint_url=self.s3_endpoint)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc

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


def _no_boto3(exc: ImportError) -> click.ClickException:
    return click.ClickException(f"--s3 needs boto3: pip install 'kzr_wsgi[s3]' ({exc})")


#: Each store option's help: (as the store commands show it, as ``serve`` shows it).
_HELP = {
    "root": ("The store's directory (as given to `serve --root`).",
             "Directory recordings are stored under (created if missing)."),
    "s3": ("The store's bucket (as `serve --s3`).",
           "Store in S3 (or MinIO, Ceph, …) instead of the disk; with an explicit "
           "--root too, both are written. Needs the s3 extra (boto3)."),
    "s3-endpoint": ("S3 API endpoint for S3-compatible servers, e.g. http://minio:9000 "
                    "(as `serve --s3-endpoint`).",
                    "S3 API endpoint for S3-compatible servers, e.g. http://minio:9000. "
                    "Credentials and region come from boto3's usual chain (AWS_* "
                    "variables, ...)."),
    "catalog": ("The catalog: postgresql://… or sqlite:///PATH (as `serve --catalog`; "
                "default: the SQLite catalog under --root).",
                "Keep the catalog (the searchable index of what is stored) here: "
                "postgresql://USER:PASS@HOST/DB (one shared by every host on a bucket; "
                "extra postgres) or sqlite:///PATH. Default: SQLite at "
                "ROOT/.kzr/catalog.sqlite3 when there is a root; none with --s3 alone."),
}


def _declare(serving: bool, tables: tuple[Table[Any], ...],
             keys: tuple[str, ...] = ()) -> list[Callable[[F], F]]:
    """The five store options, as decorators, with ``serve``'s help or the commands'."""
    said = {key: texts[1 if serving else 0] for key, texts in _HELP.items()}
    config = config_option(keys=None if serving else (*STORE_KEYS, *keys), tables=tables)
    store = [
        click.option("--root", type=click.Path(file_okay=False), default=DEFAULT_ROOT,
                     show_default=True, help=said["root"]),
        # The envvars these declare are the names they were read under before the
        # environment had one naming (kzr_wsgi.cli.environment keeps them).
        click.option("--s3", "s3_url", default=None, metavar="s3://BUCKET/PREFIX",
                     envvar=["KZR_S3", "KZR_S3_URL"], help=said["s3"]),
        click.option("--s3-endpoint", default=None, metavar="URL", help=said["s3-endpoint"]),
        click.option("--catalog", "catalog_url", default=None, metavar="URL",
                     envvar="KZR_CATALOG", help=said["catalog"]),
    ]
    # In the order --help shows them: serve's file first, the other commands' last.
    return [config, *store] if serving else [*store, config]


@overload
def store_options(func: F) -> F: ...
@overload
def store_options(*, serving: bool = False, tables: Iterable[Table[Any]] = (),
                  keys: Iterable[str] = ()) -> Callable[[F], F]: ...


def store_options(func: F | None = None, *, serving: bool = False,
                  tables: Iterable[Table[Any]] = (), keys: Iterable[str] = ()
                  ) -> F | Callable[[F], F]:
    """Add ``--root``, ``--s3``, ``--s3-endpoint``, ``--catalog`` and ``--config``.

    The command receives ``spec: StoreSpec``. With ``--config FILE`` (or ``KZR_CONFIG``)
    the store's keys (``root``, ``s3``, ``s3-endpoint``, ``catalog``) come from the file
    unless the command line or the environment gives them. ``@store_options(tables=…)``
    declares the tables the command reads too, ``keys`` the config keys of its own
    options it reads besides the store's (``country``); ``serving`` is ``serve``'s: its
    help, and every option of the command read from the file.
    """
    if func is None:
        return functools.partial(_wrap, serving=serving, tables=tuple(tables),
                                 keys=tuple(keys))
    return _wrap(func, serving=serving, tables=tuple(tables), keys=tuple(keys))


def _wrap(func: F, *, serving: bool, tables: tuple[Table[Any], ...],
          keys: tuple[str, ...] = ()) -> F:
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

    for declare in reversed(_declare(serving, tables, keys)):
        wrapper = declare(wrapper)
    # update_wrapper copies func's __dict__, and with it the options decorated onto
    # func before this (when store_options is not the innermost decorator): keep both.
    own = list(getattr(wrapper, "__click_params__", []))
    functools.update_wrapper(wrapper, func)
    wrapper.__click_params__ = [  # type: ignore[attr-defined]
        *getattr(func, "__click_params__", []), *own]
    return wrapper  # type: ignore[return-value]
