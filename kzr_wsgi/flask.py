"""Flask integration (extra ``flask``): mount the receiver in an existing Flask app.

>>> from flask import Flask
>>> from kzr_wsgi.flask import KazooFlask, recording_stored
>>> app = Flask(__name__)
>>> app.config["KZR_ROOT"] = "/srv/recordings"            # doctest: +SKIP
>>> kazoo = KazooFlask(app)                                # doctest: +SKIP

or, with an app factory, ``kazoo = KazooFlask(handler=my_handler)`` then
``kazoo.init_app(app)``. The extension wraps ``app.wsgi_app`` with
:class:`~kzr_wsgi.KazooRecordings`, so recordings never reach Flask's routing, request
parsing or ``MAX_CONTENT_LENGTH``; every other request reaches the app unchanged.

Config keys (all optional): ``KZR_ROOT`` (a :class:`~kzr_wsgi.DirectoryStore` root,
when no handler is given), ``KZR_PREFIX``, ``KZR_MAX_SIZE``, ``KZR_ACCEPT_CALLER``,
``KZR_READ_BACK``, ``KZR_ATTACHMENTS_PREFIX``, ``KZR_ATTACHMENTS_BASE64``, ``KZR_INSPECT``
(default true: inspect MP3/WAV audio into ``recording.audio``; ``KazooFlask(app,
inspect=False)`` does the same), and ``KZR_METRICS`` (true: Prometheus metrics at
``/metrics``, extra ``metrics``) with ``KZR_METRICS_ALLOW`` (CIDRs that may scrape; default
loopback). A ready :class:`~kzr_wsgi.metrics.Metrics` can be passed as ``metrics=`` instead.

The search-and-listen page (``kzr_wsgi.ui.SearchUI``) is mounted in front of the
receiver when viewers are configured: ``KZR_UI_VIEWERS`` (``"user:pass"`` strings or
``kzr_wsgi.ui.Viewer`` objects) and/or ``KZR_UI_VIEWER_FILE``, with
``KZR_UI_PREFIX`` (default ``/ui``), ``KZR_UI_SECRET``, ``KZR_UI_TRUSTED_PROXIES`` (CIDRs
whose ``X-Forwarded-For``/``-Proto`` the page believes: the sign-in throttle's address, secure
cookies), ``KZR_UI_PUBLIC_URL`` (where share links point), ``KZR_UI_EXPORT_MAX`` (the most
recordings one export holds) and ``KZR_CATALOG`` (a catalog URL; default the catalog the
store writes, SQLite under ``KZR_ROOT``): ``serve``'s ``--trust-proxy``, ``--public-url`` and
``--export-max``. Its URLs never reach the receiver nor Flask.

After each newly stored recording the :data:`recording_stored` signal is sent inside
the app's context, with ``recording=`` and ``result=``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from blinker import Namespace
from flask import Flask

from .middleware import KazooRecordings, OnStored
from .recording import Handler, Recording, Stored
from .stores import DirectoryStore
from .stores.base import StoredOpener

_signals = Namespace()

#: Sent after a recording is committed (never for a de-duplicated retry), inside the
#: app context: ``recording_stored.connect(fn)``; ``fn(app, recording=…, result=…)``.
recording_stored = _signals.signal("recording-stored")

_OPTIONS = {
    "KZR_PREFIX": "prefix",
    "KZR_MAX_SIZE": "max_size",
    "KZR_ACCEPT_CALLER": "accept_caller",
    "KZR_READ_BACK": "read_back",
    "KZR_ATTACHMENTS_PREFIX": "attachments_prefix",
    "KZR_ATTACHMENTS_BASE64": "attachments_base64",
    "KZR_INSPECT": "inspect",
}


@dataclass
class _State:
    handler: Handler
    middleware: KazooRecordings
    ui: Any = None


class KazooFlask:
    """The Flask extension: ``KazooFlask(app)`` or ``KazooFlask(...)`` + ``init_app(app)``.

    :param handler: where recordings go; default a ``DirectoryStore(KZR_ROOT)``.
    :param on_stored: extra callbacks, as on :class:`~kzr_wsgi.KazooRecordings`.
    :param options: middleware keywords; they win over ``KZR_*`` config keys.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        handler: Handler | None = None,
        on_stored: tuple[OnStored, ...] = (),
        **options: Any,
    ) -> None:
        self.handler = handler
        self.on_stored = on_stored
        self.options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Wrap ``app.wsgi_app``; state goes to ``app.extensions["kzr_wsgi"]``."""
        if "kzr_wsgi" in app.extensions:
            raise RuntimeError("KazooFlask is already set up on this app")
        handler = self.handler
        if handler is None:
            root = app.config.get("KZR_ROOT")
            if not root:
                raise RuntimeError("KazooFlask needs a handler= or the KZR_ROOT config key")
            handler = DirectoryStore(root)
        options = {
            arg: app.config[key] for key, arg in _OPTIONS.items() if key in app.config
        }
        options.update(self.options)
        if app.config.get("KZR_METRICS") and "metrics" not in options:
            from .metrics import LOOPBACK, Metrics

            options["metrics"] = Metrics(allow=app.config.get("KZR_METRICS_ALLOW", LOOPBACK))

        def send_signal(recording: Recording, result: Stored | None) -> None:
            with app.app_context():
                recording_stored.send(app, recording=recording, result=result)

        middleware = KazooRecordings(
            app.wsgi_app,
            handler,
            on_stored=(*self.on_stored, send_signal),
            **options,
        )
        ui = _search_ui(app, handler, middleware)
        app.wsgi_app = ui or middleware  # type: ignore[method-assign]
        app.extensions["kzr_wsgi"] = _State(handler, middleware, ui)


def _search_ui(app: Flask, handler: Handler, middleware: KazooRecordings) -> Any:
    """The UI in front of the middleware, when the config names viewers; else None."""
    listed = list(app.config.get("KZR_UI_VIEWERS") or ())
    viewer_file = app.config.get("KZR_UI_VIEWER_FILE")
    if not listed and not viewer_file:
        return None
    from .ui import SearchUI, read_viewer_file
    from .ui.exporting import DEFAULT_EXPORT_MAX

    if viewer_file:
        listed += read_viewer_file(viewer_file)
    store: object = handler
    if not isinstance(store, StoredOpener):
        raise RuntimeError(f"the UI needs a store that serves its files; {handler!r} does not")
    url = app.config.get("KZR_CATALOG")
    if url:
        from .catalog import open_catalog

        catalog = open_catalog(url)
    else:
        from .building import catalog_of

        # The catalog the store writes (KZR_ROOT's SQLite one by default).
        found = catalog_of(handler)
        if found is None:
            raise RuntimeError("the UI needs a catalog: set KZR_CATALOG, or use a store "
                               "that keeps one (KZR_ROOT)")
        catalog = found
    return SearchUI(catalog, store, viewers=listed,
                    prefix=app.config.get("KZR_UI_PREFIX", "/ui"),
                    secret=app.config.get("KZR_UI_SECRET"), app=middleware,
                    trusted_proxies=app.config.get("KZR_UI_TRUSTED_PROXIES", ()),
                    public_url=app.config.get("KZR_UI_PUBLIC_URL"),
                    export_max=app.config.get("KZR_UI_EXPORT_MAX", DEFAULT_EXPORT_MAX))
