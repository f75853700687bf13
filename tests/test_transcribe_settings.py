"""The transcription settings: the ``[transcribe]`` table, the options and the environment
in their order, the key never on a command line, the refusals at start-up; the
renderers of a transcript (no sockets)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kzr_wsgi.configfile import TRANSCRIBE
from kzr_wsgi.configtable import TableError
from kzr_wsgi.transcribe.render import render, srt, txt, vtt
from kzr_wsgi.transcribe.table import parse_transcribe, settings_of

REPO = Path(__file__).resolve().parent.parent
SAMPLE = """\
[transcribe]
engine = "openai"
url = "https://gpu1:8000/v1"
model = "large-v3"
key-file = "KEYFILE"
language = "en"
timeout = "300s"
concurrency = 2
piece = "30s"
attempts = 5
kinds = ["call"]
min-duration = "5s"
max-duration = "2h"
redact = ["card"]
redact-patterns = ['(?i)\\bpassword is \\w+']
"""


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KZR_")}
    return subprocess.run([sys.executable, "-m", "kzr_wsgi", *args], capture_output=True,
                          text=True, timeout=120,
                          env={**clean, "PYTHONPATH": str(REPO), **(env or {})})


def test_the_manuals_sample_loads_and_every_key_lands_in_the_settings(tmp_path: Path) -> None:
    from kzr_wsgi import cli
    from kzr_wsgi.cli.config import load_config

    key = tmp_path / "key"
    key.write_text("sk-from-file\n")
    path = tmp_path / "kzr.toml"
    path.write_text(SAMPLE.replace("KEYFILE", str(key)))
    config = load_config(path, cli.main)
    table = TRANSCRIBE.of(config)
    assert table is not None
    settings = settings_of({}, table, key="k")
    assert settings is not None
    assert (settings.engine, settings.url, settings.model, settings.language) == (
        "openai", "https://gpu1:8000/v1", "large-v3", "en")
    assert (settings.timeout, settings.piece, settings.min_duration, settings.max_duration) == (
        300.0, 30.0, 5.0, 7200.0)
    assert (settings.kinds, settings.redact, settings.concurrency, settings.attempts) == (
        ("call",), ("card",), 2, 5)
    assert settings.redact_patterns == (r"(?i)\bpassword is \w+",)
    assert table.values["key_file"] == str(key)
    # The docs page holds the same sample.
    assert SAMPLE.split("key-file")[1].split("\n", 1)[1] in (
        REPO / "docs" / "transcripts.md").read_text().replace("\\\\", "\\")


@pytest.mark.parametrize(("table", "key"), [
    ({"enginee": "openai"}, "enginee"),
    ({"timeout": "soon"}, "timeout"),
    ({"timeout": 0}, "timeout"),
    ({"concurrency": 0}, "concurrency"),
    ({"insecure": "yes"}, "insecure"),
    ({"kinds": "call"}, "kinds"),
    ({"redact": ["cards"]}, "redact"),
    ({"redact-patterns": ["("]}, "redact-patterns"),
    ({"min-duration": "10s", "max-duration": "5s"}, "min-duration"),
    ({"piece": "20m"}, "piece"),
])
def test_a_bad_key_is_refused_naming_it(table: dict[str, object], key: str) -> None:
    with pytest.raises(TableError) as raised:
        parse_transcribe(table)
    assert raised.value.key == key


def test_the_command_line_wins_over_the_file_and_no_engine_is_off() -> None:
    table = parse_transcribe({"engine": "openai", "url": "https://a/v1", "model": "m"})
    got = settings_of({"url": "https://b/v1", "model": None}, table, key=None)
    assert got is not None and (got.url, got.model) == ("https://b/v1", "m")
    assert settings_of({"url": "https://b/v1"}, parse_transcribe({}), key=None) is None
    assert settings_of({}, None, key=None) is None


def test_a_top_level_key_is_refused_naming_the_table(tmp_path: Path) -> None:
    path = tmp_path / "kzr.toml"
    path.write_text('transcribe-url = "https://gpu1/v1"\n')
    done = run("ls", "--config", str(path), "--root", str(tmp_path))
    assert done.returncode == 2
    assert "belongs in the [transcribe] table: write `url = …` under [transcribe]" in (
        done.stderr)


def test_start_up_refusals(tmp_path: Path) -> None:
    done = run("serve", "--root", str(tmp_path), "--transcribe", "pocketsphinx",
               "--no-analyze")
    assert done.returncode == 2 and "drop --no-analyze" in done.stderr
    done = run("serve", "--root", str(tmp_path), "--transcribe", "openai",
               "--transcribe-url", "http://10.0.0.7:8000/v1", "--transcribe-model", "m")
    assert done.returncode == 2 and "not loopback" in done.stderr
    # Through the environment, the same.
    done = run("worker", "--root", str(tmp_path), env={
        "KZR_TRANSCRIBE": "openai", "KZR_TRANSCRIBE_URL": "http://10.0.0.7/v1",
        "KZR_TRANSCRIBE_MODEL": "m"})
    assert done.returncode == 2 and "not loopback" in done.stderr
    done = run("worker", "--root", str(tmp_path), "--transcribe", "nosuch")
    assert done.returncode == 2 and "no transcription engine 'nosuch'" in done.stderr
    assert not (tmp_path / ".kzr").exists()  # refused before the store was touched


def test_no_option_takes_the_key() -> None:
    done = run("serve", "--transcribe-key", "sk-x")
    assert done.returncode == 2 and "No such option" in done.stderr


SEGMENTS = [
    {"start": 0.5, "end": 2.25, "channel": "left", "speaker": "caller",
     "text": "hello <script>alert(1)</script> & bye"},
    {"start": 3661.001, "end": 3662.0, "channel": "right", "speaker": "callee",
     "text": "a --> b\n\n99\n00:00:01.000 --> 00:00:02.000\nforged"},
]


def test_vtt_escapes_what_would_be_markup_or_a_cue() -> None:
    out = vtt(SEGMENTS)
    assert out.startswith("WEBVTT\n\n1\n00:00:00.500 --> 00:00:02.250\n<v caller>")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; bye" in out
    assert "<script>" not in out
    # One timing line per segment: the text's arrows and line breaks forge none.
    assert out.count(" --> ") == 2
    assert "\n01:01:01.001 --> 01:01:02.000\n<v callee>a --&gt; b 99 00:00:01.000 --&gt; " in out


def test_srt_and_txt_keep_each_segment_on_one_line() -> None:
    out = srt(SEGMENTS)
    assert out.split("\n")[:3] == ["1", "00:00:00,500 --> 00:00:02,250",
                                   "caller: hello <script>alert(1)</script> & bye"]
    assert out.count(" --> ") == 2 and "01:01:01,001 --> 01:01:02,000" in out
    lines = txt(SEGMENTS).splitlines()
    assert lines[0] == "[00:00:00.500 caller] hello <script>alert(1)</script> & bye"
    assert len(lines) == 2 and lines[1].startswith("[01:01:01.001 callee] a --> b 99 ")
    with pytest.raises(ValueError):
        render("html", SEGMENTS)


def test_the_command_line_then_the_environment_then_the_file(tmp_path: Path) -> None:
    """Each layer is told apart by a value the engine refuses at start-up (plain http to
    a host that is not loopback) against one it takes."""
    refused, taken = "http://10.0.0.7/v1", "https://gpu1.example/v1"
    path = tmp_path / "kzr.toml"
    root = str(tmp_path / "rec")

    def worker(url_in_file: str, env: dict[str, str], *args: str) -> int:
        path.write_text(f'[transcribe]\nengine = "openai"\nmodel = "m"\nurl = "{url_in_file}"\n')
        return run("worker", "--root", root, "--config", str(path), "--once", "--no-idle",
                   *args, env=env).returncode

    assert worker(refused, {}) == 2
    assert worker(taken, {}) == 0
    assert worker(refused, {"KZR_TRANSCRIBE_URL": taken}) == 0  # the environment wins
    assert worker(taken, {"KZR_TRANSCRIBE_URL": refused}) == 2
    assert worker(taken, {"KZR_TRANSCRIBE_URL": refused},
                  "--transcribe-url", taken) == 0  # the command line wins
