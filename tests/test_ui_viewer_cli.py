"""``kzr-wsgi viewer add|rm|passwd`` and what ``serve --ui`` says of the secrets it reads."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import argon2
import pytest
from click.testing import CliRunner
from test_cli import start

from kzr_wsgi import cli
from kzr_wsgi.ui.passwords import SecretKind
from kzr_wsgi.ui.viewers import Viewers, read_viewer_file


def run(args: list[str], password: str | None = "n3w-secret",
        env: dict[str, str] | None = None) -> object:
    return CliRunner().invoke(cli.main, ["viewer", *args],
                              input=None if password is None else password + "\n", env=env)


def test_add_hashes_the_password_read_from_standard_input(tmp_path: Path) -> None:
    path = tmp_path / "viewers"
    result = run(["add", "acme", "--account", "a1", "--account", "a2", "--share",
                  "--file", str(path)])
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    text = path.read_text()
    assert "n3w-secret" not in text and text.startswith("acme:$argon2id$")
    assert text.split()[1:] == ["a1,a2", "share"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    viewer = Viewers(read_viewer_file(path)).check("acme", "n3w-secret")
    assert viewer is not None and viewer.kind is SecretKind.ARGON2ID and viewer.share
    result = run(["add", "ops", "--bcrypt", "--viewer-file", str(path)], password="ops-pw")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    ops = Viewers(read_viewer_file(path)).check("ops", "ops-pw")
    assert ops is not None and ops.kind is SecretKind.BCRYPT and ops.accounts is None
    assert run(["add", "ops", "--file", str(path)]).exit_code != 0  # type: ignore[attr-defined]


def test_passwd_and_rm(tmp_path: Path) -> None:
    path = tmp_path / "viewers"
    path.write_text("# ours\nacme:old-plain a1 share\nops:pw\n")
    result = run(["passwd", "acme", "--file", str(path)], password="fresh-pw")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    lines = path.read_text().splitlines()
    assert lines[0] == "# ours" and lines[2] == "ops:pw"
    assert lines[1].split()[1:] == ["a1", "share"]
    viewers = Viewers(read_viewer_file(path))
    assert viewers.check("acme", "fresh-pw") is not None
    assert viewers.check("acme", "old-plain") is None
    assert run(["rm", "ops", "--file", str(path)], None).exit_code == 0  # type: ignore[attr-defined]
    assert [v.user for v in read_viewer_file(path)] == ["acme"]
    missing = run(["rm", "nobody", "--file", str(path)], None)
    assert missing.exit_code != 0 and "no viewer 'nobody'" in missing.output  # type: ignore[attr-defined]


def test_a_password_that_uploads_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "viewers"
    path.write_text("kazoo:old\n")
    creds = tmp_path / "uploads"
    creds.write_text("kazoo:upload-pw\n")
    config = tmp_path / "kzr.toml"
    config.write_text(f'basic-auth-file = "{creds}"\nviewer-file = "{path}"\n')
    for args, env in ((["--basic-auth", "kazoo:upload-pw", "--file", str(path)], None),
                      (["--basic-auth-file", str(creds), "--file", str(path)], None),
                      (["--config", str(config)], None),
                      (["--file", str(path)], {"KZR_BASIC_AUTH": "other:x kazoo:upload-pw"})):
        for command in (["add", "kazoo"], ["passwd", "kazoo"]):
            path.write_text("" if command[0] == "add" else "kazoo:old\n")
            result = run([*command, *args], password="upload-pw", env=env)
            assert result.exit_code != 0, (command, args)  # type: ignore[attr-defined]
            assert "upload credential" in result.output  # type: ignore[attr-defined]
            assert "upload-pw" not in path.read_text()
    path.write_text("kazoo:old\n")
    assert run(["passwd", "kazoo", "--config", str(config)],
               password="a-viewer-pw").exit_code == 0  # type: ignore[attr-defined]


# -- serve: the secrets it is given ----------------------------------------------------------


def test_serve_takes_htpasswd_bcrypt_and_argon2id_and_warns_on_the_rest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = subprocess.run(["htpasswd", "-nbB", "-C", "10", "acme", "acme-pw"], check=True,
                          capture_output=True, text=True).stdout.strip()
    weak = subprocess.run(["htpasswd", "-nbB", "globex", "globex-pw"], check=True,
                          capture_output=True, text=True).stdout.strip()
    assert made.startswith("acme:$2y$10$") and weak.startswith("globex:$2y$05$")
    hashed = argon2.PasswordHasher().hash("ops-pw")
    viewers = tmp_path / "viewers"
    viewers.write_text(f"ops:{hashed} * share\n{made} acct-1\n{weak}\nplain:text-pw\n")
    result, started = start(monkeypatch, ["--root", str(tmp_path / "rec"), "--ui",
                                          "--viewer-file", str(viewers), "--viewer", "cli:pw2"])
    assert result.exit_code == 0, result.output
    [(app, _options)] = started
    for user, password in (("ops", "ops-pw"), ("acme", "acme-pw"), ("globex", "globex-pw"),
                           ("plain", "text-pw"), ("cli", "pw2")):
        assert app.viewers.check(user, password) is not None, user
    out = result.output
    assert f"{viewers}: line 3: viewer 'globex' has a bcrypt hash of cost 5" in out
    assert f"{viewers}: line 4: viewer 'plain' has a plaintext password" in out
    assert "viewer 'cli' has a plaintext password" in out
    assert "line 1:" not in out and "line 2:" not in out
    assert "text-pw" not in out and hashed not in out


@pytest.mark.parametrize("secret", ["$apr1$abc$def", "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
                                    "$1$ab$cd", "$5$ab$cd", "$6$ab$cd"])
def test_serve_refuses_a_hash_kind_it_cannot_check_naming_the_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    viewers = tmp_path / "viewers"
    viewers.write_text(f"ops:pw\n# a comment\nacme:{secret} acct-1\n")
    result, started = start(monkeypatch, ["--root", str(tmp_path / "rec"), "--ui",
                                          "--viewer-file", str(viewers)])
    assert result.exit_code != 0 and not started
    assert f"{viewers}: line 3:" in result.output and "is not taken" in result.output
    assert secret not in result.output


def test_serve_refuses_a_plaintext_viewer_that_uploads_naming_the_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    viewers = tmp_path / "viewers"
    viewers.write_text("ops:pw\nkazoo:upload-pw acct-1\n")
    result, started = start(monkeypatch, ["--root", str(tmp_path / "rec"), "--ui",
                                          "--viewer-file", str(viewers),
                                          "--basic-auth", "kazoo:upload-pw"])
    assert result.exit_code != 0 and not started
    assert f"{viewers}: line 2: viewer 'kazoo' has the same credentials as an upload" \
        in result.output


def test_serve_warns_of_loopback_without_trust_proxy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["--root", str(tmp_path / "rec"), "--ui", "--viewer", "ops:pw"]
    result, _ = start(monkeypatch, base)
    assert "listens on loopback without --trust-proxy" in result.output
    assert "X-Forwarded-Proto" in result.output
    result, [(app, _opts)] = start(monkeypatch, [*base, "--trust-proxy", "127.0.0.1/32",
                                                 "--public-url", "https://rec.example.net/"])
    assert result.exit_code == 0, result.output
    assert "without --trust-proxy" not in result.output
    assert app.shares.public_url == "https://rec.example.net"
    bad, started = start(monkeypatch, [*base, "--public-url", "rec.example.net"])
    assert bad.exit_code == 2 and not started and "--public-url" in bad.output


def test_serve_sets_sessions_exports_and_the_access_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, [(app, options)] = start(monkeypatch, [
        "--root", str(tmp_path / "rec"), "--ui", "--viewer", "ops:pw", "--session-idle", "10m",
        "--session-max", "2h", "--export-max", "50", "--access-log", "-"])
    assert result.exit_code == 0, result.output
    assert (app.sessions.idle, app.sessions.max_age) == (600, 7200)
    assert app.exports.export_max == 50
    assert app.access is not None and app.access.where == f"{tmp_path / 'rec' / '.kzr'}/access/"
    assert options["accesslog"] == "-" and options["logger_class"].__name__ == "MaskingLogger"
    assert callable(options["on_reload"]) and callable(options["worker_exit"])
    assert os.environ.get("KZR_UI_SECRET") is None
