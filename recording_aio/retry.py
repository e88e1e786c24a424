"""When to retry a failed request to the store, and how long to wait first.

Retried: throttling, 5xx, timeouts, connection errors and bodies that arrived damaged (BadDigest
from AWS S3, XAmzContentChecksumMismatch from MinIO, or our own check).
Not retried: other 4xx (access denied, no such bucket, ...), bad credentials and local
file problems, which no amount of waiting fixes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)

_THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
    }
)
_TRANSIENT_CODES = frozenset(
    {"RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable"}
)
_DAMAGED_CODES = frozenset(
    {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "XAmzContentChecksumMismatch"}
)
_FATAL_REASONS = {
    "AccessDenied": "access_denied",
    "InvalidAccessKeyId": "access_denied",
    "SignatureDoesNotMatch": "access_denied",
    "AllAccessDisabled": "access_denied",
    "NoSuchBucket": "no_such_bucket",
    "NoSuchUpload": "no_such_upload",
}


class ChecksumMismatchError(Exception):
    """The store's answer does not prove it holds our bytes; the upload must be redone."""


class UnverifiableUploadError(Exception):
    """The store's answer lacks the checksum to compare, and will lack it on every retry."""


@dataclass(frozen=True, slots=True)
class Failure:
    """A classified failure: whether to retry, and a low-cardinality reason for metrics."""

    retryable: bool
    reason: str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, at most `max_retries` retries per request.

    All times are seconds. The n-th retry waits a uniform random time in
    [0, min(backoff_max, backoff_base * 2**(n-1))], which spreads out many workers that
    hit the same throttled store.
    """

    max_retries: int = 3
    backoff_base: float = 0.1
    backoff_max: float = 20.0

    def backoff(self, retry_number: int) -> float:
        """Seconds to wait before retry number `retry_number` (1-based)."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (retry_number - 1))
        return random.uniform(0.0, ceiling)


def classify(exc: BaseException) -> Failure:
    """Decides whether `exc`, raised by a request to the store, is worth retrying."""
    if isinstance(exc, ClientError):
        return _classify_client_error(exc)
    if isinstance(exc, ChecksumMismatchError):
        return Failure(True, "damaged")
    if isinstance(exc, UnverifiableUploadError):
        return Failure(False, "unverified")
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError | TimeoutError):
        return Failure(True, "timeout")
    # EndpointConnectionError is botocore's, not the builtin ConnectionError: aiobotocore raises
    # it for any aiohttp connection error, a connection reset while sending the body included.
    if isinstance(
        exc, HTTPClientError | ResponseStreamingError | EndpointConnectionError | ConnectionError
    ):
        return Failure(True, "connection")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return Failure(False, "credentials")
    if isinstance(exc, ParamValidationError):
        return Failure(False, "invalid_request")
    if isinstance(exc, FileNotFoundError):
        return Failure(False, "missing_file")
    if isinstance(exc, OSError):
        return Failure(False, "local_io")
    return Failure(False, "unexpected")


def _classify_client_error(exc: ClientError) -> Failure:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _THROTTLING_CODES or status == 429:
        return Failure(True, "throttled")
    if code in _DAMAGED_CODES:
        return Failure(True, "damaged")
    if code in _TRANSIENT_CODES or status >= 500:
        return Failure(True, "server_error")
    if code in _FATAL_REASONS:
        return Failure(False, _FATAL_REASONS[code])
    return Failure(False, "client_error")
