"""``serve --ui``: its options, and the refusals at start-up (short of starting gunicorn)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli import SERVE, start

from kzr_wsgi import KazooRecordings
from kzr_wsgi.cli import serving
from kzr_wsgi.ui import SearchUI


def test_serve_ui_mounts_the_page_in_front_of_the_receiver(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    viewers = tmp_path / "viewers"
    viewers.write_text("# customers\nacme:pw1 acct-1,acct-2\n")
    result, started = start(monkeypatch, [
        "--root", str(tmp_path / "rec"), "--ui", "--ui-prefix", "/search/", "--viewer", "ops:pw",
        "--viewer-file", str(viewers), "--basic-auth", "kazoo:upload"])
    assert result.exit_code == 0, result.output
    [(app, options)] = started
    assert isinstance(app, SearchUI) and isinstance(app.app, KazooRecordings)
    assert app.prefix == "/search"
    assert [(v.user, v.accounts) for v in app.viewers] == [("ops", None),
                                                           ("acme", ("acct-1", "acct-2"))]
    assert "certfile" not in options
    assert ("search page at http://127.0.0.1:8080/search/ for 2 viewer(s), 1 limited to their "
            "accounts\n") in result.output
    assert "pw1" not in result.output and "ops:pw" not in result.output


def test_viewers_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    viewers = tmp_path / "viewers"
    viewers.write_text("acme:pw1 acct-1\n")
    result, started = start(monkeypatch, ["--root", str(tmp_path / "rec"), "--ui"], env={
        "KZR_VIEWER": "ops:pw other:pw2", "KZR_VIEWER_FILE": str(viewers)})
    assert result.exit_code == 0, result.output
    [(app, _options)] = started
    assert [v.user for v in app.viewers] == ["ops", "other", "acme"]


def test_tls_options_reach_gunicorn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    result, started = start(monkeypatch, ["--root", str(tmp_path / "rec"),
                                          "--certfile", str(cert), "--keyfile", str(key)])
    assert result.exit_code == 0, result.output
    [(_app, options)] = started
    assert (options["certfile"], options["keyfile"]) == (str(cert), str(key))
    assert "listening on https://" in result.output


@pytest.mark.parametrize("args, message", [
    (["--ui"], "--ui needs a viewer: add --viewer USER:PASS"),
    (["--viewer", "ops:pw"], "need --ui"),
    (["--ui", "--viewer", "kazoo:upload", "--basic-auth", "kazoo:upload"],
     "viewer 'kazoo' has the same credentials as an upload credential"),
    (["--ui", "--viewer", "nocolon"], "USER:PASS"),
    (["--ui", "--viewer", "ops:pw", "--ui-prefix", "/"], "--ui-prefix must be a path"),
    (["--ui", "--viewer", "ops:pw", "--prefix", "/ui/kazoo"], "would hide the uploads"),
    (["--ui", "--viewer", "ops:pw", "--s3", "s3://bucket/x"], "--catalog postgresql://"),
    (["--certfile", __file__], "--certfile and --keyfile go together"),
], ids=["no-viewer", "viewer-without-ui", "viewer-is-uploader", "bad-viewer", "root-prefix",
        "prefix-under-ui", "s3-without-catalog", "cert-without-key"])
def test_refusals_at_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              args: list[str], message: str) -> None:
    root = [] if "--s3" in args else ["--root", str(tmp_path / "rec")]
    result, started = start(monkeypatch, [*root, *args],
                            env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
                                 "AWS_DEFAULT_REGION": "us-east-1"})
    assert result.exit_code != 0
    assert message in result.output
    assert not started


@pytest.mark.parametrize("text, line", [("ops:pw\n\n# c\nbroken\n", 4), ("a:b x y\n", 1)])
def test_a_malformed_viewer_file_refuses_start_up_naming_the_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, line: int) -> None:
    viewers = tmp_path / "viewers"
    viewers.write_text(text)
    result, started = start(monkeypatch, ["--root", str(tmp_path / "rec"), "--ui",
                                          "--viewer-file", str(viewers)])
    assert result.exit_code != 0 and not started
    assert f"{viewers}: line {line}:" in result.output


@pytest.mark.slow
def test_serve_terminates_tls_itself(tmp_path: Path) -> None:
    """A real ``serve --ui --certfile --keyfile``: the API over HTTPS, and no plain HTTP."""
    import base64
    import http.client
    import ssl
    import subprocess

    from servers import serve

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.create_default_context(cafile=str(cert))
    with serve(tmp_path, "--ui", "--viewer", "ops:pw", "--certfile", str(cert),
               "--keyfile", str(key), "--workers", "1") as server:
        token = base64.b64encode(b"ops:pw").decode()
        for headers, status in (({}, 401), ({"Authorization": f"Basic {token}"}, 200)):
            conn = http.client.HTTPSConnection(server.host, server.port, context=context,
                                               timeout=20)
            conn.request("GET", "/ui/api/recordings", headers=headers)
            assert conn.getresponse().status == status
            conn.close()
        plain = http.client.HTTPConnection(server.host, server.port, timeout=20)
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            plain.request("GET", "/ui/")
            plain.getresponse()
        assert "listening on https://" in server.log()


def test_ui_settings_from_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    viewers = tmp_path / "viewers"
    viewers.write_text("acme:pw1 acct-1\n")
    config = tmp_path / "kzr.toml"
    config.write_text(f'root = "{tmp_path / "rec"}"\nui = true\nui-prefix = "/listen"\n'
                      f'viewer = ["ops:pw"]\nviewer-file = "{viewers}"\n')
    result, started = start(monkeypatch, ["--config", str(config)])
    assert result.exit_code == 0, result.output
    [(app, _options)] = started
    assert isinstance(app, SearchUI) and app.prefix == "/listen"
    assert [v.user for v in app.viewers] == ["ops", "acme"]


def test_a_short_ui_secret_is_refused_naming_the_option(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, started = start(monkeypatch, ["--root", str(tmp_path / "rec"), "--ui",
                                          "--viewer", "ops:pw", "--ui-secret", "15-bytes-secret"])
    assert result.exit_code == 2 and not started
    assert "--ui-secret must be at least 16 bytes" in result.output
    assert not (tmp_path / "rec").exists()


def test_a_ui_prefix_that_hides_the_metrics_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, started = start(monkeypatch, ["--root", str(tmp_path / "rec"), "--ui",
                                          "--viewer", "ops:pw", "--ui-prefix", "/metrics/",
                                          "--metrics"])
    assert result.exit_code == 2 and not started
    assert "--ui-prefix /metrics/ would hide /metrics" in result.output
    # What is checked is the prefix rule; the metrics themselves are test_metrics.py's (an
    # in-process serve cannot choose prometheus_client's multiprocess mode once another
    # test has imported it).
    monkeypatch.setattr(SERVE, "metrics_dir", lambda root: None)
    monkeypatch.setattr(serving, "_metrics", lambda allow, proxies: None)
    result, started = start(monkeypatch, ["--root", str(tmp_path / "rec"), "--ui",
                                          "--viewer", "ops:pw", "--ui-prefix", "/metrics-ui",
                                          "--metrics"])
    assert result.exit_code == 0, result.output
