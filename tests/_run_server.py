"""Run one WSGI app under one server: ``_run_server.py KIND module:factory HOST PORT JSON``.

Started by :func:`servers.wsgi_server` in its own process group.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys


def main() -> None:
    kind, factory, host, port_text, kwargs_json = sys.argv[1:6]
    port = int(port_text)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    module_name, func_name = factory.split(":")
    app = getattr(importlib.import_module(module_name), func_name)(**json.loads(kwargs_json))
    if kind == "gunicorn":
        from kzr_wsgi.server import gunicorn_options, run

        run(app, gunicorn_options(host, port, workers=1, threads=8))
    elif kind == "waitress":
        import waitress

        waitress.serve(app, host=host, port=port, threads=8, _quiet=True)
    elif kind == "werkzeug":
        from werkzeug.serving import run_simple

        run_simple(host, port, app, threaded=True)
    else:
        raise SystemExit(f"unknown server kind {kind!r}")


if __name__ == "__main__":
    main()
