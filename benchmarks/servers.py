"""Start and stop real servers on loopback, and watch their memory.

One pattern for the benchmark and for tests that need a real server::

    port = free_port()
    argv = gunicorn_argv("apps:floor_app", port, worker_class="gthread")
    with Server(argv, port, env={"KZR_BENCH_DIR": str(tmp_path)}) as server:
        ...  # talk to 127.0.0.1:port
        print(server.tree_rss())

:class:`Server` starts the command in a new session (its own process group), waits until
the port accepts, and on exit sends SIGTERM to that group only, then SIGKILL after a grace
period: no server outlives the run, and nothing else on the machine is touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import psutil

HOST = "127.0.0.1"
#: This folder: servers get it on PYTHONPATH so ``apps:floor_app`` imports.
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def gunicorn_argv(
    app: str,
    port: int,
    *,
    workers: int = 2,
    worker_class: str = "sync",
    threads: int = 4,
    timeout: int | None = None,
) -> list[str]:
    """gunicorn's command line; ``timeout=None`` keeps gunicorn's default (30 s)."""
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-b",
        f"{HOST}:{port}",
        "-w",
        str(workers),
        "-k",
        worker_class,
        "--log-level",
        "warning",
    ]
    if worker_class == "gthread":
        argv += ["--threads", str(threads)]
    if timeout is not None:
        argv += ["--timeout", str(timeout)]
    return [*argv, app]


def granian_argv(
    app: str, port: int, *, workers: int = 2, blocking_threads: int | None = None
) -> list[str]:
    """granian's command line with its WSGI interface."""
    argv = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    if blocking_threads is not None:
        argv += ["--blocking-threads", str(blocking_threads)]
    return [*argv, app]


def waitress_argv(app: str, port: int, *, threads: int = 4) -> list[str]:
    """waitress's command line: one process, ``threads`` app threads (it has no workers)."""
    return [
        sys.executable,
        "-m",
        "waitress",
        "--host",
        HOST,
        "--port",
        str(port),
        f"--threads={threads}",
        "--max-request-body-size=4294967296",
        app,
    ]


def kzr_argv(
    root: str | os.PathLike[str], port: int, *, workers: int = 2, inspect: bool = True
) -> list[str]:
    """``kzr-wsgi serve`` as the README tells a newcomer to run it (``inspect=False``:
    with ``--no-inspect``).

    Run as ``python -m kzr_wsgi`` with this checkout first on ``PYTHONPATH`` (see
    :class:`Server`), not the ``kzr-wsgi`` script on ``PATH``: that one runs whichever
    kzr_wsgi is installed, which need not be the code being measured.
    """
    head = [sys.executable, "-m", "kzr_wsgi"]
    return [
        *head,
        "serve",
        "--root",
        str(root),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        *([] if inspect else ["--no-inspect"]),
    ]


def kzr_available() -> str | None:
    """None when ``kzr_wsgi.cli`` imports, else why not (the row is then "not available")."""
    try:
        import kzr_wsgi.cli  # noqa: F401
    except Exception as exc:  # any failure means the command cannot run yet
        return f"{type(exc).__name__}: {exc}"
    return None


class Server:
    """A server process (and its children) started in its own session on loopback."""

    def __init__(
        self,
        argv: Sequence[str],
        port: int,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        start_timeout: float = 20.0,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.port = port
        self.env = {**os.environ, "PYTHONPATH": _pythonpath(), **(env or {})}
        self.cwd = cwd
        self.start_timeout = start_timeout
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: int | None = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the command and wait until its port accepts a connection."""
        if self.log_path is not None:
            self._log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        out = self._log if self._log is not None else subprocess.DEVNULL
        # start_new_session: the server and its workers form one group we can signal
        # without touching anything we did not start.
        self.proc = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdout=out, stderr=out, start_new_session=True
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.argv[:4]} exited with {self.proc.returncode}: {self.tail()}"
                )
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(f"{self.argv[:4]} did not listen on {self.port}: {self.tail()}")
        # Multi-worker servers accept before every worker has imported the app: give the
        # last one a moment so the first timed request does not pay for a cold worker.
        time.sleep(0.5)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the server's process group, SIGKILL it after ``grace`` seconds."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc is not None:
            # Workers may outlive a master that died first: the group still names them.
            _signal_group(proc.pid, signal.SIGKILL)
        if self._log is not None:
            os.close(self._log)
            self._log = None

    def tail(self, n: int = 2000) -> str:
        """The end of the server's log, for error messages."""
        if self.log_path is None or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, "rb") as f:
            return f.read()[-n:].decode("utf-8", "replace")

    def processes(self) -> list[psutil.Process]:
        """The server process and all its descendants."""
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def tree_rss(self) -> int:
        """Resident bytes of the whole process tree, summed."""
        total = 0
        for p in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total

    def pids(self) -> set[int]:
        """The pids of the tree now (to spot a worker that was killed and replaced)."""
        return {p.pid for p in self.processes()}


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _pythonpath() -> str:
    old = os.environ.get("PYTHONPATH")
    # The project root too, so a checkout that was not pip-installed still imports kzr_wsgi.
    parts = [str(HERE), str(HERE.parent)]
    return os.pathsep.join(parts + ([old] if old else []))


class RssPeak:
    """Sample a server's tree RSS in a thread; ``peak - baseline`` is the growth.

    Per-process peaks are kept too: with two workers only one takes an upload, and its
    own growth is the number that matters for memory planning.
    """

    def __init__(self, server: Server, interval: float = 0.005) -> None:
        self.server = server
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self.baseline_by_pid: dict[int, int] = {}
        self.peak_by_pid: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssPeak:
        self.baseline_by_pid = self._sample()
        self.baseline = self.peak = sum(self.baseline_by_pid.values())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        """Peak of the summed tree RSS minus the sum before the upload."""
        return self.peak - self.baseline

    @property
    def worst_process_growth(self) -> int:
        """The largest growth of any single process over its own starting RSS."""
        return max(
            (peak - self.baseline_by_pid.get(pid, peak) for pid, peak in self.peak_by_pid.items()),
            default=0,
        )

    def _sample(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for p in self.server.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                out[p.pid] = p.memory_info().rss
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = self._sample()
            self.peak = max(self.peak, sum(sample.values()))
            for pid, rss in sample.items():
                self.peak_by_pid[pid] = max(self.peak_by_pid.get(pid, 0), rss)
            time.sleep(self.interval)


_NGINX_CONF = """\
daemon off;
master_process on;
worker_processes {workers};
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 4g;
    server {{
        listen {host}:{port};
        root {root};
        location / {{
            dav_methods PUT;
            create_full_put_path on;
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    """The nginx executable, or None when nginx is not installed."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None
    )


class Nginx(Server):
    """nginx's own WebDAV PUT (``dav_methods PUT``) into ``root``: the native-code reference."""

    def __init__(self, root: str | os.PathLike[str], port: int, *, workers: int = 2) -> None:
        exe = nginx_binary()
        if exe is None:
            raise RuntimeError("nginx is not installed")
        # Beside root, so on the same filesystem: nginx renames its body temp file into place.
        self._tmp = tempfile.mkdtemp(prefix="kzr-bench-nginx-", dir=Path(root).resolve().parent)
        conf = os.path.join(self._tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(
                _NGINX_CONF.format(workers=workers, tmp=self._tmp, host=HOST, port=port, root=root)
            )
        super().__init__(
            [exe, "-p", self._tmp, "-c", conf], port, log_path=os.path.join(self._tmp, "stderr.log")
        )

    def stop(self, grace: float = 10.0) -> None:
        """Stop nginx and remove its config and temp folder."""
        super().stop(grace)
        shutil.rmtree(self._tmp, ignore_errors=True)
