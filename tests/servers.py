"""Real servers on loopback for the tests: each started by the test that needs it.

``serve(...)`` runs ``kzr-wsgi serve`` itself. ``wsgi_server(kind, factory, ...)``
runs an app, named as ``module:function`` (called with keyword arguments passed as
JSON), under gunicorn, waitress or werkzeug's development server, each in its own
process so a test can kill it. Every server is stopped when its ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVER_KINDS = ("gunicorn", "waitress", "werkzeug")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_listening(
    host: str, port: int, proc: subprocess.Popen[bytes], timeout: float = 20
) -> None:
    """Block until ``host:port`` accepts connections; fail if the process dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"server exited with {proc.returncode}:\n{out}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


@dataclass(frozen=True)
class Answer:
    """What a plain client request got back."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes


def request(port: int, method: str, path: str, body: bytes | None = None,
            host: str = "127.0.0.1", timeout: float = 30) -> Answer:
    """One request as a plain client sends it (``http.client``, a new connection)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {"Content-Type": "audio/mpeg"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return Answer(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def get(port: int, path: str) -> tuple[int, bytes]:
    """GET ``path``: the status and the body."""
    answer = request(port, "GET", path)
    return answer.status, answer.body


def tree_rss(pid: int) -> int:
    """Resident memory of process ``pid`` and all its descendants, in bytes."""
    import psutil

    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


@dataclass
class RssPeak:
    """The memory of a process tree before, at its peak during, and after a ``with`` block."""

    before: int = 0
    peak: int = 0
    after: int = 0

    @property
    def growth(self) -> int:
        """How far the peak rose above the start."""
        return self.peak - self.before


@contextlib.contextmanager
def rss_peak(pid: int, interval: float = 0.01) -> Iterator[RssPeak]:
    """Sample ``pid``'s tree every ``interval`` seconds while the block runs."""
    result = RssPeak(before=tree_rss(pid))
    result.peak = result.before
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            result.peak = max(result.peak, tree_rss(pid))
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        done.set()
        sampler.join(timeout=10)
        result.after = tree_rss(pid)


def store_temporaries(root: Path) -> list[str]:
    """A store's temporary files: named ones in ``ROOT/.kzr/tmp``, and unnamed ones open there.

    An unnamed (``O_TMPFILE``) file has no name to list; it shows as a descriptor of its
    writer, ``/proc/<pid>/fd/<n> -> ROOT/.kzr/tmp/#<inode> (deleted)``, for as long as
    the writer holds it. Named files are given as paths, open unnamed ones by that link.
    """
    tmp = root / ".kzr" / "tmp"
    found = sorted(str(p) for p in tmp.iterdir()) if tmp.is_dir() else []
    prefix = f"{tmp}/#"
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            fds = list(fd_dir.iterdir())
        except OSError:
            continue  # the process is gone
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue  # closed meanwhile (the listing's own descriptor, for one)
            if link.startswith(prefix):
                found.append(link)
    return found


@dataclass
class Server:
    """A running server: where it listens, and its process."""

    host: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server and every process it started."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)


@contextlib.contextmanager
def spawn(args: Sequence[str], host: str, port: int, log_path: Path,
          env: dict[str, str | None] | None = None, cwd: Path | None = None) -> Iterator[Server]:
    """Run ``args`` in its own process group until it listens on ``host:port``; stop it after.

    ``env`` is laid over this process's environment (a ``None`` value removes a variable);
    the output goes to ``log_path``.
    """
    merged = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env = {k: v for k, v in merged.items() if v is not None}
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), str(HERE.parent), full_env.get("PYTHONPATH", "")]
    )
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(args), stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
            start_new_session=True,
        )
    server = Server(host, port, proc, log_path)
    try:
        try:
            wait_listening(host, port, proc)
        except Exception as exc:
            raise RuntimeError(f"{exc}\n{server.log()}") from exc
        yield server
    finally:
        server.stop()


def wait_for_workers(server: Server, count: int = 1, timeout: float = 60) -> None:
    """Wait until ``count`` of serve's background analysis workers have started: each is
    a process of serve's tree, at its working size once it says it is ready."""
    deadline = time.monotonic() + timeout
    while server.log().count(": ready, analysing the recordings") < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no background worker ready:\n{server.log()}")
        time.sleep(0.05)


@contextlib.contextmanager
def serve(tmp_path: Path, *args: str, root: Path | None = None, host: str = "127.0.0.1",
          env: dict[str, str | None] | None = None) -> Iterator[Server]:
    """Run ``kzr-wsgi serve --root ROOT --port P ARGS…`` (``python -m kzr_wsgi``)."""
    port = free_port(host)
    root = root if root is not None else tmp_path / "recordings"
    cmd = [sys.executable, "-m", "kzr_wsgi", "serve", "--root", str(root),
           "--host", host, "--port", str(port), *args]
    with spawn(cmd, host, port, tmp_path / f"serve-{port}.log", env) as server:
        yield server


@contextlib.contextmanager
def wsgi_server(kind: str, factory: str, tmp_path: Path, **kwargs: object) -> Iterator[Server]:
    """Run the app ``factory(**kwargs)`` (``"module:function"``) under ``kind``."""
    port = free_port()
    cmd = [sys.executable, str(HERE / "_run_server.py"), kind, factory, "127.0.0.1", str(port),
           json.dumps(kwargs)]
    with spawn(cmd, "127.0.0.1", port, tmp_path / f"{kind}-{port}.log") as server:
        yield server
