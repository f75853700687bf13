"""The config file: ages, every serve option round-tripping, precedence, refusals with lines."""

from __future__ import annotations

import importlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from kzr_wsgi import cli
from kzr_wsgi.ages import AgeError, format_age, parse_age, parse_policy_age
from kzr_wsgi.cli.config import (
    STORE_KEYS,
    ConfigError,
    RetentionPolicy,
    config_option,
    load_config,
    option_keys,
    readings,
)
from kzr_wsgi.cli.environment import name_variables
from kzr_wsgi.cli.options import StoreSpec, store_options
from kzr_wsgi.cli.params import Age, CommandLineOnly, CountryCode
from kzr_wsgi.configfile import ANALYSIS, RETENTION, TRANSCRIBE, Config, Tables
from kzr_wsgi.configtable import TableError
from kzr_wsgi.housekeeping.policy import parse_retention

# -- ages -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, age", [
    ("0s", timedelta(0)), ("90d", timedelta(days=90)), ("12w", timedelta(weeks=12)),
    ("2y", timedelta(days=730)), ("36h", timedelta(hours=36)), ("1s", timedelta(seconds=1)),
    ("30m", timedelta(minutes=30)), ("90m", timedelta(minutes=90)), ("1m", timedelta(minutes=1)),
])
def test_parse_age(text: str, age: timedelta) -> None:
    assert parse_age(text) == age
    assert parse_age(format_age(age)) == age


@pytest.mark.parametrize("text", [
    "", "90", "d", "1.5d", "-1d", "90 d", " 90d", "90D", "forever", "2y1d",
    "99999999999999999999y",
    # m is minutes, never months: no other spelling of either is an age.
    "1M", "1mo", "1min", "1mon", "1m30s",
])
def test_parse_age_refuses(text: str) -> None:
    with pytest.raises(AgeError):
        parse_age(text)


def test_minutes_are_spelled_m() -> None:
    assert format_age(timedelta(minutes=30)) == "30m"
    assert format_age(timedelta(hours=2)) == "2h"  # the largest unit that is exact
    assert format_age(timedelta(seconds=90)) == "90s"
    with pytest.raises(AgeError, match="m is minutes"):
        parse_age("1mo")


def test_forever_only_in_policies() -> None:
    assert parse_policy_age("forever") is None
    assert parse_policy_age("7d") == timedelta(days=7)
    with pytest.raises(AgeError, match="forever"):
        parse_policy_age("never")


# -- the policy -------------------------------------------------------------------------------


def test_policy_age_for() -> None:
    policy = RetentionPolicy(
        default=timedelta(days=90),
        accounts={"keep": None, "short": timedelta(days=7), "long": timedelta(days=400)},
        kinds={"caller": timedelta(days=30), "attachment": timedelta(days=730)},
    )
    assert policy.age_for("other", "call") == timedelta(days=90)
    assert policy.age_for(None, "call") == timedelta(days=90)
    assert policy.age_for("keep", "call") is None
    assert policy.age_for("short", "call") == timedelta(days=7)
    assert policy.age_for("other", "caller") == timedelta(days=30)
    # Both an account and a kind rule: the longer one.
    assert policy.age_for("short", "caller") == timedelta(days=30)
    assert policy.age_for("long", "caller") == timedelta(days=400)
    assert policy.age_for("keep", "attachment") is None
    assert policy.age_for("other", "attachment") == timedelta(days=730)
    # Attachments only when named.
    assert RetentionPolicy(default=timedelta(days=1)).age_for("a", "attachment") is None
    assert RetentionPolicy().age_for("a", "call") is None


# -- every serve option round-trips ---------------------------------------------------------


def _toml(value: Any) -> str:
    """A TOML value (JSON's strings, numbers and arrays are TOML's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _sample(param: click.Option, tmp_path: Path) -> tuple[Any, Any]:
    """A value for ``param`` unlike its default: (as written in the file, as converted)."""
    kind = param.type
    if param.is_flag:
        return (not param.default), (not param.default)
    if isinstance(kind, click.Path):
        made = tmp_path / f"{param.name}.txt"
        if kind.file_okay:
            made.write_text("user:pass\n")
        else:
            made.mkdir(exist_ok=True)
        return str(made), str(made)
    if isinstance(kind, cli.Size):
        return "10M", 10 << 20
    if isinstance(kind, Age):
        return "45m", timedelta(minutes=45)
    if isinstance(kind, CountryCode):
        return "gb", "GB"
    if isinstance(kind, click.Choice):
        return kind.choices[-1], kind.choices[-1]
    if isinstance(kind, click.IntRange):
        low = kind.min if kind.min is not None else 0
        return low + 1, low + 1
    if isinstance(kind, click.types.IntParamType):
        return 4242, 4242
    if isinstance(kind, click.types.FloatParamType):
        return 2.5, 2.5
    text = "s3://bucket/prefix" if param.name == "s3_url" else f"value-of-{param.name}"
    return text, text


def test_every_serve_option_round_trips(tmp_path: Path) -> None:
    keys = option_keys(cli.serve)
    assert {"root", "port", "max-size", "basic-auth", "accept-caller", "s3"} <= set(keys)
    written: dict[str, Any] = {}
    expected: dict[str, Any] = {}
    for key, param in keys.items():
        assert isinstance(param, click.Option)
        raw, value = _sample(param, tmp_path)
        if param.multiple:
            second_raw, second = _sample(param, tmp_path)
            raw, value = [raw, second_raw], (value, second)
        written[key] = raw
        expected[str(param.name)] = value
    path = tmp_path / "kzr.toml"
    path.write_text("".join(f"{k} = {_toml(v)}\n" for k, v in written.items()))
    ctx = cli.serve.make_context("serve", ["--config", str(path)])
    for name, value in expected.items():
        assert ctx.params[name] == value, name
        assert ctx.get_parameter_source(name) is click.core.ParameterSource.DEFAULT_MAP, name
    assert ctx.params["config"].retention is None


# -- precedence: command line, environment, file ----------------------------------------------


def start(monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str] | None = None
          ) -> tuple[click.testing.Result, list[dict[str, Any]]]:
    started: list[dict[str, Any]] = []
    monkeypatch.setattr(importlib.import_module("kzr_wsgi.cli.serve"), "run",
                        lambda app, options: started.append(options))
    result = CliRunner().invoke(cli.main, ["serve", *args], env=env)
    return result, started


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "kzr.toml"
    path.write_text(f'root = "{tmp_path / "r"}"\nport = 1111\nworkers = 3\nthreads = 5\n')
    result, [options] = start(monkeypatch, ["--config", str(path)])
    assert result.exit_code == 0, result.output
    assert options["bind"] == ["127.0.0.1:1111"]
    assert (options["workers"], options["threads"]) == (3, 5)
    assert f"storing under {tmp_path / 'r'}" in result.output
    # The environment beats the file, the command line beats both.
    result, [options] = start(monkeypatch, ["--config", str(path), "--threads", "7"],
                              env={"KZR_PORT": "2222", "KZR_THREADS": "6"})
    assert result.exit_code == 0, result.output
    assert options["bind"] == ["127.0.0.1:2222"]
    assert (options["workers"], options["threads"]) == (3, 7)
    # KZR_CONFIG names the file.
    result, [options] = start(monkeypatch, [], env={"KZR_CONFIG": str(path)})
    assert options["bind"] == ["127.0.0.1:1111"]


@store_options
def _where(spec: StoreSpec) -> None:
    """Prints what a store command got."""
    click.echo(json.dumps([spec.root, spec.root_given, spec.s3_url, spec.s3_endpoint,
                           spec.catalog_url, spec.config is not None]))


def test_store_commands_read_the_file(tmp_path: Path) -> None:
    path = tmp_path / "kzr.toml"
    path.write_text('root = "/srv/r"\ns3 = "s3://b/p"\ns3-endpoint = "http://127.0.0.1:9"\n'
                    'catalog = "sqlite:////tmp/x.db"\nport = 9\n[retention]\ndefault = "1y"\n')
    # One file serves every command: the probe beside serve (whose key port is), as the
    # kzr-wsgi group holds its commands.
    program = click.Group(commands={"serve": cli.serve, "where": click.command("where")(_where)})
    result = CliRunner().invoke(program, ["where", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [
        "/srv/r", True, "s3://b/p", "http://127.0.0.1:9", "sqlite:////tmp/x.db", True]
    result = CliRunner().invoke(program, ["where", "--root", "/elsewhere"],
                                env={"KZR_CONFIG": str(path), "KZR_CATALOG": "sqlite:///e"})
    assert json.loads(result.output)[:5] == [
        "/elsewhere", True, "s3://b/p", "http://127.0.0.1:9", "sqlite:///e"]


# -- refusals name the key and its line -----------------------------------------------------

FULL = """\
# a comment
root = "/srv/recordings"
port = 8080
basic-auth = ["kazoo:secret"]

[retention]
default = "90d"
interval = "1h"

[retention.accounts]
4a1b0c2d3e4f5a6b7c8d9e0f1a2b3c4d = "forever"
"quoted.account" = "30d"

[retention.kinds]
attachment = "2y"
"""


def test_full_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "kzr.toml"
    path.write_text(FULL)
    config = load_config(path, cli.serve)
    assert config.options == {"root": "/srv/recordings", "port": 8080,
                              "basic-auth": ["kazoo:secret"]}
    policy = config.retention
    assert policy is not None
    assert policy.default == timedelta(days=90) and policy.interval == timedelta(hours=1)
    assert policy.accounts == {"4a1b0c2d3e4f5a6b7c8d9e0f1a2b3c4d": None,
                               "quoted.account": timedelta(days=30)}
    assert policy.kinds == {"attachment": timedelta(days=730)}


@pytest.mark.parametrize("change, line, key", [
    (("port = 8080", "port = 8080\nprot = 1"), 4, "prot"),
    (('interval = "1h"', 'interval = "1h"\nkeep = "1d"'), 9, "keep"),
    (('attachment = "2y"', 'attachment = "2y"\nfax = "1y"'), 16, "fax"),
    (('default = "90d"', 'default = "ninety days"'), 7, "default"),
    (('"quoted.account" = "30d"', '"quoted.account" = "30"'), 12, "quoted.account"),
    (('attachment = "2y"', 'attachment = "forevr"'), 15, "attachment"),
    (('interval = "1h"', 'interval = "forever"'), 8, "interval"),
    (("port = 8080", 'port = "eighty"'), 3, "port"),
    (('basic-auth = ["kazoo:secret"]', 'basic-auth = "kazoo:secret"'), 4, "basic-auth"),
    (('attachment = "2y"', 'attachment = "2y"\n\n[serve]\nport = 1'), 17, "serve"),
    (("# a comment", 'logging.level = "debug"'), 1, "logging"),
    (('default = "90d"', 'default = "90d"\nretention.kinds.call = "1d"'), 8, "retention"),
], ids=["top-level", "in-retention", "in-kinds", "bad-default", "bad-account-age",
        "bad-kind-age", "forever-interval", "bad-type", "not-an-array", "unknown-table",
        "dotted", "dotted-in-table"])
def test_refused_with_key_and_line(tmp_path: Path, change: tuple[str, str], line: int,
                                   key: str) -> None:
    path = tmp_path / "kzr.toml"
    path.write_text(FULL.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_config(path, cli.serve)
    assert f"{path}:{line}: key {key!r}" in str(info.value)


def test_serve_refuses_unknown_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "kzr.toml"
    path.write_text(FULL.replace("[retention.kinds]", "[retention.kinds]\nvoicemail = \"1y\""))
    result, started = start(monkeypatch, ["--config", str(path)])
    assert result.exit_code == 2 and not started
    assert f"{path}:15: key 'voicemail' in [retention.kinds]: unknown" in result.output


def test_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "kzr.toml"
    path.write_text("port = = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML.*line 1"):
        load_config(path, cli.serve)


# -- what each command reads; one file for every command ------------------------------------


def test_each_command_declares_what_it_reads() -> None:
    read = {found.command: found for found in readings(cli.main)}
    assert set(read) == {"serve", "ls", "reindex", "verify", "prune", "sweep", "audit",
                         "hold add", "hold rm", "hold ls", "worker", "export", "viewer add",
                         "viewer rm", "viewer passwd", "transcript", "erase"}  # check takes no file
    assert set(read["serve"].keys) == set(option_keys(cli.serve))
    # The viewer file's editor reads the file and the upload credentials as serve does.
    viewer_keys = {"viewer add": ("viewer-file", "basic-auth", "basic-auth-file"),
                   "viewer passwd": ("viewer-file", "basic-auth", "basic-auth-file"),
                   "viewer rm": ("viewer-file",),
                   # The one number rule reads national forms in the file's country.
                   "ls": (*STORE_KEYS, "country"), "worker": (*STORE_KEYS, "country"),
                   "export": (*STORE_KEYS, "country"),
                   "erase": (*STORE_KEYS, "country", "tombstone", "wait", "spool-dir")}
    for name, found in read.items():
        if name != "serve":
            assert tuple(found.keys) == viewer_keys.get(name, STORE_KEYS), name
    assert {name for name, found in read.items() if RETENTION in found.tables} == {
        "serve", "prune"}
    assert {name for name, found in read.items() if ANALYSIS in found.tables} == {
        "serve", "ls", "worker", "transcript"}
    assert {name for name, found in read.items() if TRANSCRIBE in found.tables} == {
        "serve", "worker"}


def test_one_file_is_checked_whole_for_every_command(tmp_path: Path) -> None:
    path = tmp_path / "kzr.toml"
    # serve's keys, read by serve alone: ls takes the store's and is refused nothing.
    path.write_text(f'root = "{tmp_path / "nowhere"}"\nport = 9\nworkers = 2\n'
                    '[retention]\ndefault = "1y"\n')
    result = CliRunner().invoke(cli.main, ["ls", "--config", str(path)])
    assert result.exit_code == 1 and "no store at" in result.output  # the file's root
    # A mistake in serve's keys stops ls too: one file, checked whole.
    path.write_text('port = "eighty"\n')
    result = CliRunner().invoke(cli.main, ["ls", "--config", str(path)])
    assert result.exit_code == 2 and f"{path}:1: key 'port'" in result.output


@pytest.mark.parametrize("text, said", [
    ('older-than = "1d"', "key 'older-than': an option of prune, sweep, not read from a file"),
    ("dry-run = true", "key 'dry-run': an option of prune, sweep, not read from a file"),
    ('retention-default = "90d"',
     "key 'retention-default': belongs in the [retention] table: write `default = …` under "
     "[retention]"),
    ('Retention_Interval = "1h"', "key 'Retention_Interval': belongs in the [retention] table: "
                                  "write `interval = …`"),
    ('RETENTION = "90d"', "key 'RETENTION': a table: write it as [retention]"),
    ("prot = 1", "key 'prot': unknown: not an option kzr-wsgi knows"),
], ids=["another-command-s", "a-switch", "table-setting", "table-setting-spelled", "table",
        "unknown"])
def test_keys_no_command_reads_are_refused_saying_why(tmp_path: Path, text: str,
                                                      said: str) -> None:
    path = tmp_path / "kzr.toml"
    path.write_text(f'root = "/srv/r"\n{text}\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, cli.main)
    assert str(info.value).startswith(f"{path}:2: {said}")


def test_a_table_is_one_call_and_claims_its_settings() -> None:
    tables = Tables()
    transcribe = tables.register("transcribe", dict, about="where transcripts come from")
    assert tables.get("transcribe") is transcribe and list(tables) == [transcribe]
    assert tables.claiming("transcribe-url") == (transcribe, "url")
    assert tables.claiming("Transcribe_Model") == (transcribe, "model")
    assert tables.claiming("transcribe") == (transcribe, "")
    assert tables.claiming("transcriber") is None and tables.claiming("url") is None
    with pytest.raises(ValueError, match="already"):
        tables.register("transcribe", dict, about="twice")
    # A handle reads its table's value from a loaded file.
    config = Config(path=Path("x.toml"), options={}, tables={"transcribe": {"url": "u"}})
    assert transcribe.of(config) == {"url": "u"} and transcribe.of(None) is None
    assert RETENTION.of(config) is None and config.retention is None


def test_the_retention_table_parses_without_a_file() -> None:
    policy = parse_retention({"default": "30m", "kinds": {"caller": "forever"}})
    assert policy.default == timedelta(minutes=30) and policy.kinds == {"caller": None}
    with pytest.raises(TableError) as info:
        parse_retention({"kinds": {"fax": "1y"}})
    assert (info.value.below, info.value.key) == (("kinds",), "fax")
    with pytest.raises(TableError, match="longer than 0s"):
        parse_retention({"interval": "0m"})


# -- options typed on the command line only -------------------------------------------------


@click.command("erase")
@click.option("--call-id", cls=CommandLineOnly, default=None, help="Which call.")
@click.option("--reason", default=None, help="Why.")
@config_option()
def _erase(call_id: str | None, reason: str | None, config: Config | None) -> None:
    """A command whose selector must be typed."""
    click.echo(json.dumps([call_id, reason]))


def test_a_command_line_only_option_is_never_read_from_the_environment_or_the_file(
    tmp_path: Path,
) -> None:
    program = click.Group("kzr-wsgi", commands={"erase": _erase})
    name_variables(program)
    env = {"KZR_CALL_ID": "env", "KZR_ERASE_CALL_ID": "env", "KZR_REASON": "from env"}
    result = CliRunner().invoke(program, ["erase"], env=env)
    assert json.loads(result.output) == [None, "from env"]
    result = CliRunner().invoke(program, ["erase", "--call-id", "typed"])
    assert json.loads(result.output) == ["typed", None]
    # Every option of the command is read from the file, except this one: refused, saying why.
    path = tmp_path / "kzr.toml"
    path.write_text('reason = "filed"\ncall-id = "filed"\n')
    result = CliRunner().invoke(program, ["erase", "--config", str(path)])
    assert result.exit_code == 2
    assert (f"{path}:2: key 'call-id': given on the command line only, never in a file or "
            "the environment") in " ".join(result.output.split())
    path.write_text('reason = "filed"\n')
    result = CliRunner().invoke(program, ["erase", "--config", str(path)])
    assert json.loads(result.output) == [None, "filed"]
    # Nor can a command declare that it reads one from the file, nor give it a variable.
    with pytest.raises(RuntimeError, match="call-id"):
        list(readings(click.Group(commands={"erase": config_option(keys=("call-id",))(
            click.option("--call-id", cls=CommandLineOnly)(click.command("erase")(
                lambda call_id, config: None)))})))
    with pytest.raises(TypeError):
        CommandLineOnly(["--call-id"], envvar="KZR_CALL_ID")


def test_the_old_import_paths_still_import() -> None:
    import kzr_wsgi.commands as commands
    import kzr_wsgi.config as config
    from kzr_wsgi import building
    from kzr_wsgi.cli import announce, options, params

    assert config.RetentionPolicy is RetentionPolicy and config.load_config is load_config
    assert config.ConfigError is ConfigError and config.Config is Config
    assert config.config_option is config_option and config.option_keys is option_keys
    assert commands.StoreSpec is options.StoreSpec
    assert commands.store_options is options.store_options
    assert (commands.Age, commands.When) == (params.Age, params.When)
    assert commands.build_store is building.build_store
    assert commands.catalog_of is building.catalog_of
    assert commands.catalog_notices is announce.catalog_notices
    assert cli.Size is params.Size
