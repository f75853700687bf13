"""kzr_wsgi: a safe receiver for Kazoo (2600Hz) call recordings.

>>> from kzr_wsgi import KazooRecordings, DirectoryStore
>>> app = KazooRecordings(app, DirectoryStore("/srv/recordings"))  # doctest: +SKIP
"""

from __future__ import annotations

from .auth import Guard
from .errors import KzrError
from .metadata import Metadata
from .middleware import KazooRecordings
from .notify import WebhookNotifier
from .recording import Handler, Kind, Name, ReadableStore, Recording, Stored, StoredFile
from .stores import DirectoryStore, FanOut

__all__ = [
    "DirectoryStore",
    "FanOut",
    "Guard",
    "Handler",
    "KazooRecordings",
    "Kind",
    "KzrError",
    "Metadata",
    "Name",
    "ReadableStore",
    "Recording",
    "Stored",
    "StoredFile",
    "WebhookNotifier",
]

__version__ = "0.1.0"
