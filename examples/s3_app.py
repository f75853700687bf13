"""Recordings straight to S3, or any S3-compatible store (MinIO, Ceph, Wasabi, moto).

Configured from the environment, so the same file serves every deployment:

* ``KZR_S3_URL``: where objects go, ``s3://bucket/prefix`` (required);
* ``KZR_S3_ENDPOINT``: the S3 API's URL for a non-AWS store, e.g. ``http://127.0.0.1:9000``;
* credentials and region: boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
  ``AWS_DEFAULT_REGION``, ``~/.aws``, an instance role).

Run it::

    KZR_S3_URL=s3://rec/kazoo KZR_S3_ENDPOINT=http://127.0.0.1:9000 \\
        gunicorn -c examples/gunicorn.conf.py --chdir examples 's3_app:create_app()'

or ``python examples/s3_app.py --port 8080``. ``kzr-wsgi serve --s3 s3://rec/kazoo
--s3-endpoint URL`` does the same without a file.

The S3 store comes from the ``s3`` extra (``pip install "kzr_wsgi[s3]"``), so it is
imported inside :func:`create_app`: importing this module needs neither boto3 nor a
reachable bucket.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

from kzr_wsgi import KazooRecordings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def not_found(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    """The app behind the receiver: this service does nothing but recordings."""
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not a Kazoo recording URL\n"]


def create_app(url: str | None = None, endpoint: str | None = None) -> WSGIApplication:
    """Build the receiver over ``S3Store``; arguments default to the environment."""
    from kzr_wsgi.stores.s3 import S3Store  # the optional extra: imported only when used

    url = url or os.environ.get("KZR_S3_URL")
    if not url:
        raise RuntimeError("set KZR_S3_URL=s3://bucket/prefix (and KZR_S3_ENDPOINT for "
                           "a store other than AWS)")
    store = S3Store.from_url(url, endpoint_url=endpoint or os.environ.get("KZR_S3_ENDPOINT"))
    # read_back: Kazoo 4.x fetches recordings back from the URL it uploaded them to.
    return KazooRecordings(not_found, store, read_back=True)


def main(argv: list[str] | None = None) -> None:
    """Serve :func:`create_app` with ``kzr-wsgi``'s gunicorn settings."""
    parser = argparse.ArgumentParser(description="Kazoo recordings to S3")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    from kzr_wsgi.server import gunicorn_options, run

    # One line per upload (logger "kzr_wsgi": outcome, bytes, s3:// location), as
    # `kzr-wsgi serve` prints; gunicorn's own errorlog covers only its own loggers.
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s",
    )

    run(create_app(), gunicorn_options(args.host, args.port))


if __name__ == "__main__":
    main()
