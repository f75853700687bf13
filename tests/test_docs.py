"""The manual and the front page: the docs build clean, show every option, and what they
include runs.

The Sphinx build is the one CI runs (``-n -W``: every internal reference must resolve,
no warning passes); the checks below read its HTML, so they prove what a reader sees.
"""

from __future__ import annotations

import ast
import contextlib
import doctest
import hashlib
import html
import http.client
import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from servers import Server, free_port, get, request, spawn

from kzr_wsgi.cli import main

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
EXAMPLES = REPO / "examples"

#: The README's two commands, verbatim: newcomers copy them, and .ci/run runs the second.
INSTALL_AND_SERVE = ("pip install -e . && "
                     "kzr-wsgi serve --root ./recordings --host 0.0.0.0 --port 8080")
RUN_THE_TESTS = ('sh tests/install-tools.sh && '
                 'python -m pip install -q -e ".[test]" && python -m pytest')
BUILD_THE_DOCS = "python -m sphinx -n -W --keep-going -b html docs docs/_build/html"


def text_of(page: Path) -> str:
    """A built page's visible text, tags dropped and entities decoded, spaces collapsed."""
    raw = page.read_text(encoding="utf-8")
    raw = re.sub(r"<(script|style)\b.*?</\1>", " ", raw, flags=re.S)
    raw = re.sub(r"</?(a|span|em|strong|cite|code|kbd)\b[^>]*>", "", raw)  # inline: no gap
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", raw)).split())


def plain(help_text: str) -> str:
    """A click help text as the page shows it: spaces collapsed, reST's backticks gone."""
    return " ".join(help_text.replace("`", "").split())


def all_commands(group: click.Group, prefix: str) -> Iterator[tuple[str, click.Command]]:
    """Every command under ``group``, nested ones included, by its full name."""
    for name, cmd in sorted(group.commands.items()):
        full = f"{prefix} {name}"
        yield full, cmd
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, full)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The manual, built as CI builds it."""
    out = tmp_path_factory.mktemp("html")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-n", "-W", "--keep-going", "-q", "-b", "html",
         str(DOCS), str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    return out


# -- the built manual ------------------------------------------------------------------


@pytest.mark.slow
def test_every_serve_option_is_in_the_manual_with_its_help(built: Path) -> None:
    page = text_of(built / "serve.html")
    serve = main.commands["serve"]
    options = [p for p in serve.params if isinstance(p, click.Option)]
    assert len(options) >= 20  # the command as it ships, not an empty stand-in
    for option in options:
        for name in [*option.opts, *option.secondary_opts]:
            assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", page), name
        if option.help:
            assert plain(option.help) in page, option.name
        # and each is a link target, so other pages can point at it
        anchor = f"cmdoption-kzr-wsgi-serve-{option.opts[0].lstrip('-')}"
        assert f'id="{anchor}"' in (built / "serve.html").read_text(), anchor


@pytest.mark.slow
def test_every_other_command_and_option_is_in_the_command_reference(built: Path) -> None:
    page = text_of(built / "commands.html")
    source = (built / "commands.html").read_text()
    for full, cmd in all_commands(main, "kzr-wsgi"):
        if full == "kzr-wsgi serve":
            continue
        assert f'id="{full.replace(" ", "-")}"' in source, full
        for param in cmd.params:
            if isinstance(param, click.Option) and param.help:
                assert plain(param.help) in page, (full, param.name)


@pytest.mark.slow
def test_every_environment_variable_is_in_the_manual(built: Path) -> None:
    from kzr_wsgi.cli.environment import commands, names_for

    pages = {"serve": text_of(built / "serve.html"), "": text_of(built / "commands.html")}
    count = 0
    for path, cmd in commands(main):
        page = pages["serve" if path == ("serve",) else ""]
        for param in cmd.params:
            names = names_for(path, param) if isinstance(param, click.Option) else None
            if names is None:
                continue
            # each listed beside its option: this command's, the shared one, the earlier
            line = f"{param.opts[0]}: {names.command} (this command alone), then {names.general}"
            assert line in page, (path, line)
            for older in names.older:
                assert older in page, (path, older)
            count += 1
    assert count >= 90


@pytest.mark.slow
def test_the_config_page_lists_what_each_command_reads(built: Path) -> None:
    from kzr_wsgi.cli.config import readings

    page = text_of(built / "config.html")
    table = page[page.index("command keys it reads tables"):]
    read = list(readings(main))
    assert len(read) >= 10
    for found in read:
        keys = ", ".join(found.keys)
        tables = ", ".join(f"[{t.name}]" for t in found.tables) or "none"
        assert f"{found.command} {keys} {tables}" in table, found.command
    assert "check none (it takes no --config)" in table


@pytest.mark.slow
def test_the_api_reference_documents_the_public_names(built: Path) -> None:
    import kzr_wsgi

    source = (built / "api.html").read_text()
    for name in kzr_wsgi.__all__:
        # each where it is defined (kzr_wsgi.recording.Recording, kzr_wsgi.auth.Guard, …)
        assert re.search(rf'id="kzr_wsgi\.[\w.]+\.{name}"', source), name
    for target in ("kzr_wsgi.stores.s3.S3Store", "kzr_wsgi.audio.AudioInfo",
                   "kzr_wsgi.recording.Recording.audio"):
        assert f'id="{target}"' in source, target


@pytest.mark.slow
def test_the_manual_includes_the_examples_it_shows(built: Path) -> None:
    # literalinclude copies the files at build time: what the reader sees is what the
    # example tests run.
    page = "".join(text_of(built / "mounting.html").split())  # code is split into tokens
    assert 'prefix="/kazoo"' in page and "defcreate_app(" in page
    assert "classFlatDirectory:" in "".join(text_of(built / "handlers.html").split())


def test_no_page_is_left_with_a_placeholder() -> None:
    # e.g. a line MEASUREMENTS or RESULTS_TABLE, where numbers are still to be filled in
    pages = [*sorted(DOCS.glob("*.md")), REPO / "README.md", REPO / "CHANGELOG.md"]
    marked = [p.name for p in pages
              if re.search(r"\bTODO\b|\bTBD\b|\bFIXME\b|^[A-Z][A-Z_]{5,}$", p.read_text(), re.M)]
    assert not marked, marked


#: What a build or a benchmark run writes, named by the manual but not in the repository.
BUILT_BY_RUNS = ("docs/_build/", "benchmarks/results/")


def test_every_file_the_manual_names_exists() -> None:
    # Pages name files to read or run (`benchmarks/run.py`, `examples/systemd/kzr-prune.*`);
    # a file moved by a refactoring must not leave the manual pointing at nothing.
    pages = [*sorted(DOCS.glob("*.md")), REPO / "README.md"]
    pattern = re.compile(r"\b(?:kzr_wsgi|benchmarks|examples|tests|docs)/[\w/.*-]*[\w*]")
    named = {(page.name, m) for page in pages for m in pattern.findall(page.read_text())}
    assert len(named) >= 20
    missing = sorted((page, path) for page, path in named
                     if not any(REPO.glob(path)) and not path.startswith(BUILT_BY_RUNS))
    assert not missing, missing


# -- the front page and the publishing files -------------------------------------------


def test_readme_fits_and_keeps_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    lines = readme.splitlines()
    assert len(lines) <= 160, len(lines)
    assert INSTALL_AND_SERVE in lines and RUN_THE_TESTS in lines
    assert any(BUILD_THE_DOCS in line for line in lines)
    assert '"module": "record_call"' in readme and "127.0.0.1" in readme
    assert "KazooFlask(app)" in readme and "KazooRecordings(application" in readme


def test_readme_links_point_at_files_that_exist() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert len(local) >= 10
    missing = [link for link in local if not (REPO / link).exists()]
    assert not missing, missing


def test_ci_runs_the_readme_test_command_and_the_docs_build() -> None:
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert RUN_THE_TESTS in ci
    build = [line for line in ci if "-m sphinx" in line]
    assert build and "-n" in build[0].split() and "-W" in build[0].split()
    assert ci.index(RUN_THE_TESTS) < ci.index(build[0])


def test_readthedocs_config_builds_this_manual() -> None:
    conf = (REPO / ".readthedocs.yaml").read_text()
    assert re.search(r"^version: 2$", conf, re.M)
    assert re.search(r"^\s+configuration: docs/conf.py$", conf, re.M)
    assert re.search(r"^\s+- docs$", conf, re.M)  # the docs extra is installed


def test_changelog_keeps_a_changelog() -> None:
    log = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    heads = re.findall(r"^## \[([^\]]+)\]", log, re.M)
    assert heads[:2] == ["Unreleased", "0.1.0"], heads
    assert re.search(r"^### (Added|Changed|Fixed|Removed)$", log, re.M)


# -- the samples in the manual, run ----------------------------------------------------


def toml_samples() -> list[tuple[str, str]]:
    """Every ```toml block in the manual, with the page it is on."""
    found = []
    for page in sorted(DOCS.glob("*.md")):
        for block in re.findall(r"^```toml\n(.*?)^```", page.read_text(), re.M | re.S):
            found.append((page.name, block))
    return found


def test_every_config_file_in_the_manual_is_accepted(tmp_path: Path) -> None:
    from kzr_wsgi.cli.config import ConfigError, load_config, option_keys

    samples = toml_samples()
    assert samples, "the manual shows a config file"
    must_exist = [key for key, param in option_keys(main.commands["serve"]).items()
                  if isinstance(param.type, click.Path) and param.type.exists]
    secrets = tmp_path / "secret"
    secrets.write_text("kazoo:secret\n")
    for n, (page, block) in enumerate(samples):
        # The files a sample names are the reader's; here they are one that exists.
        text = block
        for key in must_exist:
            text = re.sub(rf'^({re.escape(key)}\s*=\s*)"[^"]*"', rf'\1"{secrets}"', text,
                          flags=re.M)
        path = tmp_path / f"sample{n}.toml"
        path.write_text(text)
        try:
            load_config(path, main)
        except ConfigError as exc:  # it names the key and the line
            raise AssertionError(f"{page}: {exc}\n{block}") from exc


def test_the_examples_in_the_docstrings_run() -> None:
    # The API reference shows the docstrings; their ``>>>`` examples are run here, each
    # in its own module's namespace (those marked ``+SKIP`` need a server or a bucket).
    import kzr_wsgi

    attempted = 0
    failures: list[str] = []
    for info in pkgutil.walk_packages(kzr_wsgi.__path__, "kzr_wsgi."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False,
                                 report=False)
        attempted += result.attempted
        if result.failed:
            failures.append(info.name)
    assert attempted >= 10
    assert not failures, failures


def test_every_json_sample_is_json() -> None:
    # Callflows, storage plans, sidecars: readers paste them into Kazoo's API.
    pages = [*sorted(DOCS.glob("*.md")), REPO / "README.md"]
    count = 0
    for page in pages:
        for block in re.findall(r"^ *```json\n(.*?)^ *```", page.read_text(), re.M | re.S):
            try:
                json.loads(block)
            except ValueError as exc:
                raise AssertionError(f"{page.name}: {exc}\n{block}") from exc
            count += 1
    assert count >= 8


def test_every_python_sample_parses_and_imports_what_exists() -> None:
    # The snippets that are not whole examples still name real modules and names.
    pages = [*sorted(DOCS.glob("*.md")), REPO / "README.md"]
    count = 0
    for page in pages:
        for block in re.findall(r"^ *```python\n(.*?)^ *```", page.read_text(), re.M | re.S):
            tree = ast.parse(block, filename=page.name)
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kzr_wsgi"):
                    module = importlib.import_module(node.module or "")
                    for alias in node.names:
                        assert hasattr(module, alias.name), (page.name, node.module, alias.name)
            count += 1
    assert count >= 8


# -- the examples the manual includes, run as it says to run them -----------------------


def put(port: int, path: str, body: bytes) -> tuple[int, str | None]:
    answer = request(port, "PUT", path, body)
    return answer.status, answer.headers.get("ETag")


def gunicorn(tmp_path: Path, app: str, root: Path) -> contextlib.AbstractContextManager[Server]:
    """``KZR_ROOT=… gunicorn -c examples/gunicorn.conf.py --chdir examples APP``."""
    port = free_port()
    cmd = [sys.executable, "-m", "gunicorn", "-c", str(EXAMPLES / "gunicorn.conf.py"),
           "-b", f"127.0.0.1:{port}", "--workers", "1", "--chdir", str(EXAMPLES), app]
    return spawn(cmd, "127.0.0.1", port, tmp_path / f"{port}.log", env={"KZR_ROOT": str(root)})


@pytest.mark.slow
def test_wsgi_example_takes_uploads_and_passes_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    body = os.urandom(250_000)
    with gunicorn(tmp_path, "wsgi_app:application", root) as srv:
        port = srv.port
        assert put(port, "/kazoo/call_recording_w1%40pbx.mp3?account_id=a1", body)[0] == 201
        assert put(port, "/kazoo/call_recording_w1%40pbx.mp3?account_id=a1", body)[0] == 200
        assert get(port, "/") == (200, b"the rest of the site\n")
        # not below the prefix: the site's, not a recording
        assert get(port, "/call_recording_w1.mp3") == (200, b"the rest of the site\n")
    stored = [p for p in root.rglob("*.mp3") if ".kzr" not in p.parts]
    assert [p.read_bytes() for p in stored] == [body]


@pytest.mark.slow
def test_custom_handler_example_keeps_the_promise(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    first, second = os.urandom(300_000), os.urandom(1000)
    name = "/call_recording_..%2F..%2Fescape.mp3?recording_id=r1"
    with gunicorn(tmp_path, "custom_handler:application", root) as srv:
        port = srv.port
        status, etag = put(port, name, first)
        assert (status, etag) == (201, f'"{hashlib.sha256(first).hexdigest()}"')
        assert put(port, name, first)[0] == 200  # a retry: one copy
        assert put(port, name, second)[0] == 201  # another body: kept beside, not over
        assert get(port, "/anything")[0] == 404
        # a body cut short is never acknowledged, and leaves nothing visible
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.putrequest("PUT", "/call_recording_cut.mp3")
        conn.putheader("Content-Length", "100000")
        conn.endheaders()
        conn.send(b"x" * 1000)
        conn.sock.shutdown(1)  # type: ignore[union-attr]
        status = None  # a closed connection is not a 2xx either
        with contextlib.suppress(ConnectionError):
            status = conn.getresponse().status
        assert status is None or status == 400, status
        conn.close()
    kept = sorted(p.name for p in root.iterdir())
    assert len(kept) == 2 and all(n.startswith("..%2F..%2Fescape.r1.") for n in kept), kept
    assert sorted(p.read_bytes() for p in root.iterdir()) == sorted([first, second])
    assert not list(tmp_path.parent.glob("escape*"))
