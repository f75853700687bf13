"""Authentication and the network allowlist: the Guard alone, through the middleware,
and through a real ``kzr-wsgi serve`` (with Erlang's httpc, as Kazoo 4.x sends)."""

from __future__ import annotations

import base64
import http.client
import importlib
import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from servers import serve
from werkzeug.middleware.lint import LintMiddleware
from werkzeug.test import Client

from kzr_wsgi import DirectoryStore, KazooRecordings, cli
from kzr_wsgi.auth import (
    Guard,
    is_loopback_host,
    parse_address,
    parse_basic,
    parse_network,
    read_secrets,
)
from kzr_wsgi.errors import Forbidden, Unauthorized
from kzr_wsgi.recording import Kind, Name

NAME = Name(Kind.CALL, ("tok1", "acct"), "call_recording_abc.mp3")
BODY = b"ID3 fake mp3 body \x00\x01\x02" * 100


def basic(user: str, password: str) -> str:
    raw = f"{user}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def env(remote: str | None = "127.0.0.1", **headers: str) -> dict[str, object]:
    environ: dict[str, object] = {f"HTTP_{k.upper()}": v for k, v in headers.items()}
    if remote is not None:
        environ["REMOTE_ADDR"] = remote
    return environ


def visible_files(root: Path) -> list[Path]:
    """Files a reader of the store would see (everything but the store's own state)."""
    return sorted(
        p for p in root.rglob("*") if p.is_file() and ".kzr" not in p.relative_to(root).parts
    )


# -- configuration helpers ------------------------------------------------------------


def test_parse_basic_keeps_colons_in_password() -> None:
    assert parse_basic("kazoo:a:b:") == ("kazoo", "a:b:")
    assert parse_basic("kazoo:") == ("kazoo", "")


@pytest.mark.parametrize("text", ["nocolon", ":pass", ""], ids=["no-colon", "no-user", "empty"])
def test_parse_basic_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_basic(text)


def test_parse_network() -> None:
    assert str(parse_network("10.1.2.3/8")) == "10.0.0.0/8"
    assert str(parse_network("192.0.2.7")) == "192.0.2.7/32"
    assert str(parse_network("2001:db8::1/32")) == "2001:db8::/32"
    with pytest.raises(ValueError, match="not a network"):
        parse_network("10.0.0.0/33")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("10.0.0.1:5678", "10.0.0.1"),
        (" 10.0.0.1 ", "10.0.0.1"),
        ("unknown", None),
        ("", None),
        ("10.0.0.256", None),
        (None, None),
    ],
)
def test_parse_address(text: str | None, want: str | None) -> None:
    got = parse_address(text)
    assert (None if got is None else str(got)) == want


def test_read_secrets_skips_blank_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "secrets"
    path.write_text("# Kazoo cluster\nkazoo:pw one\n\n   \n  other:x  \n#x:y\n", encoding="utf-8")
    assert read_secrets(path) == ["kazoo:pw one", "other:x"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("::", False), ("10.0.0.5", False),
     ("recorder.example.com", False)],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    "kwargs",
    [{"basic": [":x"]}, {"basic": [("a:b", "x")]}, {"tokens": [""]}, {"tokens": ["a/b"]},
     {"tokens": [" t"]}, {"allow": ["nonsense"]}, {"trusted_proxies": ["1.2.3.4/99"]}],
    ids=["empty-user", "colon-user", "empty-token", "slash-token", "space-token",
         "bad-allow", "bad-proxy"],
)
def test_guard_refuses_bad_settings(kwargs: dict[str, list[object]]) -> None:
    with pytest.raises(ValueError):
        Guard(**kwargs)  # type: ignore[arg-type]


def test_repr_hides_secrets() -> None:
    text = repr(Guard(basic=["kazoo:hunter2"], tokens=["s3cr3t-token"], allow=["10.0.0.0/8"]))
    assert "hunter2" not in text and "s3cr3t-token" not in text
    assert "10.0.0.0/8" in text


def test_empty_guard_lets_everyone_in() -> None:
    guard = Guard()
    assert not guard.enabled and not guard.authenticates
    assert guard.check(env(remote=None), NAME) == NAME


# -- Basic ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [None, "", "Basic", "Basic !!!", basic("kazoo", "wrong"), basic("KAZOO", "pw:1"),
     basic("kazoo", "pw:1 "), basic("kazoo", "pw:"), "Bearer pw:1", "Digest username=kazoo",
     "Basic " + base64.b64encode(b"kazoo:\xffpw").decode(), basic("", "")],
    ids=["absent", "empty", "scheme-only", "not-base64", "wrong-password", "user-case",
         "trailing-space", "prefix-of-password", "bearer", "digest", "not-utf8", "empty-pair"],
)
def test_basic_refuses(header: str | None) -> None:
    guard = Guard(basic=["kazoo:pw:1"])
    headers = {} if header is None else {"authorization": header}
    with pytest.raises(Unauthorized):
        guard.check(env(**headers), NAME)


def test_basic_accepts_any_configured_credential() -> None:
    guard = Guard(basic=["kazoo:pw:1", ("backup", "pässwörd")])
    assert guard.check(env(authorization=basic("kazoo", "pw:1")), NAME) == NAME
    assert guard.check(env(authorization=basic("backup", "pässwörd")), NAME) == NAME
    # The scheme is case-insensitive (RFC 9110 11.1).
    lower = "basic " + basic("kazoo", "pw:1").split(" ", 1)[1]
    assert guard.check(env(authorization=lower), NAME) == NAME


# -- URL token -----------------------------------------------------------------------


def test_token_as_first_segment_is_stripped() -> None:
    guard = Guard(tokens=["tok0", "tok1"])
    got = guard.check(env(), NAME)
    assert got == Name(Kind.CALL, ("acct",), "call_recording_abc.mp3")


def test_token_as_query_parameter_leaves_the_name() -> None:
    guard = Guard(tokens=["tok9"])
    name = Name(Kind.CALL, ("acct",), "call_recording_abc.mp3")
    pairs = (("from", "a"), ("token", "wrong"), ("token", "tok9"))
    assert guard.check(env(), name, pairs) == name


@pytest.mark.parametrize(
    ("segments", "pairs"),
    [
        ((), ()),
        (("acct", "tok1"), ()),  # only the first segment counts
        (("TOK1",), ()),
        (("tok1x",), ()),
        (("tok",), ()),
        ((), (("token", None),)),
        ((), (("token", ""),)),
        ((), (("Token", "tok1"),)),
        ((), (("recording", "tok1"),)),
    ],
    ids=["none", "not-first", "case", "longer", "prefix", "param-no-value", "param-empty",
         "param-case", "other-param"],
)
def test_token_refuses(
    segments: tuple[str, ...], pairs: tuple[tuple[str, str | None], ...]
) -> None:
    guard = Guard(tokens=["tok1"])
    with pytest.raises(Forbidden):
        guard.check(env(), Name(Kind.CALL, segments, "call_recording_abc.mp3"), pairs)


# -- allowlist and proxies -----------------------------------------------------------


@pytest.mark.parametrize(
    ("remote", "ok"),
    [("10.20.1.2", True), ("::ffff:10.20.1.2", True), ("2001:db8::5", True),
     ("10.21.0.1", False), ("127.0.0.1", False), ("2001:db9::5", False), (None, False),
     ("garbage", False)],
)
def test_allowlist(remote: str | None, ok: bool) -> None:
    guard = Guard(allow=["10.20.0.0/16", "2001:db8::/32"])
    if ok:
        assert guard.check(env(remote=remote), NAME) == NAME
    else:
        with pytest.raises(Forbidden):
            guard.check(env(remote=remote), NAME)


def test_forwarded_for_ignored_unless_the_peer_is_a_trusted_proxy() -> None:
    guard = Guard(allow=["10.20.0.0/16"])
    # Anyone can write the header: without a trusted proxy it changes nothing.
    with pytest.raises(Forbidden):
        guard.check(env(remote="192.0.2.1", x_forwarded_for="10.20.0.1"), NAME)
    proxied = Guard(allow=["10.20.0.0/16"], trusted_proxies=["172.16.0.0/12"])
    with pytest.raises(Forbidden):
        proxied.check(env(remote="192.0.2.1", x_forwarded_for="10.20.0.1"), NAME)


@pytest.mark.parametrize(
    ("remote", "xff", "client"),
    [
        ("172.16.0.1", "10.20.0.1", "10.20.0.1"),
        # A client-written left-most entry proves nothing: the right-most untrusted hop wins.
        ("172.16.0.1", "10.20.0.1, 192.0.2.9", "192.0.2.9"),
        # Chained trusted proxies are skipped.
        ("172.16.0.1", "192.0.2.9, 10.20.0.1, 172.16.0.2", "10.20.0.1"),
        # No header: the proxy itself.
        ("172.16.0.1", "", "172.16.0.1"),
        # Every hop a trusted proxy: the left-most.
        ("172.16.0.1", "172.16.0.3, 172.16.0.2", "172.16.0.3"),
        # A hop that is not an address: unknown.
        ("172.16.0.1", "10.20.0.1, unknown", None),
        ("172.16.0.1", "[2001:db8::1]:1234", "2001:db8::1"),
        ("192.0.2.1", "10.20.0.1", "192.0.2.1"),
    ],
    ids=["one-hop", "spoofed-left", "chain", "no-header", "all-trusted", "garbage-hop",
         "bracketed-v6", "untrusted-peer"],
)
def test_client_address_through_trusted_proxies(remote: str, xff: str, client: str | None) -> None:
    guard = Guard(trusted_proxies=["172.16.0.0/12"])
    got = guard.client_address(env(remote=remote, x_forwarded_for=xff))
    assert (None if got is None else str(got)) == client


# -- precedence -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remote", "segments", "auth", "raises"),
    [
        ("192.0.2.1", ("tok1",), basic("kazoo", "pw"), Forbidden),  # network first
        ("10.0.0.1", (), None, Forbidden),  # then the token, before Basic
        ("10.0.0.1", ("wrong",), basic("kazoo", "pw"), Forbidden),
        ("10.0.0.1", ("tok1",), None, Unauthorized),  # then Basic
        ("10.0.0.1", ("tok1",), basic("kazoo", "nope"), Unauthorized),
        ("10.0.0.1", ("tok1",), basic("kazoo", "pw"), None),
    ],
    ids=["outside-net", "no-token-no-basic", "wrong-token", "no-basic", "wrong-basic", "all-ok"],
)
def test_all_mechanisms_must_pass_in_order(
    remote: str, segments: tuple[str, ...], auth: str | None, raises: type[Exception] | None
) -> None:
    guard = Guard(basic=["kazoo:pw"], tokens=["tok1"], allow=["10.0.0.0/8"])
    environ = env(remote=remote, **({"authorization": auth} if auth else {}))
    name = Name(Kind.CALL, segments, "call_recording_x.mp3")
    if raises is None:
        assert guard.check(environ, name) == Name(Kind.CALL, (), "call_recording_x.mp3")
    else:
        with pytest.raises(raises):
            guard.check(environ, name)


# -- through the middleware -------------------------------------------------------------


def _client(root: Path, guard: Guard, **options: object) -> Client:
    app = KazooRecordings(_host, DirectoryStore(root), prefix="/kzr", guard=guard,
                          **options)  # type: ignore[arg-type]
    return Client(LintMiddleware(app))


def _call(
    client: Client, method: str, url: str, **kwargs: object
) -> tuple[int, dict[str, str], bytes]:
    """One request through the test client: status, headers, body; the response closed."""
    resp = client.open(url, method=method, **kwargs)  # type: ignore[arg-type]
    try:
        return resp.status_code, dict(resp.headers), resp.get_data()
    finally:
        resp.close()


def _host(environ: dict[str, object], start_response: object) -> list[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])  # type: ignore[operator]
    return [b"host"]


def test_middleware_basic_401_stores_nothing_then_stores(tmp_path: Path) -> None:
    root = tmp_path / "root"
    client = _client(root, Guard(basic=["kazoo:pw"]), read_back=True)
    url = "/kzr/call_recording_abc.mp3?recording_id=r1"
    for headers in ({}, {"Authorization": basic("kazoo", "bad")}):
        status, headers_out, _ = _call(client, "PUT", url, data=BODY, headers=headers)
        assert status == 401
        assert headers_out["WWW-Authenticate"].startswith("Basic realm=")
    assert visible_files(root) == []
    assert _call(client, "PUT", url, data=BODY,
                 headers={"Authorization": basic("kazoo", "pw")})[0] == 201
    assert len(visible_files(root)) == 2  # the recording and its sidecar
    # Reads are guarded as well.
    assert _call(client, "GET", url)[0] == 401
    status, _, data = _call(client, "GET", url, headers={"Authorization": basic("kazoo", "pw")})
    assert status == 200 and data == BODY


def test_middleware_token_segment_is_not_part_of_the_stored_name(tmp_path: Path) -> None:
    root = tmp_path / "root"
    client = _client(root, Guard(tokens=["s3cr3t"]), attachments_prefix="/store")
    assert _call(client, "PUT", "/kzr/acct/call_recording_abc.mp3", data=BODY)[0] == 403
    assert _call(client, "PUT", "/kzr/wrong/call_recording_abc.mp3", data=BODY)[0] == 403
    assert _call(client, "PUT", "/store/acct/doc/file.mp3", data=BODY)[0] == 403
    assert visible_files(root) == []
    assert _call(client, "PUT", "/kzr/s3cr3t/acct/call_recording_abc.mp3", data=BODY)[0] == 201
    assert _call(client, "PUT", "/store/s3cr3t/acct/doc/file.mp3", data=BODY)[0] == 201
    sidecars = [json.loads(p.read_text()) for p in visible_files(root) if p.name.endswith(".json")]
    assert sorted(tuple(s["segments"]) for s in sidecars) == [("acct",), ("acct", "doc")]
    assert all("s3cr3t" not in p.as_posix() for p in visible_files(root))
    # The same recording through the 4.x query form is the same name: one copy.
    assert _call(client, "PUT", "/kzr/acct/call_recording_abc.mp3?token=s3cr3t",
                 data=BODY)[0] == 200
    assert len(visible_files(root)) == 4


def test_middleware_allowlist(tmp_path: Path) -> None:
    root = tmp_path / "root"
    client = _client(root, Guard(allow=["10.0.0.0/8"]))
    url = "/kzr/call_recording_abc.mp3"
    status, headers, _ = _call(client, "PUT", url, data=BODY,
                               environ_overrides={"REMOTE_ADDR": "192.0.2.1"})
    assert status == 403
    assert "WWW-Authenticate" not in headers
    assert visible_files(root) == []
    assert _call(client, "PUT", url, data=BODY,
                 environ_overrides={"REMOTE_ADDR": "10.9.8.7"})[0] == 201


# -- a real server ------------------------------------------------------------------------


def _request(port: int, method: str, path: str, body: bytes = b"",
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body,
                     headers={"Content-Type": "audio/mpeg", **(headers or {})})
        resp = conn.getresponse()
        resp.read()
        return resp.status, dict(resp.getheaders())
    finally:
        conn.close()


def _httpc_put(url: str, body: bytes) -> int:
    """PUT as Kazoo 4.x does: Erlang/OTP httpc, credentials in the URL."""
    script = (
        "inets:start(),"
        f'R = httpc:request(put, {{"{url}", [], "audio/mpeg", <<"{body.decode("ascii")}">>}},'
        " [{timeout, 20000}], []),"
        "case R of {ok, {{_, S, _}, _, _}} -> io:format(\"~p\", [S]);"
        " E -> io:format(\"~p\", [E]) end, halt()."
    )
    out = subprocess.run(["erl", "-noshell", "-eval", script], capture_output=True, text=True,
                         timeout=60, check=True)
    return int(out.stdout.strip())


def _curl_put(url: str, user: str, body: bytes) -> int:
    """PUT as FreeSWITCH's http_put does: libcurl, Basic from the user name and password."""
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", "-", "-u", user,
         "-H", "Content-Type: audio/mpeg", "--max-time", "20", url],
        input=body, capture_output=True, timeout=60, check=True,
    )
    return int(out.stdout)


def test_serve_basic_auth_with_httpc_and_curl(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    with serve(tmp_path, "--basic-auth", "kazoo:pw-1_x", "--basic-auth", "fs:a:b:c",
               root=root) as server:
        path = "/call_recording_httpc.mp3?recording_id=r1"
        status, headers = _request(server.port, "PUT", path, BODY)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        status, _ = _request(server.port, "PUT", path, BODY,
                             {"Authorization": basic("kazoo", "pw-1")})
        assert status == 401
        assert _curl_put(f"{server.url}{path}", "fs:a:b", BODY) == 401
        assert visible_files(root) == []
        # httpc (Kazoo 4.x): `user:pass@` in the URL becomes the Authorization header.
        assert _httpc_put(f"http://kazoo:pw-1_x@127.0.0.1:{server.port}{path}",
                          b"httpc body") == 201
        # libcurl (FreeSWITCH): a password may hold colons.
        assert _curl_put(f"{server.url}/call_recording_curl.wav", "fs:a:b:c", BODY) == 201
    stored = sorted(p for p in visible_files(root) if not p.name.endswith(".json"))
    assert [p.name for p in stored] == ["call_recording_curl.wav", "call_recording_httpc.mp3"]
    assert [p.read_bytes() for p in stored] == [BODY, b"httpc body"]


def test_httpc_sends_no_credentials_for_a_password_with_a_colon(tmp_path: Path) -> None:
    """Why the docs say: Kazoo 4.x passwords must not hold ':' (httpc drops them)."""
    root = tmp_path / "recordings"
    with serve(tmp_path, "--basic-auth", "kazoo:pw:1", root=root) as server:
        url = f"http://kazoo:pw:1@127.0.0.1:{server.port}/call_recording_x.mp3"
        assert _httpc_put(url, b"never stored") == 401
    assert visible_files(root) == []


def test_serve_tokens_from_env_and_file(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    token_file = tmp_path / "tokens"
    token_file.write_text("# rotated monthly\nfrom-file\n", encoding="utf-8")
    # KZR_<OPTION>, as the manual promises for every command's options.
    environ = {"KZR_TOKEN": "from-env"}
    with serve(tmp_path, "--prefix", "/kzr", "--token-file", str(token_file), root=root,
               env=environ) as server:
        assert _request(server.port, "PUT", "/kzr/call_recording_a.mp3", BODY)[0] == 403
        assert _request(server.port, "PUT", "/kzr/nope/call_recording_a.mp3", BODY)[0] == 403
        assert _request(server.port, "PUT", "/kzr/call_recording_a.mp3?token=nope", BODY)[0] == 403
        assert visible_files(root) == []
        assert _request(server.port, "PUT", "/kzr/from-env/call_recording_a.mp3", BODY)[0] == 201
        assert _request(server.port, "PUT", "/kzr/from-file/call_recording_b.mp3", BODY)[0] == 201
        assert _request(server.port, "PUT", "/kzr/call_recording_c.mp3?token=from-file",
                        BODY)[0] == 201
    assert len([p for p in visible_files(root) if p.name.endswith(".mp3")]) == 3


def test_serve_allowlist_and_trusted_proxy(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    with serve(tmp_path, "--allow", "10.0.0.0/8", root=root) as server:
        # Loopback is outside, and X-Forwarded-For from an untrusted peer changes nothing.
        assert _request(server.port, "PUT", "/call_recording_a.mp3", BODY,
                        {"X-Forwarded-For": "10.1.2.3"})[0] == 403
    assert visible_files(root) == []
    with serve(tmp_path, "--allow", "10.0.0.0/8", "--trust-proxy", "127.0.0.1",
               root=root) as server:
        assert _request(server.port, "PUT", "/call_recording_a.mp3", BODY)[0] == 403
        assert _request(server.port, "PUT", "/call_recording_a.mp3", BODY,
                        {"X-Forwarded-For": "10.1.2.3, 192.0.2.1"})[0] == 403
        assert visible_files(root) == []
        assert _request(server.port, "PUT", "/call_recording_a.mp3", BODY,
                        {"X-Forwarded-For": "192.0.2.1, 10.1.2.3"})[0] == 201


@pytest.mark.parametrize(
    ("args", "warned"),
    [
        (["--host", "0.0.0.0"], True),
        (["--host", "::"], True),
        (["--host", "0.0.0.0", "--allow", "10.0.0.0/8"], True),
        (["--host", "0.0.0.0", "--basic-auth", "kazoo:Zq9-hidden"], False),
        (["--host", "0.0.0.0", "--token", "Tk7-hidden"], False),
        (["--host", "127.0.0.1"], False),
    ],
    ids=["any-v4", "any-v6", "allow-only", "basic", "token", "loopback"],
)
def test_serve_warns_when_exposed_without_authentication(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], warned: bool
) -> None:
    started: list[dict[str, object]] = []
    # Stop short of gunicorn: the warning is printed before the server starts.
    monkeypatch.setattr(importlib.import_module("kzr_wsgi.cli.serve"), "run",
                        lambda app, options: started.append(options))
    result = CliRunner().invoke(cli.main, ["serve", "--root", str(tmp_path / "r"), *args])
    assert result.exit_code == 0, result.output
    assert len(started) == 1
    assert ("WARNING" in result.output and "no authentication" in result.output) is warned
    assert "hidden" not in result.output  # secrets are never printed
    guarded = len(args) > 2  # a guard option follows `--host H`
    assert ("access control: Guard(" in result.output) is guarded


def test_serve_refuses_bad_credentials_setting(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli.main, ["serve", "--root", str(tmp_path / "r"), "--basic-auth", "nocolon"]
    )
    assert result.exit_code != 0
    assert "USER:PASS" in result.output


def test_a_query_token_never_reaches_the_disk(tmp_path: Path) -> None:
    root = tmp_path / "r"
    app = KazooRecordings(lambda e, s: [], DirectoryStore(root), guard=Guard(tokens=["S3CR3T-tok"]))
    client = Client(app)
    for query in ("token=S3CR3T-tok&call_id=a", "call_id=a&%74oken=S3CR3T-tok"):
        reply = client.put(f"/call_recording_a.mp3?{query}", data=b"body")
        assert reply.status_code in (200, 201)
    sidecars = list(root.rglob("*.kzr.json"))
    assert len(sidecars) == 1
    record = json.loads(sidecars[0].read_text())
    assert record["query"] == "call_id=a"
    assert record["metadata"]["fields"] == {"call_id": "a"}
    assert not [p for p in root.rglob("*") if p.is_file() and b"S3CR3T" in p.read_bytes()]
