"""``kzr-wsgi serve --ui`` for real: cookies over TLS and behind a proxy, SIGHUP, two workers,
share tokens kept out of every log line, and a 2 GB export in flat memory."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import zipfile
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from servers import Server, rss_peak, serve
from ui_fixtures import form_csrf

pytestmark = pytest.mark.slow

UPLOADER = ("kazoo", "upload-pw")


class Agent:
    """A client with a cookie jar, one new connection a request (so workers vary)."""

    def __init__(self, server: Server, context: ssl.SSLContext | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.server = server
        self.context = context
        self.headers = headers or {}
        self.cookies: dict[str, str] = {}
        self.last_set_cookie: list[str] = []

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn: http.client.HTTPConnection
        if self.context is not None:
            conn = http.client.HTTPSConnection(self.server.host, self.server.port,
                                               context=self.context, timeout=30)
        else:
            conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=30)
        sent = {**self.headers, **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            conn.request(method, path, body=body, headers=sent)
            reply = conn.getresponse()
            data = reply.read()
            self.last_set_cookie = reply.headers.get_all("Set-Cookie") or []
        finally:
            conn.close()
        for header in self.last_set_cookie:
            jar: SimpleCookie = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel.value:
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        return reply.status, data

    def sign_in(self, user: str, password: str) -> int:
        status, page = self.request("GET", "/ui/signin")
        assert status == 200
        form = urlencode({"username": user, "password": password,
                          "csrf": form_csrf(page.decode())}).encode()
        status, _ = self.request("POST", "/ui/signin", form, {
            "Content-Type": "application/x-www-form-urlencoded"})
        return status

    def session_cookie(self) -> SimpleCookie:
        for header in self.last_set_cookie:
            if header.startswith("kzr_session="):
                jar: SimpleCookie = SimpleCookie()
                jar.load(header)
                return jar
        raise AssertionError(f"no session cookie in {self.last_set_cookie}")

    def csrf(self) -> str:
        status, data = self.request("GET", "/ui/api/session")
        assert status == 200, data
        return str(json.loads(data)["csrf"])


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def upload_file(server: Server, call_id: str, path: Path, account_id: str = "acct-1") -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=600)
    try:
        with open(path, "rb") as body:
            conn.request("PUT", f"/call_recording_{call_id}.mp3?account_id={account_id}",
                         body=body, headers={**basic(*UPLOADER), "Content-Type": "audio/mpeg",
                                             "Content-Length": str(path.stat().st_size)})
            reply = conn.getresponse()
            assert reply.status == 201, reply.read()
    finally:
        conn.close()


def row_ids(server: Server, viewer: tuple[str, str]) -> dict[str, str]:
    agent = Agent(server, headers=basic(*viewer))
    status, data = agent.request("GET", "/ui/api/recordings?limit=500")
    assert status == 200, data
    return {i["call_id"]: i["id"] for i in json.loads(data)["items"]}


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_the_session_cookie_is_secure_over_real_tls(
        tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    context = ssl.create_default_context(cafile=str(cert))
    with serve(tmp_path, "--ui", "--viewer", "ops:ops-pw", "--certfile", str(cert),
               "--keyfile", str(key), "--workers", "1") as server:
        agent = Agent(server, context)
        assert agent.sign_in("ops", "ops-pw") == 303
        cookie = agent.session_cookie()["kzr_session"]
        assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Lax"
        assert agent.request("GET", "/ui/api/session")[0] == 200


def test_the_session_cookie_is_secure_behind_a_trusted_proxy_only(tmp_path: Path) -> None:
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.33"}
    with serve(tmp_path, "--ui", "--viewer", "ops:ops-pw", "--workers", "1",
               "--trust-proxy", "127.0.0.1/32") as server:
        for headers, secure in ((proxied, True), ({}, False)):
            agent = Agent(server, headers=headers)
            assert agent.sign_in("ops", "ops-pw") == 303
            assert bool(agent.session_cookie()["kzr_session"]["secure"]) is secure
    with serve(tmp_path, "--ui", "--viewer", "ops:ops-pw", "--workers", "1",
               root=tmp_path / "other") as server:
        agent = Agent(server, headers=proxied)  # nobody trusted: the header proves nothing
        assert agent.sign_in("ops", "ops-pw") == 303
        assert not agent.session_cookie()["kzr_session"]["secure"]


def test_sign_out_holds_on_every_worker(tmp_path: Path) -> None:
    with serve(tmp_path, "--ui", "--viewer", "ops:ops-pw", "--workers", "2",
               "--threads", "2") as server:
        agent = Agent(server)
        assert agent.sign_in("ops", "ops-pw") == 303
        cookie = dict(agent.cookies)
        assert all(agent.request("GET", "/ui/api/session")[0] == 200 for _ in range(12))
        form = urlencode({"csrf": agent.csrf()}).encode()
        assert agent.request("POST", "/ui/signout", form, {
            "Content-Type": "application/x-www-form-urlencoded"})[0] == 303
        replay = Agent(server)
        replay.cookies = cookie
        statuses = {replay.request("GET", "/ui/api/session")[0] for _ in range(12)}
        assert statuses == {401}


def wait_for(server: Server, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.log():
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.1)


def kzr(*args: str, stdin: str | None = None) -> None:
    subprocess.run([sys.executable, "-m", "kzr_wsgi", *args], input=stdin, text=True,
                   check=True, capture_output=True)


def test_sighup_rereads_the_viewer_file(tmp_path: Path) -> None:
    viewers = tmp_path / "viewers"
    kzr("viewer", "add", "ops", "--file", str(viewers), stdin="ops-pw\n")
    kzr("viewer", "add", "acme", "--account", "acct-1", "--file", str(viewers),
        stdin="acme-pw\n")
    with serve(tmp_path, "--ui", "--viewer-file", str(viewers), "--workers", "2",
               "--threads", "2") as server:
        ops, acme = Agent(server), Agent(server)
        assert ops.sign_in("ops", "ops-pw") == 303 and acme.sign_in("acme", "acme-pw") == 303
        kzr("viewer", "rm", "acme", "--file", str(viewers))
        kzr("viewer", "add", "globex", "--file", str(viewers), stdin="globex-pw\n")
        os.kill(server.proc.pid, signal.SIGHUP)
        wait_for(server, "viewers reread: 2 viewer(s); signed out: acme")
        time.sleep(1)  # the old workers finish; the new ones were forked with the new file
        for attempt in range(8):  # new connections: both workers answer some
            assert acme.request("GET", "/ui/api/session")[0] == 401
            assert ops.request("GET", "/ui/api/session")[0] == 200
            assert Agent(server, headers=basic("globex", "globex-pw")).request(
                "GET", "/ui/api/recordings")[0] == 200
            if attempt < 4:  # (the fifth failure from one address is throttled)
                assert Agent(server, headers=basic("acme", "acme-pw")).request(
                    "GET", "/ui/api/recordings")[0] == 401
        # A file that no longer reads is logged; the viewers stay as they were.
        viewers.write_text(viewers.read_text() + "broken line\n")
        os.kill(server.proc.pid, signal.SIGHUP)
        wait_for(server, "viewers not reread")
        time.sleep(1)
        assert ops.request("GET", "/ui/api/session")[0] == 200


def test_a_share_token_never_reaches_a_log_line(tmp_path: Path) -> None:
    sample = tmp_path / "one.mp3"
    sample.write_bytes(b"\xff\xfb" + os.urandom(4000))
    with serve(tmp_path, "--ui", "--viewer", "ops:ops-pw", "--viewer", "other:other-pw",
               "--basic-auth", ":".join(UPLOADER), "--access-log", "-",
               "--workers", "1") as server:
        upload_file(server, "shared-1", sample)
        [row_id] = row_ids(server, ("ops", "ops-pw")).values()
        script = Agent(server, headers=basic("ops", "ops-pw"))
        # A viewer without share is refused; give one the right by a file next time.
        assert script.request("POST", f"/ui/api/recordings/{row_id}/shares", b"{}", {
            "Content-Type": "application/json"})[0] == 403
    viewers = tmp_path / "viewers"
    viewers.write_text("ops:ops-pw * share\n")
    with serve(tmp_path, "--ui", "--viewer-file", str(viewers), "--access-log", "-",
               "--workers", "1") as server:
        script = Agent(server, headers=basic("ops", "ops-pw"))
        status, data = script.request("POST", f"/ui/api/recordings/{row_id}/shares", b"{}",
                                      {"Content-Type": "application/json"})
        assert status == 201, data
        url = json.loads(data)["url"]
        token = url.rsplit("/", 1)[1]
        stranger = Agent(server)
        for suffix, status in (("", 200), ("/api", 200), ("/audio", 200), ("/peaks", 404),
                               ("/audio?download=1", 200)):
            assert stranger.request("GET", url + suffix)[0] == status, suffix
        made = json.loads(data)["id"]
        script.request("DELETE", f"/ui/api/shares/{made}")
        assert stranger.request("GET", url)[0] == 404
        assert stranger.request("GET", url + "/audio")[0] == 404
        log = server.log()
    assert "/ui/s/***" in log  # gunicorn's access log has the lines, masked
    assert token not in log and token[:20] not in log


def test_a_2gb_export_streams_in_flat_memory(tmp_path: Path) -> None:
    piece = tmp_path / "piece.mp3"
    with open(piece, "wb") as fh:
        block = os.urandom(1 << 20)
        for n in range(512):
            fh.write(block[n:] + block[:n])
    with serve(tmp_path, "--ui", "--viewer", "ops:ops-pw", "--basic-auth", ":".join(UPLOADER),
               "--no-inspect", "--max-size", "1G", "--workers", "1",
               "--threads", "4") as server:
        for n in range(4):
            upload_file(server, f"big-{n}", piece)
        ids = row_ids(server, ("ops", "ops-pw"))
        assert len(ids) == 4
        out = tmp_path / "export.zip"
        conn = http.client.HTTPConnection(server.host, server.port, timeout=600)
        digest = hashlib.sha256()
        with rss_peak(server.proc.pid) as memory:
            conn.request("POST", "/ui/api/export", body=json.dumps({"ids": list(ids.values())}),
                         headers={**basic("ops", "ops-pw"), "Content-Type": "application/json"})
            reply = conn.getresponse()
            assert reply.status == 200 and reply.getheader("Content-Type") == "application/zip"
            with open(out, "wb") as fh:
                while chunk := reply.read(1 << 20):
                    fh.write(chunk)
                    digest.update(chunk)
        conn.close()
    size = out.stat().st_size
    assert size > 4 * 512 * (1 << 20)  # 2 GiB of audio and the manifests
    assert memory.growth < 100 * (1 << 20), memory  # flat: nowhere near the 2 GiB sent
    expected = hashlib.sha256(piece.read_bytes()).hexdigest()
    with zipfile.ZipFile(out) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".mp3"))
        assert len(names) == 4
        for name in names:
            with archive.open(name) as entry:
                got = hashlib.sha256()
                while data := entry.read(1 << 20):
                    got.update(data)
            assert got.hexdigest() == expected, name  # also checks each CRC
        manifest: list[dict[str, Any]] = json.loads(archive.read("manifest.json"))
        assert sorted(m["call_id"] for m in manifest) == [f"big-{n}" for n in range(4)]

