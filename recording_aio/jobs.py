"""What to upload (`RecordingJob`) and what came of it (`UploadResult`, `UploadHandle`)."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class RecordingJob:
    """A finished recording to upload to `s3://bucket/key`; its file is deleted once verified.

    The store options (`storage_class`, `sse`, `sse_kms_key_id`, `tags`) override the
    uploader's defaults of the same names when set.
    """

    local_path: Path
    bucket: str
    key: str
    content_type: str = "audio/wav"
    metadata: Mapping[str, str] = field(default_factory=dict)
    storage_class: str | None = None
    sse: str | None = None
    sse_kms_key_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "local_path", Path(self.local_path))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        object.__setattr__(self, "tags", MappingProxyType(dict(self.tags)))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form, for the spool."""
        return {
            "local_path": str(self.local_path),
            "bucket": self.bucket,
            "key": self.key,
            "content_type": self.content_type,
            "metadata": dict(self.metadata),
            "storage_class": self.storage_class,
            "sse": self.sse,
            "sse_kms_key_id": self.sse_kms_key_id,
            "tags": dict(self.tags),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecordingJob:
        """The inverse of `to_json`; raises KeyError/TypeError on a malformed record."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def check_job(job: RecordingJob) -> int:
    """Validates a job before it is accepted and returns its file's size.

    Raises:
        ConfigurationError: (a ValueError) empty bucket or key, bad metadata or tags.
        FileNotFoundError: the local file does not exist.
        IsADirectoryError / OSError: the path is not a regular file.
    """
    if not isinstance(job, RecordingJob):
        raise TypeError(f"expected a RecordingJob, got {type(job).__name__}")
    for name in ("bucket", "key", "content_type"):
        value = getattr(job, name)
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"job {name} must be a non-empty string, got {value!r}")
        _check_header_safe(name, value)
    if len(job.key.encode("utf-8", "surrogatepass")) > 1024:
        raise ConfigurationError("job key is longer than S3's 1024-byte limit")
    for mapping_name in ("metadata", "tags"):
        for k, v in getattr(job, mapping_name).items():
            if not isinstance(k, str) or not isinstance(v, str) or not k:
                raise ConfigurationError(f"job {mapping_name} must map non-empty str to str")
            _check_header_safe(f"{mapping_name} {k!r}", k + v)
    info = os.stat(job.local_path)
    if not stat.S_ISREG(info.st_mode):
        raise ConfigurationError(f"{job.local_path} is not a regular file")
    return info.st_size


def _check_header_safe(name: str, value: str) -> None:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ConfigurationError(f"job {name} contains control characters")


@dataclass(frozen=True, slots=True)
class UploadResult:
    """A verified upload: the store holds exactly the bytes of the local file, now deleted."""

    bucket: str
    key: str
    etag: str
    size_bytes: int
    attempts: int
    duration_s: float
    parts: int
    local_path: Path
    version_id: str | None = None


class UploadHandle:
    """What enqueue returns: await it for the `UploadResult`, or ignore it without warnings.

    Awaiting raises `UploadFailedError` if the job failed for good. Cancelling the task that
    awaits does not cancel the upload.
    """

    __slots__ = ("_future", "job")

    def __init__(self, job: RecordingJob, future: asyncio.Future[UploadResult]) -> None:
        self.job = job
        self._future = future
        future.add_done_callback(_mark_retrieved)

    def __await__(self) -> Generator[Any, None, UploadResult]:
        return asyncio.shield(self._future).__await__()

    def done(self) -> bool:
        """True once the job has succeeded or failed."""
        return self._future.done()

    def result(self) -> UploadResult:
        """The result of a finished job (raises like awaiting, or InvalidStateError if pending)."""
        return self._future.result()

    def __repr__(self) -> str:
        state = "pending" if not self._future.done() else "done"
        return f"<UploadHandle s3://{self.job.bucket}/{self.job.key} {state}>"


def _mark_retrieved(future: asyncio.Future[UploadResult]) -> None:
    """Reads the exception so asyncio does not log "never retrieved" for ignored handles."""
    if not future.cancelled():
        future.exception()
