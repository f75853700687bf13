"""`kzr-wsgi serve`'s settings, short of starting gunicorn, and the middleware's own guards."""

from __future__ import annotations

import importlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from kzr_wsgi import DirectoryStore, FanOut, KazooRecordings, cli
from kzr_wsgi.cli.params import CommandLineOnly
from kzr_wsgi.errors import ReadNotSupported
from kzr_wsgi.recording import Recording

#: The module of ``serve`` (``kzr_wsgi.cli.serve`` is the command itself).
SERVE = importlib.import_module("kzr_wsgi.cli.serve")

#: The moto server fixtures (``moto_endpoint``, ``s3_bucket``) live there.
pytest_plugins = ["s3server"]


def start(monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str] | None = None
          ) -> tuple[click.testing.Result, list[tuple[Any, dict[str, Any]]]]:
    """Invoke ``serve`` with gunicorn replaced by a recorder of what it would have run."""
    started: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(SERVE, "run", lambda app, options: started.append((app, options)))
    result = CliRunner().invoke(cli.main, ["serve", *args], env=env)
    return result, started


@pytest.mark.parametrize(
    "text, size",
    [("1048576", 1 << 20), ("500M", 500 << 20), ("2G", 2 << 30), ("2GiB", 2 << 30),
     ("1.5k", 1536), ("64KB", 64 << 10)],
)
def test_size_parses_binary_units(text: str, size: int) -> None:
    assert cli.Size().convert(text, None, None) == size


@pytest.mark.parametrize("text", ["", "-1", "0", "lots", "2X"])
def test_size_refuses_nonsense(text: str) -> None:
    with pytest.raises(click.BadParameter):
        cli.Size().convert(text, None, None)


def test_serve_wires_its_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "new" / "root"  # need not exist
    result, started = start(monkeypatch, [
        "--root", str(root), "--port", "9999", "--prefix", "/kzr", "--workers", "3",
        "--threads", "4", "--max-size", "10M", "--read-back", "--attachments-prefix", "/store",
    ])
    assert result.exit_code == 0, result.output
    [(app, options)] = started
    assert isinstance(app, KazooRecordings)
    assert isinstance(app.handler, DirectoryStore) and app.handler.root == root
    assert root.is_dir()
    assert app.router.prefix == ("kzr",) and app.router.attachments_prefix == ("store",)
    assert app.router.read_back and app.router.accept_caller
    assert app.max_size == 10 << 20
    assert options["bind"] == ["127.0.0.1:9999"]
    assert (options["workers"], options["threads"], options["worker_class"]) == (3, 4, "gthread")
    assert f"storing under {root}" in result.output
    assert "listening on http://127.0.0.1:9999/kzr" in result.output


def test_serve_reads_kzr_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "from-env"
    result, started = start(monkeypatch, [], env={"KZR_ROOT": str(root), "KZR_PORT": "8123",
                                                  "KZR_MAX_SIZE": "1M"})
    assert result.exit_code == 0, result.output
    [(app, options)] = started
    assert app.handler.root == root and app.max_size == 1 << 20
    assert options["bind"] == ["127.0.0.1:8123"]


def test_s3_endpoint_without_s3_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, started = start(monkeypatch, ["--root", str(tmp_path), "--s3-endpoint", "http://x"])
    assert result.exit_code != 0 and "--s3-endpoint needs --s3" in result.output
    assert started == []


def test_s3_with_an_explicit_root_fans_out_bucket_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_bucket: tuple[Any, str],
    moto_endpoint: str,
) -> None:
    # A real bucket: serve checks it takes writes before it would listen.
    args = ["--s3", f"s3://{s3_bucket[1]}/kazoo", "--s3-endpoint", moto_endpoint]
    result, started = start(monkeypatch, ["--root", str(tmp_path / "d"), *args])
    assert result.exit_code == 0, result.output
    handler = started[0][0].handler
    assert isinstance(handler, FanOut)
    assert [type(s).__name__ for s in handler.stores] == ["S3Store", "DirectoryStore"]
    # Without --root, S3 alone, and nothing made on the local disk.
    monkeypatch.chdir(tmp_path)
    result, started = start(monkeypatch, args)
    assert result.exit_code == 0, result.output
    assert type(started[0][0].handler).__name__ == "S3Store"
    assert not (tmp_path / "recordings").exists()


def test_a_mount_that_must_read_refuses_a_handler_that_cannot(tmp_path: Path) -> None:
    def write_only(recording: Recording) -> None:
        recording.stream.read()

    with pytest.raises(ReadNotSupported):
        KazooRecordings(lambda e, s: [], write_only, read_back=True)
    with pytest.raises(ReadNotSupported):
        KazooRecordings(lambda e, s: [], write_only, attachments_prefix="/store")
    KazooRecordings(lambda e, s: [], write_only)  # uploads only: fine


def test_wrapping_twice_at_one_prefix_is_refused(tmp_path: Path) -> None:
    once = KazooRecordings(lambda e, s: [], DirectoryStore(tmp_path), prefix="/kzr")
    with pytest.raises(ValueError, match="already wrapped"):
        KazooRecordings(once, DirectoryStore(tmp_path), prefix="/kzr/")
    KazooRecordings(once, DirectoryStore(tmp_path), prefix="/other")  # a second mount: fine


# -- the environment: one naming for every command ---------------------------------------

#: What click's automatic prefix named these options before the one naming (where that
#: is not KZR_<COMMAND>_<OPTION>): they keep working.
EARLIER = {
    ("ls", "--json"): "KZR_LS_AS_JSON", ("ls", "--account"): "KZR_LS_ACCOUNT_ID",
    ("ls", "--flag"): "KZR_LS_FLAGS", ("prune", "--account"): "KZR_PRUNE_ACCOUNTS",
    ("prune", "--kind"): "KZR_PRUNE_KINDS", ("hold add", "--account"): "KZR_HOLD_ADD_ACCOUNT_ID",
    ("hold ls", "--json"): "KZR_HOLD_LS_AS_JSON", ("audit", "--json"): "KZR_AUDIT_AS_JSON",
    ("check", "--json"): "KZR_CHECK_AS_JSON", ("sweep", "--older-than"): "KZR_SWEEP_AGE",
    ("serve", "--metrics"): "KZR_METRICS_ON", ("serve", "--ui"): "KZR_UI_ON",
    ("serve", "--notify-url"): "KZR_NOTIFY_URLS",
    **{(command, "--s3"): "KZR_S3_URL" for command in (
        "serve", "ls", "reindex", "verify", "prune", "sweep", "audit", "hold add", "hold rm",
        "hold ls")},
}


def every_option() -> list[tuple[str, click.Command, click.Option, str]]:
    """(command, the command, the option, its long name) for every command of kzr-wsgi."""
    found = []
    pending: list[tuple[str, click.Command]] = [("", cli.main)]
    while pending:
        name, command = pending.pop()
        if isinstance(command, click.Group):
            pending += [(f"{name} {sub}".strip(), c) for sub, c in command.commands.items()]
        for param in command.params:
            longs = [o for o in getattr(param, "opts", ()) if o.startswith("--")]
            if isinstance(param, click.Option) and param.expose_value and longs \
                    and not isinstance(param, CommandLineOnly):
                found.append((name, command, param, longs[0]))
    return found


def test_command_line_only_options_read_no_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    erase = cli.main.commands["erase"]
    only = {p.opts[0] for p in erase.params if isinstance(p, CommandLineOnly)}
    assert only == {"--number", "--call-id", "--account", "--id", "--request", "--dry-run",
                    "--receipt", "--except-held", "--entire-account", "--status"}
    for param in erase.params:
        if isinstance(param, CommandLineOnly):
            for variable in (_env_name("erase", param.opts[0][2:]), _env_name(param.opts[0][2:])):
                monkeypatch.setenv(variable, "from the environment")
            ctx = click.Context(erase, info_name="erase")
            assert param.resolve_envvar_value(ctx) is None, param.opts


def _env_name(*parts: str) -> str:
    return "_".join(["KZR", *parts]).upper().replace("-", "_").replace(" ", "_")


def test_every_option_of_every_command_reads_its_names(monkeypatch: pytest.MonkeyPatch) -> None:
    options = every_option()
    assert len(options) >= 90
    assert {name for name, *_ in options} >= {"serve", "ls", "prune", "hold add", "check"}
    for name, command, option, long in options:
        own, general = _env_name(name, long[2:]), _env_name(long[2:])
        ctx = click.Context(command, info_name=name.split()[-1])
        expected = [own, general, *([EARLIER[name, long]] if (name, long) in EARLIER else [])]
        for variable in expected:
            monkeypatch.setenv(variable, f"from {variable}")
            assert option.resolve_envvar_value(ctx) == f"from {variable}", (name, long)
            monkeypatch.delenv(variable)
        # The command's own name wins over the one every command shares, and both over
        # the earlier names.
        for variable in reversed(expected):
            monkeypatch.setenv(variable, f"from {variable}")
        assert option.resolve_envvar_value(ctx) == f"from {own}", (name, long)
        for variable in expected:
            monkeypatch.delenv(variable)


def test_no_variable_names_two_different_options() -> None:
    meaning: dict[str, set[str]] = {}
    for _, _, option, long in every_option():
        for variable in option.envvar or ():
            meaning.setdefault(variable, set()).add(long)
    assert meaning["KZR_ROOT"] == {"--root"} and meaning["KZR_JSON"] == {"--json"}
    assert {v: m for v, m in meaning.items() if len(m) > 1} == {}


def test_one_variable_serves_every_command_and_the_command_s_own_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"KZR_OLDER_THAN": "7d", "KZR_PRUNE_OLDER_THAN": "90d", "KZR_ROOT": "/srv/r"}
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    prune = cli.main.commands["prune"].make_context("prune", ["--dry-run"])
    sweep = cli.main.commands["sweep"].make_context("sweep", [])
    assert prune.params["older_than"] == timedelta(days=90)
    assert sweep.params["age"] == timedelta(days=7)
    assert prune.params["root"] == sweep.params["root"] == "/srv/r"
    # The earlier names: read, after the command's own and the shared one.
    monkeypatch.setenv("KZR_SWEEP_AGE", "3d")
    assert cli.main.commands["sweep"].make_context("sweep", []).params["age"] == timedelta(days=7)
    monkeypatch.delenv("KZR_OLDER_THAN")
    assert cli.main.commands["sweep"].make_context("sweep", []).params["age"] == timedelta(days=3)


def test_serve_reads_its_own_names_and_the_shared_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    result, started = start(monkeypatch, [], env={
        "KZR_ROOT": str(tmp_path / "r"), "KZR_PORT": "8123", "KZR_SERVE_PORT": "8124"})
    assert result.exit_code == 0, result.output
    assert started[0][1]["bind"] == ["127.0.0.1:8124"]
    # --s3-endpoint from KZR_S3_ENDPOINT, as in every other command.
    result, started = start(monkeypatch, ["--root", str(tmp_path)],
                            env={"KZR_S3_ENDPOINT": "http://x"})
    assert result.exit_code == 2 and "--s3-endpoint needs --s3" in result.output
    assert started == []
