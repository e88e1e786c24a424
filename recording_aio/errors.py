"""The exceptions recording_aio raises.

Every error derives from `RecordingError` and also from the builtin a caller would
naturally catch, so `except ValueError` keeps working around our calls::

    RecordingError
    ├── ConfigurationError        (ValueError)   a bad option, name or key
    ├── InvalidSamplesError       (ValueError, TypeError)   a frame we cannot take as int16 PCM
    ├── SampleRateMismatchError   (ValueError)   a frame at another sample rate
    ├── RecordingTooLargeError    (ValueError)   a write that would cross the 4 GiB WAV limit
    ├── RecorderClosedError       (ValueError)   a write after aclose(), like a closed file
    ├── RecordingExistsError      (FileExistsError)   open_recorder never overwrites
    ├── InvalidWavError           (ValueError)   a file that is not a PCM WAV we can read
    ├── QueueFullError            (asyncio.QueueFull)   enqueue_nowait on a full queue
    ├── UploaderClosedError       (RuntimeError) an uploader not started, or shut down
    ├── SpoolLockedError          (RuntimeError) a spool directory another uploader holds
    └── UploadFailedError         (OSError)      a job that failed for good; its file is kept
"""

from __future__ import annotations

import asyncio
from pathlib import Path


class RecordingError(Exception):
    """Root of every error raised by recording_aio."""


class ConfigurationError(RecordingError, ValueError):
    """An option, a file name or an object key was rejected; nothing was changed."""


class InvalidSamplesError(RecordingError, ValueError, TypeError):
    """A frame could not be taken as 16-bit PCM; the recording is unchanged and stays writable."""


class SampleRateMismatchError(RecordingError, ValueError):
    """A frame was passed at a sample rate other than the recorder's; nothing was written."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(
            f"frame has sample_rate={got} but the recorder was opened at {expected} Hz; "
            "resample before write_samples() or open a recorder at that rate"
        )
        self.expected = expected
        self.got = got


class RecordingTooLargeError(RecordingError, ValueError):
    """A frame would make the WAV larger than its 32-bit sizes allow; nothing was written."""


class RecorderClosedError(RecordingError, ValueError):
    """The recorder is closed (or closing) and takes no more frames."""


class RecordingExistsError(RecordingError, FileExistsError):
    """The recording file already exists; recordings are never overwritten."""


class InvalidWavError(RecordingError, ValueError):
    """The file is not a PCM WAV this library can read; it was left untouched."""


class QueueFullError(RecordingError, asyncio.QueueFull):
    """The upload queue is full; the job was not taken and its file stays where it is."""


class UploaderClosedError(RecordingError, RuntimeError):
    """The uploader is not running (not started yet, or shut down) and takes no jobs."""


class SpoolLockedError(RecordingError, RuntimeError):
    """Another uploader holds the spool directory; two may not share one."""


class UploadFailedError(RecordingError, OSError):
    """A job failed for good. Its local file is kept (and, with a spool, retried at next start).

    Attributes:
        bucket, key, local_path: the job.
        reason: a short machine-readable cause, the same as the failed-jobs metric label.
        attempts: HTTP attempts made for this job.
    """

    def __init__(
        self,
        message: str,
        *,
        bucket: str,
        key: str,
        local_path: Path,
        reason: str,
        attempts: int,
    ) -> None:
        super().__init__(message)
        self.bucket = bucket
        self.key = key
        self.local_path = local_path
        self.reason = reason
        self.attempts = attempts

    def __str__(self) -> str:
        return str(self.args[0])
