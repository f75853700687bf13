"""A Django project, in one file, that also takes Kazoo's call recordings.

Django never sees the recordings: :class:`~kzr_wsgi.KazooRecordings` wraps the WSGI
application Django builds, takes the uploads under ``/kazoo`` (streamed to disk, no
``DATA_UPLOAD_MAX_MEMORY_SIZE``, no CSRF in the way) and hands every other request to
Django unchanged. In a real project the last lines go into ``<project>/wsgi.py``.

Run it (from the repository root)::

    KZR_ROOT=/srv/recordings gunicorn -c examples/gunicorn.conf.py \
        --chdir examples django_wsgi:application

Kazoo's callflow ``url``: ``http://<this host>:8080/kazoo``; ``GET /`` is Django's.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path

from kzr_wsgi import DirectoryStore, KazooRecordings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        # Set DJANGO_SECRET_KEY in production; the default is for trying it out only.
        SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret"),
        ALLOWED_HOSTS=os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(","),
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    )


def index(request: HttpRequest) -> JsonResponse:
    """The project's own route: whatever the site already does."""
    return JsonResponse({"service": "django example", "path": request.path})


urlpatterns = [path("", index)]

application = KazooRecordings(
    get_wsgi_application(),
    DirectoryStore(os.environ.get("KZR_ROOT", "./recordings")),
    prefix="/kazoo",
)
