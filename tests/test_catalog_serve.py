"""The catalog through ``kzr-wsgi serve``: shared PostgreSQL for hosts on one bucket,
the start-up notices, and ``ls`` finding an upload right after its ``2xx``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kazoo import Reply, httpc_put
from servers import serve
from test_directory_store import make
from test_s3_serve import S3_URL, H, query_4x, race, rec, serve_s3  # noqa: F401 - rec

from kzr_wsgi.stores import DirectoryStore

pytest_plugins = ["s3server", "pgserver"]
pytestmark = pytest.mark.slow


def kzr(*args: str, code: int = 0) -> str:
    """``python -m kzr_wsgi ARGS…`` (the real command line); its stdout.

    No KZR_* variables from the developer's shell: KZR_ROOT would change the store.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("KZR_")}
    done = subprocess.run([sys.executable, "-m", "kzr_wsgi", *args], capture_output=True,
                          text=True, timeout=120, env=env,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == code, done.stderr + done.stdout
    return done.stdout


def test_two_hosts_on_one_bucket_share_a_postgresql_catalog(
        rec: Any, moto_endpoint: str, pg_url: str, tmp_path: Path) -> None:  # noqa: F811 - rec
    sent: dict[str, bytes] = {}
    with serve_s3(tmp_path, moto_endpoint, "--workers", "2", "--catalog", pg_url,
                  name="a") as a, \
            serve_s3(tmp_path, moto_endpoint, "--workers", "2", "--catalog", pg_url,
                     name="b") as b:
        hosts = [a, b]

        def send(i: int, call_id: str, body: bytes) -> Callable[[], Reply]:
            target = f"/call_recording_{call_id}.mp3?" + query_4x(call_id, "r1", f"acc{i % 3}")
            return lambda: httpc_put(H, hosts[i % 2].port, target, body)

        # Six recordings, each stored at one host and retried at the other.
        for i in range(6):
            call_id, body = f"call{i}", os.urandom(1000 + i)
            sent[call_id] = body
            assert send(i, call_id, body)().status == 201
            # A search right after the 2xx finds it, whichever host asks.
            assert [json.loads(x)["call_id"] for x in kzr(
                "ls", "--json", "--catalog", pg_url, "--call-id", call_id).splitlines()] \
                == [call_id]
            assert send(i + 1, call_id, body)().status == 200
        # One more, raced at both hosts at once: one row still.
        sent["raced"] = os.urandom(1500)
        replies = race([send(i, "raced", sent["raced"]) for i in range(4)])
        assert sorted(r.status for r, _ in replies) == [200, 200, 200, 201]
        logs = a.log() + b.log()
    assert "catalog: postgresql://" in logs
    rows = [json.loads(x) for x in kzr("ls", "--json", "--catalog", pg_url).splitlines()]
    assert sorted(r["call_id"] for r in rows) == sorted(sent)
    assert all(r["location"].startswith(S3_URL + "/") for r in rows)
    # The bucket's sidecars rebuild the same catalog.
    before = kzr("ls", "--json", "--catalog", pg_url)
    kzr("reindex", "--s3", S3_URL, "--s3-endpoint", moto_endpoint, "--catalog", pg_url)
    assert kzr("ls", "--json", "--catalog", pg_url) == before
    out = kzr("verify", "--s3", S3_URL, "--s3-endpoint", moto_endpoint)
    assert out.splitlines()[-1].startswith("verified 7 copies")


def test_serve_with_s3_alone_says_no_catalog_is_kept(
        rec: Any, moto_endpoint: str, tmp_path: Path) -> None:  # noqa: F811
    with serve_s3(tmp_path, moto_endpoint) as server:
        pass
    assert "no catalog is kept (--s3 alone)" in server.log()


def test_serve_names_reindex_for_a_store_from_before_the_catalog(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    old = DirectoryStore(root, catalog=None, sweep_every=None)
    old(make(b"old", "from-last-year"))
    with serve(tmp_path, root=root) as server:
        # A new upload makes the catalog non-empty: the notice must stay all the same.
        target = "/call_recording_new.mp3"
        assert httpc_put(H, server.port, target, b"new").status == 201
    assert "kzr-wsgi reindex" in server.log()
    with serve(tmp_path, root=root) as server:
        pass
    assert "kzr-wsgi reindex" in server.log()
    kzr("reindex", "--root", str(root))
    with serve(tmp_path, root=root) as server:
        pass
    assert "kzr-wsgi reindex" not in server.log()
    assert sorted(json.loads(x)["call_id"] for x in kzr(
        "ls", "--json", "--root", str(root)).splitlines()) == ["from-last-year", "new"]


def test_two_serve_processes_on_one_root_catalogue_every_upload(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    root = tmp_path / "rec"
    with serve(tmp_path, "--workers", "2", root=root) as a, \
            serve(tmp_path, "--workers", "2", root=root) as b:
        hosts = [a, b]

        def send(i: int) -> int:
            target = f"/call_recording_c{i}.mp3?from=10{i:02d}%40r&account_id=acc{i % 4}"
            return httpc_put(H, hosts[i % 2].port, target, os.urandom(20_000)).status

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(send, range(48)))
        logs = a.log() + b.log()
    assert statuses == [201] * 48
    assert "could not add" not in logs and "database is locked" not in logs
    listed = [json.loads(x)["call_id"] for x in kzr("ls", "--json", "--root", str(root))
              .splitlines()]
    assert sorted(listed) == sorted(f"c{i}" for i in range(48))
    assert len(kzr("ls", "--root", str(root), "--account", "acc1").splitlines()) == 12
