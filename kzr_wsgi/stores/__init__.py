"""Where bytes become durable. Stores know nothing of WSGI or HTTP status codes.

:class:`DirectoryStore` is the embedded default; ``S3Store`` (extra ``s3``) lives in
:mod:`kzr_wsgi.stores.s3` and is imported from there, so boto3 stays optional.
"""

from __future__ import annotations

from .directory import DirectoryStore
from .fanout import FanOut

__all__ = ["DirectoryStore", "FanOut"]
