"""The durable spool: one JSON file per accepted job, written before enqueue returns.

An entry is written atomically (temp file, fsync, rename, fsync of the directory) and
removed only after its upload was verified and its local file deleted, so a crash at any
moment leaves either the job in the spool or its object in the store. An exclusive lock
keeps two uploaders from sharing a spool by accident.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._fs import fsync_directory
from .errors import SpoolLockedError
from .jobs import RecordingJob

log = logging.getLogger("recording_aio")

_VERSION = 1
_SUFFIX = ".job.json"
_LOCK_NAME = ".lock"
_DEAD_DIR = "dead"


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """A spooled job with what earlier attempts left: attempts, last error, multipart id."""

    id: str
    job: RecordingJob
    size_bytes: int
    enqueued_at: str
    attempts: int = 0
    last_error: str | None = None
    upload_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": _VERSION,
            "id": self.id,
            "job": self.job.to_json(),
            "size_bytes": self.size_bytes,
            "enqueued_at": self.enqueued_at,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "upload_id": self.upload_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SpoolEntry:
        if not isinstance(data, dict):
            raise ValueError(f"a spool entry is a JSON object, not {type(data).__name__}")
        if data.get("version") != _VERSION:
            raise ValueError(f"unknown spool entry version {data.get('version')!r}")
        return cls(
            id=str(data["id"]),
            job=RecordingJob.from_json(data["job"]),
            size_bytes=int(data["size_bytes"]),
            enqueued_at=str(data["enqueued_at"]),
            attempts=int(data["attempts"]),
            last_error=data.get("last_error"),
            upload_id=data.get("upload_id"),
        )


def new_entry(job: RecordingJob, size_bytes: int) -> SpoolEntry:
    """An entry for a job being accepted (not yet written)."""
    return SpoolEntry(
        id=uuid.uuid4().hex,
        job=job,
        size_bytes=size_bytes,
        enqueued_at=datetime.now(UTC).isoformat(),
    )


class Spool:
    """A locked spool directory. Its methods block (fsync): call them off the event loop."""

    def __init__(self, directory: Path, lock_fd: int) -> None:
        self.directory = directory
        self._lock_fd = lock_fd

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> Spool:
        """Creates the directory (0o700) if needed and takes its exclusive lock.

        Raises:
            SpoolLockedError: another uploader, in this process or another, holds it.
        """
        path = Path(directory)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolLockedError(
                f"spool {path} is in use by another uploader; give each uploader its own "
                "spool_dir, or shut the other one down first"
            ) from None
        return cls(path, fd)

    def close(self) -> None:
        """Releases the lock."""
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def save(self, entry: SpoolEntry) -> None:
        """Writes (or replaces) an entry atomically and durably."""
        final = self.directory / f"{entry.id}{_SUFFIX}"
        temp = final.with_name(f".{entry.id}.tmp")
        payload = json.dumps(entry.to_json(), separators=(",", ":")).encode()
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, final)
        fsync_directory(self.directory)

    def remove(self, entry: SpoolEntry) -> None:
        """Deletes an entry once its job is done."""
        with contextlib.suppress(FileNotFoundError):
            (self.directory / f"{entry.id}{_SUFFIX}").unlink()
            fsync_directory(self.directory)

    def bury(self, entry: SpoolEntry, reason: str) -> None:
        """Moves an entry that can never succeed to `dead/`, for an operator to look at."""
        dead = self.directory / _DEAD_DIR
        dead.mkdir(mode=0o700, exist_ok=True)
        self.save(replace(entry, last_error=reason))
        os.replace(self.directory / f"{entry.id}{_SUFFIX}", dead / f"{entry.id}{_SUFFIX}")
        fsync_directory(dead)
        fsync_directory(self.directory)

    def load(self) -> list[SpoolEntry]:
        """Every readable entry, oldest first; corrupt or foreign files are logged and skipped."""
        entries: list[SpoolEntry] = []
        for path in sorted(self.directory.iterdir()):
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)  # a write interrupted by a crash
            elif path.name.endswith(_SUFFIX) and path.is_file():
                try:
                    entries.append(SpoolEntry.from_json(json.loads(path.read_bytes())))
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("skipping unreadable spool entry %s: %s", path.name, exc)
        entries.sort(key=lambda e: e.enqueued_at)
        return entries
