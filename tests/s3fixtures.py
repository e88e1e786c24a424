"""pytest fixtures for S3 tests: moto's server over real HTTP, a fault proxy, a fresh bucket.

Load it with `pytest_plugins = ["s3fixtures"]`. Every test runs with fake AWS credentials and
none of the machine's AWS settings, so nothing can reach a real account. `start_moto()` and
`s3_client()` also work without pytest, for child processes, examples and benchmarks.
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError
from faultproxy import FaultProxy
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"  # noqa: S105 - moto accepts any key
_NO_SUCH_DIR = Path(tempfile.gettempdir()) / f"no-aws-config-{uuid.uuid4().hex}"
_session_lock = threading.Lock()  # boto3 sessions are not thread-safe


def isolate_aws_env(mp: pytest.MonkeyPatch) -> None:
    """Removes every AWS_* variable, then sets fake credentials, region and no config files.

    NO_PROXY keeps HTTP proxies of the machine away from the local servers.
    """
    for name in list(os.environ):
        if name.startswith("AWS_"):
            mp.delenv(name)
    mp.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    mp.setenv("AWS_DEFAULT_REGION", REGION)
    mp.setenv("AWS_CONFIG_FILE", str(_NO_SUCH_DIR / "config"))
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(_NO_SUCH_DIR / "credentials"))
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("NO_PROXY", "no_proxy"):
        mp.setenv(name, "127.0.0.1,localhost")


def start_moto() -> tuple[ThreadedMotoServer, str]:
    """Starts moto's server on 127.0.0.1 on a free port; returns it and its endpoint URL.

    Stop it with `server.stop()`. Its state lives in this process, shared by all its clients.
    """
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def s3_client(endpoint_url: str, config: Config | None = None) -> BaseClient:
    """A boto3 S3 client on `endpoint_url` with the fake credentials and one attempt per call.

    It does not validate response checksums, so a damaged stored object reads back as it is
    instead of raising. `config` is merged over these settings. Close it when done.
    """
    base = Config(retries={"total_max_attempts": 1}, response_checksum_validation="when_required")
    with _session_lock:
        return _shared_session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=base if config is None else base.merge(config),
        )


@functools.cache
def _shared_session() -> boto3.session.Session:
    """One session for all clients, so the service model loads once; made on first use, so
    that it sees the isolated environment rather than the machine's."""
    return boto3.session.Session()


def delete_bucket(client: BaseClient, name: str) -> None:
    """Aborts a bucket's unfinished multipart uploads, deletes its objects, then the bucket.

    A bucket that is already gone is fine.
    """
    try:
        while uploads := client.list_multipart_uploads(Bucket=name).get("Uploads", []):
            for upload in uploads:
                client.abort_multipart_upload(
                    Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
                )
        while objects := client.list_objects_v2(Bucket=name).get("Contents", []):
            keys = [{"Key": obj["Key"]} for obj in objects]
            client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        client.delete_bucket(Bucket=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchBucket":
            raise


@pytest.fixture(scope="session", autouse=True)
def aws_env_session() -> Iterator[None]:
    """The isolated AWS environment for session-scoped fixtures, undone at the session's end."""
    with pytest.MonkeyPatch.context() as mp:
        isolate_aws_env(mp)
        yield


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The isolated AWS environment again for each test, so one test's changes cannot leak."""
    isolate_aws_env(monkeypatch)


@pytest.fixture(scope="session")
def moto_server(aws_env_session: None) -> Iterator[str]:
    """moto's S3 server for the whole session; yields its endpoint URL."""
    server, url = start_moto()
    yield url
    server.stop()


@pytest.fixture(scope="session")
def s3_endpoint(moto_server: str) -> str:
    """The endpoint URL of moto's S3 server."""
    return moto_server


@pytest.fixture
def fault_proxy(moto_server: str) -> Iterator[FaultProxy]:
    """A fault proxy in front of moto, with no rule; stopped after the test."""
    with FaultProxy(moto_server) as proxy:
        yield proxy


@pytest.fixture
def s3(s3_endpoint: str) -> Iterator[BaseClient]:
    """A sync boto3 client straight to moto, for setting up and checking what is stored."""
    with closing(s3_client(s3_endpoint)) as client:
        yield client


@pytest.fixture
def bucket(s3: BaseClient) -> Iterator[str]:
    """A new, uniquely named bucket; emptied and deleted after the test."""
    name = f"test-{uuid.uuid4().hex}"
    s3.create_bucket(Bucket=name)
    yield name
    delete_bucket(s3, name)


def open_uploads(s3: BaseClient, bucket: str) -> list[dict[str, Any]]:
    """The bucket's multipart uploads that were neither completed nor aborted."""
    uploads: list[dict[str, Any]] = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return uploads


def stored(s3: BaseClient, bucket: str, key: str) -> bytes | None:
    """The bytes of `s3://bucket/key`, or None when there is no such object."""
    try:
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    return body
