"""Record voice conversations to WAV files and ship them to S3 from asyncio.

Never loses a recording, never stalls the event loop. See README.md for a tour.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

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
from .uploader import AsyncUploader
from .wav import WavInfo, find_unfinished, read_wav_info, repair_wav

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
