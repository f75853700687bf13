"""One webhook POST over ``urllib``, and what its failure means: try again, or give up.

:class:`~kzr_wsgi.notify.WebhookNotifier` decides when to send and how often;
:func:`post` sends once. A ``2xx`` returns; an answer that retrying will not change
(``3xx``: redirects are not followed; ``4xx`` but ``408``, ``425``, ``429``) raises
:class:`GiveUp`; anything else (a network error, a timeout, ``408``, ``425``,
``429``, ``5xx``) raises as it came, worth another attempt.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

#: Answers worth retrying: the webhook is busy, rate-limiting, or broken for now.
RETRY_STATUS = frozenset({408, 425, 429})
#: Read at most this much of a webhook's answer: it is ignored, but reading it lets
#: the connection close cleanly.
MAX_ANSWER = 64 << 10


class GiveUp(Exception):
    """An answer that retrying will not change."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would turn a redirected POST into a GET without the document: treat a
    # redirect as the answer it is (a misconfigured URL), not as success.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def opener() -> urllib.request.OpenerDirector:
    """A ``urllib`` opener that follows no redirect (proxies from the environment)."""
    return urllib.request.build_opener(_NoRedirect)


def post(
    using: urllib.request.OpenerDirector,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
) -> None:
    """POST ``body`` to ``url``; return on ``2xx``.

    :raises GiveUp: an answer that retrying will not change.
    :raises Exception: anything else (``urllib``'s and the socket's errors): worth a retry.
    """
    request = urllib.request.Request(url, data=body, method="POST", headers=dict(headers))
    try:
        with using.open(request, timeout=timeout) as response:
            response.read(MAX_ANSWER)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code in RETRY_STATUS or exc.code >= 500:
            raise
        raise GiveUp(f"HTTP {exc.code} {exc.reason}") from exc


def describe(exc: BaseException) -> str:
    """A failed POST's error in a few words for a log line (never the request's headers)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{type(exc.reason).__name__}: {exc.reason}"
    if isinstance(exc, http.client.HTTPException | OSError):
        return f"{type(exc).__name__}: {exc}"
    return repr(exc)
