"""The comparison apps the benchmark serves: the floor, the hand-written Flask route, a probe.

Each server is started with this folder on ``PYTHONPATH`` and ``KZR_BENCH_DIR`` naming
the folder the apps write into, e.g. ``gunicorn -w 2 apps:floor_app``.

- :func:`floor_app` is the least a WSGI receiver can do: copy ``wsgi.input`` to a file
  in 1 MiB reads, no hashing, no fsync. Every other row is measured against it.
- :func:`durable_hashed_floor_app` is the floor that also keeps kzr_wsgi's promises:
  the body's sha256 and an ``fsync`` before the reply, done one after another.
- :data:`flask_app` is the route most Flask shops would write by hand:
  ``shutil.copyfileobj(request.stream, f)``.
- :func:`probe_app` is the floor plus a JSON line per request (when the app was called,
  what the server put in ``environ``, how many bytes arrived, what the read raised), so
  the server survey can tell streaming from buffering and see what a short body does.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

#: The floor's read size: the same 1 MiB the receiver's own copy loops use.
BLOCK = 1 << 20


def _target() -> str:
    # A fresh name per request: files are kept until the benchmark removes the folder,
    # so the floor pays for creating files just as a real receiver does.
    return os.path.join(os.environ["KZR_BENCH_DIR"], uuid.uuid4().hex)


def _copy(
    environ: WSGIEnvironment, log: dict[str, Any] | None, sync: bool = False,
    keep: bool = False,
) -> tuple[int, int | None]:
    raw = environ.get("CONTENT_LENGTH") or ""
    length = int(raw) if raw.isdigit() else None
    stream = environ["wsgi.input"]
    done = 0
    path = _target()
    if keep:  # the caller works on the file next
        environ["kzr.bench.path"] = path
    with open(path, "wb") as out:
        try:
            while length is None or done < length:
                want = BLOCK if length is None else min(BLOCK, length - done)
                block = stream.read(want)
                if not block:
                    break
                out.write(block)
                done += len(block)
        except Exception as exc:  # the probe records what a server raises on a cut body
            if log is None:
                raise
            log["exception"] = f"{type(exc).__name__}: {exc}"
        if sync:
            out.flush()
            os.fsync(out.fileno())
    if sync:
        _fsync_dir(os.path.dirname(path))
    return done, length


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def floor_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Copy the body to a new file in 1 MiB reads; 201 when complete, 400 when short."""
    done, length = _copy(environ, None)
    return _answer(start_response, done, length)


def durable_floor_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The floor plus what durability costs: ``fsync`` of the file and its directory.

    Not a reference the targets use: it shows how close the disk lets any receiver
    that answers only once the bytes are on disk come to the floor.
    """
    _copy(environ, None, sync=True)
    start_response("201 Created", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]


def durable_hashed_floor_app(
    environ: WSGIEnvironment, start_response: StartResponse
) -> Iterable[bytes]:
    """Issue 13's durable hashed floor: copy the body, then sha256 it, then fsync, in turn.

    What a receiver making kzr_wsgi's promises (the body's sha256, durable before the
    reply) does with no overlap of the three; kzr_wsgi's 173 MB upload must be at least
    as fast. The hash is taken over the written file, read back from the page cache.
    """
    done, length = _copy(environ, None, sync=False, keep=True)
    path = environ["kzr.bench.path"]
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            sha.update(block)
        os.fsync(f.fileno())
    _fsync_dir(os.path.dirname(path))
    return _answer(start_response, done, length, sha.hexdigest().encode() + b"\n")


def probe_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The floor, logging one JSON line per request to ``KZR_BENCH_LOG``."""
    log: dict[str, Any] = {
        "called": time.time(),
        "pid": os.getpid(),
        "content_length": environ.get("CONTENT_LENGTH"),
        "transfer_encoding": environ.get("HTTP_TRANSFER_ENCODING"),
        "expect": environ.get("HTTP_EXPECT"),
        "input_terminated": environ.get("wsgi.input_terminated"),
        "input_type": type(environ["wsgi.input"]).__name__,
    }
    done, length = _copy(environ, log)
    log["read"] = done
    log["finished"] = time.time()
    with open(os.environ["KZR_BENCH_LOG"], "a") as f:
        f.write(json.dumps(log) + "\n")
    return _answer(start_response, done, length)


def _make_flask() -> Any:
    from flask import Flask, request

    app = Flask("kzr_bench_flask")

    @app.route("/<path:name>", methods=["PUT", "POST"])
    def upload(name: str) -> tuple[str, int]:
        # Written the way the Flask docs and most answers suggest: copyfileobj with its
        # default buffer (64 KiB on Linux), request.stream as the source.
        with open(_target(), "wb") as out:
            shutil.copyfileobj(request.stream, out)
        return "ok\n", 201

    return app


def __getattr__(name: str) -> Any:
    # Servers import ``apps:flask_app``; build the hand-written Flask route on first use
    # only, so the other apps (and the servers that run them) never import Flask.
    if name == "flask_app":
        app = _make_flask()
        globals()["flask_app"] = app
        return app
    raise AttributeError(name)


def _answer(start_response: StartResponse, done: int, length: int | None,
            body: bytes = b"ok\n") -> list[bytes]:
    """201 with ``body`` when the whole request body was read, 400 when it came short."""
    if length is not None and done < length:
        start_response(
            "400 Bad Request", [("Content-Type", "text/plain"), ("Content-Length", "11")]
        )
        return [b"body short\n"]
    start_response("201 Created", [("Content-Type", "text/plain"),
                                   ("Content-Length", str(len(body)))])
    return [body]
