"""Hostile input never hurts: property tests over every URL form and the headers that matter.

Generated requests (hypothesis) go through the middleware in-process, as a WSGI server
would hand them over: ``PATH_INFO`` decoded once as latin-1, the raw target in
``RAW_URI``/``REQUEST_URI`` or (as under waitress) absent. A bounded batch then goes
over raw sockets to a real ``kzr-wsgi serve``.

The invariants, for every input:

* nothing is written outside the store root: a Python audit hook sees every file the
  process opens for writing, creates, links, renames or removes while the receiver
  runs, and each must resolve below the root; the files beside the root do not change;
* bad input is answered ``4xx``, never ``5xx``, and the app never raises;
* a ``2xx`` upload kept exactly the body that was announced (its ETag is the sha256
  of those bytes); a body shorter than its ``Content-Length`` is never acknowledged;
* the process stays up: the server still answers, and still stores a valid upload.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import serve
from werkzeug.datastructures import Headers
from werkzeug.test import EnvironBuilder, run_wsgi_app

from kzr_wsgi import DirectoryStore, KazooRecordings
from kzr_wsgi.auth import Guard
from kzr_wsgi.forms import DEFAULT_MAX_NAME_BYTES

#: Examples per in-process property (three properties run these). Each stored example is a
#: durable commit with its catalog row (tens of ms here): 1,500 keeps the suite inside its
#: time; KZR_HOSTILE_EXAMPLES=10000 runs a deeper search.
IN_PROCESS_EXAMPLES = int(os.environ.get("KZR_HOSTILE_EXAMPLES", "1500"))
#: Requests in the raw-socket batch against a real server.
SOCKET_EXAMPLES = int(os.environ.get("KZR_HOSTILE_SOCKET_EXAMPLES", "300"))
#: Bodies are small: the properties are about names and headers, not volume.
MAX_BODY = 4096

#: Pieces an attacker (or a strange SIP stack) puts into a call id or a path segment.
HOSTILE = [
    "..", ".", "/", "//", "\\", "..\\..\\", "../../../../etc/passwd", "/etc/passwd",
    "%2e%2e", "%2E%2E%2F", "%252e%252e%252f", "%25252e", "%2f", "%2F", "%252F", "%5c", "%5C",
    "%255c", "%00", "\x00", "%0a", "%0d%0a", "\r\n", "\t", "\x7f", "\x1b[31m", "%ff", "%fe%ff",
    "%c0%ae", "%c0%af", "%e2%80%ae", "\u202e", "\ufeff", "\ud7ff", "%ed%a0%80", "%u002e",
    "ｆｕｌｌ", "．．", "‥", "😀", "é", "e\u0301", "%", "%%", "%zz", "%2", "?", "#", ";", "..;",
    "~", "~2", ".kzr", ".kzr/tmp", ".kzr/index", "x.kzr.json", "call_recording_", "CON",
    "nul", "COM1", " ", "%20", "+", "&", "=", "*", "'", '"', "<script>", "${jndi:x}", "@",
    ":", "[::1]",
]
EXTENSIONS = [
    "mp3", "MP3", "Mp3", "wav", "WAV", "mp4", "mP4", "mp3.php", "php.mp3", "mp3%00.php",
    "mp3\x00", "mp3%2e", "", "mp3.", "mp3 ", "mp3/..", "mp3/../../x", "exe", "wav.wav",
    "mp3.mp3", "kzr.json", "mp3.kzr.json", "mp3;.php", "mp3%2F..", "ＭＰ３",
]
METHODS = ["PUT", "PUT", "PUT", "POST", "GET", "HEAD", "DELETE", "OPTIONS", "put", "PATCH"]

PREFIX = "/kzr"
ATTACHMENTS = "/store"
USER, PASSWORD, TOKEN = "kazoo", "pw-1", "t0ken"


# -- strategies --------------------------------------------------------------------------

_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.@"

overlong = st.builds(
    lambda piece, n: piece * n,
    st.sampled_from(["a", "é", "%", "/", "..", "%2F", "😀"]),
    st.integers(DEFAULT_MAX_NAME_BYTES // 4, DEFAULT_MAX_NAME_BYTES + 64),
)
fragment = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=12),  # any code point, control characters and surrogates included
    st.text(st.characters(codec="ascii"), max_size=12),
    # What real call ids look like, twice as likely as each of the others.
    st.text(_ID_ALPHABET, min_size=1, max_size=40),
    st.text(_ID_ALPHABET, min_size=1, max_size=40),
)
call_id = st.one_of(
    st.lists(fragment, min_size=1, max_size=6).map("".join),
    overlong,
)


#: How a piece of text is put into the raw request target.
encodings = st.sampled_from(["raw", "once", "once-keep-slash", "twice"])


def encode(text: str, how: str) -> str:
    """``text`` as it might appear in a raw request target: raw, encoded once or twice."""
    if how == "raw":
        return text
    data = text.encode("utf-8", "surrogatepass")
    if how == "once-keep-slash":
        return quote(data, safe="/")
    once = quote(data, safe="")
    return once if how == "once" else quote(once, safe="")


extensions = st.sampled_from(EXTENSIONS) | st.text(max_size=6)
queries = st.sampled_from([
    "", "recording_id=r1", "from=a%40b&to=c&account_id=acc&start=63890000000&recording_id=r2",
    "account_id=..%2F..%2Fetc&owner_id=%00&start=-1&duration_ms=x",
    "token=" + TOKEN, "token=wrong", "token=" + TOKEN + "&token=" + TOKEN,
])
forms = st.sampled_from(["path", "query", "last-param", "caller", "attachment", "other"])
tokens = st.sampled_from([TOKEN] * 4 + [TOKEN.upper(), TOKEN + "x", ""])
extras = st.sampled_from(["", "", "", "#frag", "abs"])


#: A short seed repeated: drawing thousands of independent bytes costs hypothesis dearly.
bodies = st.builds(
    lambda seed, n: (seed * (n // max(len(seed), 1) + 1))[:n],
    st.binary(min_size=1, max_size=16),
    st.integers(0, MAX_BODY),
)


@dataclass
class Request:
    """One generated request, before it becomes an environ or bytes on a socket."""

    method: str
    target: str  # the raw request target: path and query, as sent
    body: bytes
    content_length: str | None  # None: no header
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunked_terminated: bool = False
    give_raw_uri: bool = True
    remote_addr: str = "127.0.0.1"

    def announced(self) -> int | None:
        """The length a correct receiver may store, or None when nothing may be stored."""
        # Whitespace around a field value is not part of it (RFC 9110 5.5).
        cl = None if self.content_length is None else self.content_length.strip(" \t")
        if cl is None or not (cl.isascii() and cl.isdigit()) or len(cl) > 19:
            return None
        return int(cl)


@st.composite
def targets(draw: st.DrawFn) -> str:
    """A raw request target in one of Kazoo's URL forms (or something near one)."""
    cid = draw(call_id)
    ext = draw(extensions)
    segments = draw(st.lists(fragment, max_size=3))
    if draw(st.booleans()):
        segments.insert(0, draw(tokens))
    path_segments = "/".join(encode(s, draw(encodings)) for s in segments)
    name = f"call_recording_{cid}.{ext}"
    query = draw(queries)
    form = draw(forms)
    if form == "path":
        encoded_name = encode(name, draw(encodings))
        path = f"{PREFIX}/{path_segments}/{encoded_name}" if path_segments else (
            f"{PREFIX}/{encoded_name}")
    elif form == "query":
        path = f"{PREFIX}/{path_segments}"
        filled = f"recording={encode(name, draw(encodings))}"
        query = f"{query}&{filled}" if query else filled
    elif form == "last-param":
        path = PREFIX
        filled = "a=" + quote(name.encode("utf-8", "surrogatepass"), safe="")
        query = f"{query}&{filled}" if query else filled
    elif form == "caller":
        path = f"{PREFIX}/{path_segments}/{encode(f'{cid}.{ext}', draw(encodings))}"
    elif form == "attachment":
        path = f"{ATTACHMENTS}/{path_segments}/{encode(cid, draw(encodings))}"
    else:
        path = "/" + encode(draw(fragment), draw(encodings))
    target = path + ("?" + query if query else "")
    # An occasional fragment or absolute-form target, as a confused client might send.
    extra = draw(extras)
    if extra == "abs":
        target = "http://recorder.example" + target
    elif extra:
        target += extra
    return target


BOGUS_LENGTHS = [
    "-1", "+5", " 5", "5 ", "0x10", "1e3", "5, 5", "5,5", "5,6", "", "٣", "²", "00005",
    "99999999999999999999999", "18446744073709551616", "1099511627776", "1.0", "five", "\x00",
    "0",
]


length_kinds = st.sampled_from(
    ["exact", "exact", "exact", "short", "long", "bogus", "absent", "chunked"])
bogus_lengths = st.sampled_from(BOGUS_LENGTHS)
transfer_encodings = st.sampled_from(
    ["chunked", "Chunked", "gzip, chunked", "chunked, identity", "identity"])
auth_kinds = st.sampled_from(["none", "good", "good", "wrong", "junk", "twice"])
junk_text = st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=40)
extra_headers = st.lists(st.sampled_from([
    ("X-Forwarded-For", "10.0.0.1"),
    ("X-Forwarded-For", "10.0.0.1, 192.0.2.1"),
    ("X-Forwarded-For", "garbage, ::1"),
    ("Content-Type", "audio/mpeg"),
    ("Content-Type", "multipart/form-data; boundary="),
    ("Content-Type", "audio/x-wav\x00"),
    ("Expect", "100-continue"),
    ("content_type", "audio/mpeg"),
    ("Te", ""),
    ("Host", "evil.example"),
]), max_size=3)
methods = st.sampled_from(METHODS)
remote_addrs = st.sampled_from(["127.0.0.1", "10.1.2.3", "::1", "192.0.2.7"])
GOOD_AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@st.composite
def requests(draw: st.DrawFn, with_auth_variety: bool = True) -> Request:
    """A whole hostile request: target, method, body and headers."""
    body = draw(bodies)
    length_kind = draw(length_kinds)
    chunked_terminated = False
    headers: list[tuple[str, str]] = []
    if length_kind == "exact":
        cl: str | None = str(len(body))
    elif length_kind == "short":  # announces more than it sends: must never be a 2xx
        cl = str(len(body) + draw(st.integers(1, 1 << 20)))
    elif length_kind == "long":  # sends more than it announces: only the announced bytes count
        cl = str(draw(st.integers(0, len(body))))
    elif length_kind == "bogus":
        cl = draw(bogus_lengths)
    elif length_kind == "absent":
        cl = None
    else:
        cl = None if draw(st.booleans()) else str(len(body))
        headers.append(("Transfer-Encoding", draw(transfer_encodings)))
        chunked_terminated = draw(st.booleans())
    if with_auth_variety:
        auth = draw(auth_kinds)
        if auth == "good":
            headers.append(("Authorization", GOOD_AUTH))
        elif auth == "wrong":
            raw = f"{draw(junk_text)}:{draw(junk_text)}".encode("latin-1")
            headers.append(("Authorization", "Basic " + base64.b64encode(raw).decode()))
        elif auth == "junk":
            headers.append(("Authorization", draw(junk_text)))
        elif auth == "twice":
            headers += [("Authorization", GOOD_AUTH), ("Authorization", GOOD_AUTH)]
    headers += draw(extra_headers)
    return Request(
        method=draw(methods),
        target=draw(targets()),
        body=body,
        content_length=cl,
        headers=headers,
        chunked_terminated=chunked_terminated,
        give_raw_uri=draw(st.booleans()),
        remote_addr=draw(remote_addrs),
    )


# -- watching what the process writes ---------------------------------------------------

_WRITE_EVENTS = {
    "os.mkdir", "os.rename", "os.link", "os.symlink", "os.remove", "os.rmdir", "os.truncate",
    "os.chmod", "os.chown", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile",
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class _WriteAudit:
    """Paths the watched thread writes to, from Python's audit events (PEP 578)."""

    def __init__(self) -> None:
        self.thread: int | None = None
        self.paths: list[tuple[str, str]] = []

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self.thread != threading.get_ident():
            return
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if writing and isinstance(path, (str, bytes, os.PathLike)):
                self.paths.append((event, os.fsdecode(path)))
        elif event in _WRITE_EVENTS:
            n = 2 if event in ("os.rename", "os.link", "os.symlink", "shutil.move",
                               "shutil.copyfile") else 1
            # A link's source is only read (an unnamed temporary file is linked from
            # /proc/self/fd/N): what it writes is its destination.
            first = 1 if event == "os.link" else 0
            for i in range(first, n):
                path = args[i] if i < len(args) else None
                if isinstance(path, (str, bytes, os.PathLike)):
                    # rename/link give (src, dst, src_dir_fd, dst_dir_fd): a relative
                    # path is resolved against its directory descriptor.
                    dir_fd = args[n + i] if event in ("os.rename", "os.link") and len(
                        args) > n + i else None
                    self.paths.append((event, _resolved(os.fsdecode(path), dir_fd)))

    @contextmanager
    def watching(self) -> Iterator[list[tuple[str, str]]]:
        """Record this thread's writes inside the block; yield the list they go to."""
        self.paths = []
        self.thread = threading.get_ident()
        try:
            yield self.paths
        finally:
            self.thread = None


_AUDIT = _WriteAudit()
# Audit hooks cannot be removed; this one returns at once unless a test is watching.
sys.addaudithook(_AUDIT.hook)


def _resolved(path: str, dir_fd: object) -> str:
    """``path`` as an absolute name, when it is relative to the descriptor ``dir_fd``."""
    if isinstance(dir_fd, int) and dir_fd >= 0 and not os.path.isabs(path):
        return os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
    return path


def _outside(root: Path, writes: list[tuple[str, str]]) -> list[tuple[str, str]]:
    real_root = os.path.realpath(root)
    return [
        (event, path) for event, path in writes
        if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root
    ]


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``directory``: size and mtime, to see that nothing changed."""
    return {
        str(p): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in directory.rglob("*")
    }


def _escapes(root: Path) -> list[Path]:
    """Anything under the root that is a link or resolves elsewhere."""
    real_root = os.path.realpath(root)
    return [
        p for p in root.rglob("*")
        if p.is_symlink() or os.path.commonpath([real_root, os.path.realpath(p)]) != real_root
    ]


@dataclass
class Sandbox:
    """A store root with neighbours that must never change."""

    base: Path
    root: Path
    neighbours: dict[str, tuple[int, int]]

    @classmethod
    def make(cls, base: Path) -> Sandbox:
        root = base / "store" / "root"
        for where in (base / "etc", base / "store", base / "store" / "rootx"):
            where.mkdir(parents=True, exist_ok=True)
        (base / "etc" / "passwd").write_text("root:x:0:0\n")
        (base / "store" / "rootx" / "call_recording_x.mp3").write_bytes(b"neighbour")
        (base / "store" / "sibling.mp3").write_bytes(b"sibling")
        root.mkdir()
        return cls(base, root, cls._neighbours(base, root))

    @staticmethod
    def _neighbours(base: Path, root: Path) -> dict[str, tuple[int, int]]:
        snap = _snapshot(base)
        return {k: v for k, v in snap.items() if not Path(k).is_relative_to(root)}

    def assert_untouched(self) -> None:
        assert self._neighbours(self.base, self.root) == self.neighbours
        assert _escapes(self.root) == []


# -- in-process -------------------------------------------------------------------------


def _host(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"404"]


def _environ(req: Request) -> dict[str, Any]:
    headers = Headers(req.headers)
    environ: dict[str, Any] = EnvironBuilder(
        method=req.method, input_stream=io.BytesIO(req.body), headers=headers,
    ).get_environ()
    # As a server hands it over: the path decoded once, as latin-1 (PEP 3333).
    raw = req.target.encode("utf-8", "surrogatepass").decode("latin-1")
    path_part = raw
    if raw.startswith("http://"):  # absolute form: the server drops scheme and authority
        path_part = "/" + raw.split("://", 1)[1].partition("/")[2]
    path, _, query = path_part.partition("#")[0].partition("?")
    environ["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1")
    environ["QUERY_STRING"] = query
    for key in ("RAW_URI", "REQUEST_URI"):
        environ.pop(key, None)
        if req.give_raw_uri:
            environ[key] = raw
    environ.pop("CONTENT_LENGTH", None)
    if req.content_length is not None:
        environ["CONTENT_LENGTH"] = req.content_length
    environ["wsgi.input_terminated"] = req.chunked_terminated
    environ["REMOTE_ADDR"] = req.remote_addr
    return environ


@dataclass
class Tally:
    """What the inputs got, for the report."""

    tried: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    def add(self, status: int) -> None:
        self.tried += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1


def _run_in_process(app: Any, sandbox: Sandbox, req: Request, tally: Tally) -> None:
    environ = _environ(req)
    with _AUDIT.watching() as writes:
        _body, status_line, headers = run_wsgi_app(app, environ, buffered=True)
    status = int(status_line.split()[0])
    tally.add(status)
    assert status < 500, (status_line, req)
    assert _outside(sandbox.root, writes) == [], req
    announced = req.announced()
    chunked = any(k.lower() == "transfer-encoding" for k, _ in req.headers)
    if 200 <= status < 300 and req.method.upper() in ("PUT", "POST"):
        # Acknowledged: it must be what was announced, all of it.
        if chunked:
            kept = req.body
        else:
            assert announced is not None and announced <= len(req.body), req
            kept = req.body[:announced]
        assert headers["ETag"] == f'"{hashlib.sha256(kept).hexdigest()}"', req
    if announced is not None and announced > len(req.body) and not chunked:
        assert not 200 <= status < 300 or req.method.upper() not in ("PUT", "POST"), req


def _apps(root: Path) -> dict[str, Any]:
    store = DirectoryStore(root)
    options: dict[str, Any] = {
        "prefix": PREFIX, "accept_caller": True, "attachments_prefix": ATTACHMENTS,
        "read_back": True, "max_size": 1 << 20,
    }
    guard = Guard(basic=[f"{USER}:{PASSWORD}"], tokens=[TOKEN],
                  allow=["127.0.0.0/8", "::1", "10.0.0.0/8"], trusted_proxies=["127.0.0.1"])
    return {
        "open": KazooRecordings(_host, store, **options),
        "guarded": KazooRecordings(_host, store, guard=guard, **options),
    }


def _property(tmp_path: Path, strategy: st.SearchStrategy[Request], which: str) -> Tally:
    sandbox = Sandbox.make(tmp_path)
    app = _apps(sandbox.root)[which]
    tally = Tally()

    @settings(max_examples=IN_PROCESS_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(req=strategy)
    def check(req: Request) -> None:
        _run_in_process(app, sandbox, req, tally)

    check()
    sandbox.assert_untouched()
    print(f"\n{which}: {tally.tried} inputs, statuses {dict(sorted(tally.statuses.items()))}")
    return tally


def test_hostile_requests_open_mount(tmp_path: Path) -> None:
    tally = _property(tmp_path, requests(with_auth_variety=False), "open")
    assert tally.tried >= IN_PROCESS_EXAMPLES
    # The generator reaches both outcomes: some inputs are stored, most refused.
    assert any(200 <= s < 300 for s in tally.statuses)
    assert any(400 <= s < 500 for s in tally.statuses)


def test_hostile_requests_guarded_mount(tmp_path: Path) -> None:
    tally = _property(tmp_path, requests(with_auth_variety=True), "guarded")
    assert tally.tried >= IN_PROCESS_EXAMPLES
    assert {401, 403} <= set(tally.statuses)


@st.composite
def plain_uploads(draw: st.DrawFn) -> Request:
    """Valid framing, hostile names only: every one is either stored or a 400."""
    body = draw(st.binary(min_size=1, max_size=256))
    return Request("PUT", draw(targets()), body, str(len(body)),
                   [("Content-Type", "audio/mpeg")], give_raw_uri=draw(st.booleans()))


def test_hostile_names_are_stored_safely_or_refused(tmp_path: Path) -> None:
    tally = _property(tmp_path, plain_uploads(), "open")
    assert tally.tried >= IN_PROCESS_EXAMPLES
    # Well-framed uploads: the only answers are stored, duplicate, not ours, or refused name.
    assert set(tally.statuses) <= {200, 201, 400, 404}
    assert tally.statuses.get(201, 0) > 0


def test_overlong_name_limit(tmp_path: Path) -> None:
    sandbox = Sandbox.make(tmp_path)
    app = _apps(sandbox.root)["open"]
    tally = Tally()
    budget = DEFAULT_MAX_NAME_BYTES - len("call_recording_.mp3")
    for cid, want in [("a" * budget, 201), ("a" * (budget + 1), 400),
                      ("é" * (budget // 2), 201), ("é" * (budget // 2 + 1), 400)]:
        req = Request("PUT", f"{PREFIX}/call_recording_{quote(cid)}.mp3", b"x", "1")
        _run_in_process(app, sandbox, req, tally)
        assert tally.statuses.get(want, 0) >= 1
        tally.statuses.clear()
    sandbox.assert_untouched()


# -- a real server, raw sockets -----------------------------------------------------------


def _wire(req: Request, port: int) -> bytes:
    target = req.target.encode("utf-8", "surrogatepass")
    lines = [req.method.encode("latin-1", "replace") + b" " + target + b" HTTP/1.1",
             f"Host: 127.0.0.1:{port}".encode()]
    if req.content_length is not None:
        lines.append(b"Content-Length: " + req.content_length.encode("utf-8", "surrogatepass"))
    chunked = False
    for name, value in req.headers:
        if name.lower() == "host":
            continue
        chunked |= name.lower() == "transfer-encoding" and "chunked" in value.lower()
        lines.append(name.encode("latin-1", "replace") + b": "
                     + value.encode("latin-1", "replace"))
    lines.append(b"Connection: close")
    body = req.body
    if chunked and req.chunked_terminated:
        body = (f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n") if body else b"0\r\n\r\n"
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _send(port: int, data: bytes) -> int | None:
    """Send one request, half-close, read the final status; None when the server just closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except ConnectionResetError:
            pass
    # Skip interim replies (100 Continue answers `Expect: 100-continue`).
    while reply.startswith(b"HTTP/1.1 1") and b"\r\n\r\n" in reply:
        reply = reply.split(b"\r\n\r\n", 1)[1]
    if not reply:
        return None
    parts = reply.split(b"\r\n", 1)[0].split()
    assert len(parts) >= 2 and parts[0].startswith(b"HTTP/"), reply[:200]
    return int(parts[1])


def test_hostile_requests_against_a_real_server(tmp_path: Path) -> None:
    sandbox = Sandbox.make(tmp_path / "sandbox")
    tally = Tally()
    closed = 0
    with serve(tmp_path, "--prefix", PREFIX, "--attachments-prefix", ATTACHMENTS,
               "--read-back", "--max-size", "1M", root=sandbox.root) as server:

        @settings(max_examples=SOCKET_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(req=requests(with_auth_variety=False))
        def check(req: Request) -> None:
            nonlocal closed
            status = _send(server.port, _wire(req, server.port))
            if status is None:
                closed += 1
                return
            tally.add(status)
            assert status < 500, (status, req, server.log()[-3000:])

        check()
        assert server.proc.poll() is None, server.log()
        # Still up, still storing.
        ok = Request("PUT", f"{PREFIX}/call_recording_after-the-storm.mp3", b"fine", "4")
        assert _send(server.port, _wire(ok, server.port)) == 201
    sandbox.assert_untouched()
    assert "Traceback" not in server.log(), server.log()[-5000:]
    print(f"\nraw sockets: {tally.tried + closed} requests, {closed} closed without a reply, "
          f"statuses {dict(sorted(tally.statuses.items()))}")
    assert tally.tried + closed >= SOCKET_EXAMPLES
    # gunicorn answers every malformed request line itself (400); an empty reply is rare.
    assert closed <= SOCKET_EXAMPLES // 10
