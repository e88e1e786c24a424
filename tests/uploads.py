"""Helpers of the uploader tests: files of random bytes, an uploader aimed at a test store,
metric values and the bytes a bucket holds."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiobotocore.session import AioSession, get_session
from botocore.config import Config
from prometheus_client import CollectorRegistry

from recording_aio import AsyncUploader, RecordingJob

# The metric samples the uploader exports, as prometheus_client names them.
ENQUEUED = "recording_jobs_enqueued_total"
SUCCESS = "recording_jobs_success_total"
FAILED = "recording_jobs_failed_total"
RETRIES = "recording_upload_retries_total"
QUEUE_DEPTH = "recording_queue_depth"
IN_FLIGHT = "recording_jobs_in_flight"
UPLOADED_BYTES = "recording_upload_bytes_total"
DURATION_COUNT = "recording_upload_duration_seconds_count"


@dataclass(frozen=True)
class LocalFile:
    """A file written for a test, with the bytes it was written with."""

    path: Path
    data: bytes

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data).hexdigest()

    def job(self, bucket: str, key: str | None = None, **fields: Any) -> RecordingJob:
        """A job uploading this file to `bucket` (under its own name unless `key` is given)."""
        return RecordingJob(self.path, bucket, key or f"calls/{self.path.name}", **fields)

    def intact(self) -> bool:
        """True if the file is still there with exactly its original bytes."""
        return self.path.is_file() and self.path.read_bytes() == self.data


def make_file(directory: Path, name: str, size: int = 4096) -> tuple[Path, bytes]:
    """`write_file` in a directory made if missing; returns the path and content."""
    directory.mkdir(parents=True, exist_ok=True)
    f = write_file(directory, name, size)
    return f.path, f.data


def write_file(
    directory: Path, name: str, size: int = 4096, rng: random.Random | None = None
) -> LocalFile:
    """Writes `size` random bytes to `directory/name`."""
    data = (rng or random).randbytes(size)
    path = directory / name
    path.write_bytes(data)
    return LocalFile(path, data)


def new_uploader(
    endpoint_url: str,
    registry: CollectorRegistry,
    *,
    read_timeout: float = 5.0,
    connect_timeout: float = 2.0,
    **options: Any,
) -> AsyncUploader:
    """An uploader on `endpoint_url` with its own registry, near-zero backoff and MD5 checks.

    `options` are passed to AsyncUploader and override these defaults.
    """
    settings: dict[str, Any] = {
        "endpoint_url": endpoint_url,
        "session": shared_session(),
        "registry": registry,
        "backoff_base": 0.001,
        "backoff_max": 0.01,
        "shutdown_timeout": 10.0,
        "client_config": Config(read_timeout=read_timeout, connect_timeout=connect_timeout),
        # What "auto" settles on with moto, without the probe's requests, which these tests
        # would count; test_checksums.py tests the probe.
        "checksum": "md5",
    }
    settings.update(options)
    return AsyncUploader(**settings)


@functools.cache
def shared_session() -> AioSession:
    """One aiobotocore session for the uploaders of a test run, so S3's model loads once.

    Made on first use, inside a test, so it sees the isolated AWS environment.
    """
    return get_session()


@dataclass(frozen=True)
class Metrics:
    """Reads one uploader's samples (label `uploader=name`) from a registry."""

    registry: CollectorRegistry
    uploader: str = "default"

    def value(self, name: str, **labels: str) -> float | None:
        """The sample's value, or None when the uploader never created that series."""
        return self.registry.get_sample_value(name, {"uploader": self.uploader, **labels})

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """Every series of sample `name` of this uploader, keyed by the value of `label`."""
        return {
            sample.labels[label]: sample.value
            for family in self.registry.collect()
            for sample in family.samples
            if sample.name == name and sample.labels.get("uploader") == self.uploader
        }


async def wait_until(what: str, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Polls `predicate` until it holds; fails the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        await asyncio.sleep(0.005)
