"""An existing Flask app that takes Kazoo's recordings beside its own routes.

Run it:  KZR_ROOT=/tmp/recordings flask --app examples/flask_app.py run --port 8080
Kazoo's callflow ``url``: ``http://<this host>:8080/kazoo`` (uploads land under KZR_ROOT).
The app's own routes (``/``, ``PUT /api/users/<id>``) work as before.
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request

from kzr_wsgi.flask import KazooFlask, recording_stored


def create_app(root: str | None = None) -> Flask:
    """Build the app; recordings go to ``root`` (default ``$KZR_ROOT`` or ``./recordings``)."""
    app = Flask(__name__)
    app.config["KZR_ROOT"] = root or os.environ.get("KZR_ROOT", "./recordings")
    app.config["KZR_PREFIX"] = "/kazoo"
    app.config["RECENT"] = []

    @app.get("/")
    def index() -> dict[str, object]:
        return {"service": "example", "recent": app.config["RECENT"][-10:]}

    @app.put("/api/users/<int:user_id>")
    def update_user(user_id: int) -> object:
        return jsonify(id=user_id, body=request.get_data(as_text=True))

    def remember(sender: Flask, recording: object, result: object) -> None:
        # Runs inside the app context, after the recording is on disk.
        sender.config["RECENT"].append(
            {"call_id": recording.call_id, "location": getattr(result, "location", None)}  # type: ignore[attr-defined]
        )

    recording_stored.connect(remember, app, weak=False)
    KazooFlask(app)
    return app


app = create_app()
