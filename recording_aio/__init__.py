"""Record voice conversations to WAV files and ship them to S3 from asyncio.

Never loses a recording, never stalls the event loop. See README.md for a tour.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from .errors import (
    ConfigurationError,
    InvalidSamplesError,
    InvalidWavError,
    QueueFullError,
    RecorderClosedError,
    RecordingError,
    RecordingExistsError,
    RecordingTooLargeError,
    SampleRateMismatchError,
    SpoolLockedError,
    UploaderClosedError,
    UploadFailedError,
)
from .jobs import RecordingJob, UploadHandle, UploadResult
from .keys import build_s3_key
from .recorder import AsyncFileRecorder, ConversationRecorder, LocalFileInfo, open_recorder
from .wav import WavInfo, find_unfinished, read_wav_info, repair_wav

if TYPE_CHECKING:
    from .uploader import AsyncUploader

try:
    __version__ = version("recording-aio")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "AsyncFileRecorder",
    "AsyncUploader",
    "ConfigurationError",
    "ConversationRecorder",
    "InvalidSamplesError",
    "InvalidWavError",
    "LocalFileInfo",
    "QueueFullError",
    "RecorderClosedError",
    "RecordingError",
    "RecordingExistsError",
    "RecordingJob",
    "RecordingTooLargeError",
    "SampleRateMismatchError",
    "SpoolLockedError",
    "UploadFailedError",
    "UploadHandle",
    "UploadResult",
    "UploaderClosedError",
    "WavInfo",
    "__version__",
    "build_s3_key",
    "find_unfinished",
    "open_recorder",
    "read_wav_info",
    "repair_wav",
]


def __getattr__(name: str) -> Any:
    # The uploader pulls in aiobotocore and aiohttp (about 0.3 s); a process that only
    # records, or the inspect/repair commands, should not pay for them.
    if name == "AsyncUploader":
        from .uploader import AsyncUploader

        globals()[name] = AsyncUploader
        return AsyncUploader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
