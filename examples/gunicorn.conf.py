"""Production gunicorn settings for a kzr_wsgi receiver (the ones ``kzr-wsgi serve`` uses).

Point it at any WSGI module that mounts :class:`~kzr_wsgi.KazooRecordings`::

    gunicorn -c examples/gunicorn.conf.py myproject.wsgi:application
    gunicorn -c examples/gunicorn.conf.py --chdir examples django_wsgi:application

(or set ``wsgi_app = "myproject.wsgi:application"`` below and leave it off the command
line). Command-line flags win over this file, e.g. ``-b 10.0.0.5:8080``.

The values mirror :func:`kzr_wsgi.server.gunicorn_options`; the comments say why.
"""

import os

from kzr_wsgi.server.gunicorn import MaskingLogger

# Kazoo will not upload to 127.0.0.1 (its HTTP client refuses loopback): in production
# bind a routable address (KZR_BIND=0.0.0.0:8080) and turn on authentication.
bind = [os.environ.get("KZR_BIND", "127.0.0.1:8080")]

# Threaded workers. A `sync` worker is killed by `timeout` while one slow upload (a
# three-hour recording arriving over a thin link) is still in progress; a gthread
# worker's heartbeat runs in its own loop, so only a truly stuck worker is killed.
# gunicorn also hands the body over as it arrives, answers `Expect: 100-continue`
# (libcurl's default for PUT) and decodes chunked bodies.
worker_class = "gthread"
# Two processes, so one upload's fsync never stalls all the others.
workers = int(os.environ.get("KZR_WORKERS", "2"))
# Concurrent uploads per worker: Kazoo ends many calls at once.
threads = int(os.environ.get("KZR_THREADS", "16"))

# Seconds a worker's main loop may be unresponsive before the master restarts it. With
# gthread this is not a per-request limit, so long uploads are safe under it.
timeout = 60
# On restart, uploads in progress get this long to finish; Kazoo retries the rest.
graceful_timeout = 30
# Kazoo's HTTP client (httpc) keeps connections alive between uploads.
keepalive = 30

# A SIP call id may be ~1,000 characters, percent-encoded (x3) in the path, and Kazoo
# 4.x appends a dozen metadata fields to the query: gunicorn's default 4094 is short.
limit_request_line = 8190

# Build the app once in the master, then fork. Building starts nothing: each worker's
# first use of the store recovers and reaps what dead writers left before it goes on
# (and again every few seconds, in each process). (Threads such as the webhook
# notifier's are started lazily in each worker too.)
preload_app = True

# gunicorn would call a request https when any loopback peer says X-Forwarded-Proto:
# https. Which proxies are believed is the app's to say (serve's --trust-proxy).
secure_scheme_headers = {}

# The receiver logs every upload itself (call id, bytes, seconds, outcome); `serve
# --access-log FILE` (or accesslog here) adds gunicorn's line for every request.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("KZR_LOG_LEVEL", "info").lower()
# gunicorn sets up only its own loggers: without this the receiver's upload lines and
# the webhook's give-up lines (loggers "kzr_wsgi.*") would go nowhere. gunicorn
# merges this over its defaults key by key, hence its own two loggers restated here.
logconfig_dict = {
    "root": {"level": "WARNING", "handlers": ["error_console"]},
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["error_console"],
                           "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
        "kzr_wsgi": {"level": loglevel.upper(), "handlers": ["error_console"],
                     "propagate": False},
    },
}
# Share links' tokens (a token opens a recording) are masked in every log line, the
# access log included.
logger_class = MaskingLogger
proc_name = "kzr-wsgi"
# One shared control socket path would make two receivers on a host collide
# (gunicorn 24+; older versions ignore unknown names in this file).
control_socket_disable = True
