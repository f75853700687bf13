"""A real S3 API on loopback for tests: moto's server mode in a subprocess.

Never an in-process mock: the store under test talks HTTP to a separate process, as it
would to S3, MinIO or Ceph. Use the fixtures from a test module (or a conftest)::

    from s3server import aws_env, moto_endpoint, s3_bucket  # noqa: F401 - fixtures

    def test_upload(s3_bucket):
        client, bucket = s3_bucket
        ...

or the context manager directly: ``with moto_server() as endpoint: ...``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest

#: How long the server may take to answer its first request.
START_TIMEOUT = 30.0

#: Credentials and region for tests: dummies, so nothing real is ever used or looked up.
DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    """A TCP port nothing listens on right now, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server(timeout: float = START_TIMEOUT,
                env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``python -m moto.server`` on 127.0.0.1 and a free port; yield its endpoint URL.

    Waits until the server answers HTTP, and kills it (and so all its data) on exit.
    Its log goes to a temporary file, shown if it fails to start. ``env`` is added to
    its environment (``INITIAL_NO_AUTH_ACTION_COUNT=N`` makes it check credentials
    against its IAM after N requests).
    """
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as logfile:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        try:
            _wait_ready(endpoint, proc, logfile, timeout)
            yield endpoint
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _wait_ready(endpoint: str, proc: subprocess.Popen[bytes], logfile: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited ({proc.returncode}):\n{_tail(logfile)}")
        try:
            with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1) as resp:
                if resp.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"moto server not ready after {timeout}s:\n{_tail(logfile)}")
        time.sleep(0.1)


def _tail(logfile: Any) -> str:
    logfile.seek(0)
    text: bytes = logfile.read()
    return text[-4000:].decode("utf-8", "replace")


def empty_bucket(client: Any, bucket: str) -> None:
    """Abort every unfinished upload and delete every object, then the bucket."""
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
    client.delete_bucket(Bucket=bucket)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server for the whole test session: its endpoint URL."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> dict[str, str]:
    """Dummy credentials in the environment; no real AWS config file is read."""
    for name, value in DUMMY_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return dict(DUMMY_AWS_ENV)


@pytest.fixture
def s3_bucket(moto_endpoint: str, aws_env: dict[str, str]) -> Iterator[tuple[Any, str]]:
    """A fresh, empty bucket on the moto server: ``(client, bucket_name)``; removed after."""
    client = boto3.session.Session().client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket = f"kzr-test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    try:
        yield client, bucket
    finally:
        empty_bucket(client, bucket)


__all__ = ["aws_env", "empty_bucket", "free_port", "moto_endpoint", "moto_server", "s3_bucket"]
