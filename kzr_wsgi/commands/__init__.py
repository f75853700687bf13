"""The ``kzr-wsgi`` commands beside ``serve``, and what they share: which store.

Every command that works on a store (``ls``, ``reindex``, ``verify``, ``prune``,
``sweep``, …) takes the same options through :func:`store_options` and gets a
:class:`StoreSpec`, so "which store, which catalog" is decided in one place.
Each topic's commands live in a module of this package; :mod:`kzr_wsgi.cli`
registers them on the ``kzr-wsgi`` group.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from ..config import STORE_KEYS, Config, config_option
from ..recording import Handler
from ..stores import DirectoryStore, FanOut

F = TypeVar("F", bound=Callable[..., Any])

#: Where ``serve`` and every other command look when neither ``--root`` nor ``--s3`` is given.
DEFAULT_ROOT = "./recordings"


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

    def open_store(self) -> tuple[Handler, str]:
        """The store, and a line saying where that is (see :func:`build_store`)."""
        return build_store(self.root, self.root_given, self.s3_url, self.s3_endpoint)


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
                  help="S3 API endpoint for S3-compatible servers.")
    @click.option("--catalog", "catalog_url", default=None, metavar="URL", envvar="KZR_CATALOG",
                  help="The catalog: postgresql://… or sqlite:///PATH (default: the SQLite "
                       "catalog under --root).")
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

    return functools.update_wrapper(wrapper, func)  # type: ignore[return-value]


def build_store(
    root: str, root_given: bool, s3_url: str | None, s3_endpoint: str | None
) -> tuple[Handler, str]:
    """The handler a command stores with, and a line saying where that is.

    The disk by default; S3 with ``--s3``; both (a fan-out) with ``--s3`` and an
    explicit ``--root``.
    """
    if s3_url is None:
        if s3_endpoint is not None:
            raise click.UsageError("--s3-endpoint needs --s3 s3://BUCKET/PREFIX")
        disk = DirectoryStore(root)
        return disk, f"under {disk.root}"
    try:
        from ..stores.s3 import S3Store
    except ImportError as exc:
        raise click.ClickException(
            f"--s3 needs boto3: pip install 'kzr_wsgi[s3]' ({exc})"
        ) from exc
    bucket = S3Store.from_url(s3_url, endpoint_url=s3_endpoint)
    shown = s3_url + (f" at {s3_endpoint}" if s3_endpoint else "")
    if not root_given:
        return bucket, f"in {shown}"
    disk = DirectoryStore(root)
    # The bucket first: every host shares it, so it decides what is a retry.
    return FanOut(bucket, disk), f"in {shown} and under {disk.root} (both must succeed)"
