"""The pages the server writes itself: the sign-in form, a share link's page, the search
page's per-session values. Pure: text in, HTML out, every value escaped.

No inline script or style anywhere (the policy forbids both): the pages load the
package's own ``static/`` files by absolute path (``base`` is the UI's prefix as the
browser sees it); scripts are JavaScript modules (``type="module"``, deferred).

>>> "&lt;b&gt;" in signin_page("/ui", "tok", username="<b>")
True
"""

from __future__ import annotations

from html import escape

#: The search page's placeholders, filled per request (:func:`fill_index`).
CSRF_PLACEHOLDER = "{{csrf}}"
VIEWER_PLACEHOLDER = "{{viewer}}"


def _e(text: str) -> str:
    return escape(text, quote=True)


def _head(base: str, title: str, script: str | None = None) -> str:
    script_tag = (f'<script type="module" src="{_e(base)}/static/{_e(script)}"></script>\n'
                  if script else "")
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{_e(title)}</title>\n"
        f'<link rel="stylesheet" href="{_e(base)}/static/app.css">\n{script_tag}</head>\n'
    )


def signin_page(base: str, csrf: str, *, message: str | None = None,
                username: str = "") -> str:
    """The sign-in form; posts ``username``, ``password`` and ``csrf`` to ``{base}/signin``.

    :param csrf: the sign-in nonce's token (:func:`~kzr_wsgi.ui.sessions.csrf_token`).
    :param message: why the last try failed, shown as an alert.
    :param username: what was typed before, kept (never the password).
    """
    alert = (f'  <p id="signin-error" class="error" role="alert">{_e(message)}</p>\n'
             if message else "")
    described = ' aria-describedby="signin-error"' if message else ""
    return (
        _head(base, "Sign in · Recordings")
        + '<body class="signin">\n<header><h1>Recordings</h1></header>\n<main>\n'
        f'<form class="signin" method="post" action="{_e(base)}/signin"{described}>\n'
        "  <h2>Sign in</h2>\n" + alert
        + '  <div class="field">\n    <label for="username">User name</label>\n'
        f'    <input id="username" name="username" autocomplete="username" required '
        f'autocapitalize="none" spellcheck="false" value="{_e(username)}">\n  </div>\n'
        '  <div class="field">\n    <label for="password">Password</label>\n'
        '    <input id="password" name="password" type="password" '
        'autocomplete="current-password" required>\n  </div>\n'
        f'  <input type="hidden" name="csrf" value="{_e(csrf)}">\n'
        '  <div class="field actions"><button type="submit">Sign in</button></div>\n'
        "</form>\n</main>\n</body>\n</html>\n"
    )


def share_page(base: str, share_base: str) -> str:
    """A share link's page: the recording's player and transcript, and nothing else.

    The audio element plays without script (its ``src`` is the link's own audio URL);
    ``static/share.js`` reads ``data-share-api`` and fills in the rest.
    """
    return (
        _head(base, "Shared recording", "share.js")
        + f'<body class="share" data-share-api="{_e(share_base)}/api">\n'
        "<header><h1>Shared recording</h1></header>\n<main>\n"
        '  <p id="status" role="status" aria-live="polite">Loading…</p>\n'
        '  <section id="recording" class="recording" aria-labelledby="recording-title">\n'
        '    <h2 id="recording-title">Recording</h2>\n'
        '    <dl id="facts" class="facts"></dl>\n'
        '    <div class="listen">\n      <div id="player-area" class="player-area">\n'
        f'        <audio id="player" controls preload="metadata" src="{_e(share_base)}/audio">'
        "</audio>\n      </div>\n"
        '      <section class="transcript-area" aria-labelledby="transcript-title">\n'
        '        <h3 id="transcript-title">Transcript</h3>\n'
        '        <ol id="transcript" class="transcript"></ol>\n      </section>\n'
        "    </div>\n  </section>\n</main>\n</body>\n</html>\n"
    )


def gone_page(base: str) -> str:
    """What an expired, revoked or unknown share link opens (answered ``404``)."""
    return (
        _head(base, "Link not available")
        + "<body>\n<header><h1>Recordings</h1></header>\n<main>\n"
        "<h2>This link does not work</h2>\n"
        "<p>It has expired or been revoked, or the recording is no longer kept. Ask the "
        "person who sent it for a new one.</p>\n</main>\n</body>\n</html>\n"
    )


def fill_index(template: str, *, csrf: str | None, viewer: str) -> str:
    """The search page for one caller: its CSRF token (empty without a session) and name."""
    return (template.replace(CSRF_PLACEHOLDER, _e(csrf or ""))
            .replace(VIEWER_PLACEHOLDER, _e(viewer)))
