"""Putting one file in the store, verified: single PUT or multipart, with retries per request.

Knows nothing of queues or spools. The store must prove it holds our bytes before the
caller may delete the file: every answer is compared with our own checksum (`checksums.py`
says which). Where the answer holds none to compare, a HEAD confirms the size and, where the
store returns one, the checksum. Hashing and file reads run in threads.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from botocore.exceptions import ClientError

from ._body import MemoryBody
from .checksums import Checksum, Crc32Checksum, etag
from .jobs import RecordingJob
from .retry import ChecksumMismatchError, RetryPolicy, classify

log = logging.getLogger("recording_aio")

T = TypeVar("T")

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB
MAX_PARTS = 10_000
_ABORT_TIMEOUT = 2.0
_PROBE_BODY = b"recording_aio asks: does this store check x-amz-checksum-crc32?"
_CANNOT_ASK = frozenset({"access_denied", "no_such_bucket", "credentials"})


class TransferError(Exception):
    """A transfer that failed for good; `reason` is the low-cardinality cause."""

    def __init__(self, message: str, *, reason: str, retries: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.retries = retries


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """Per-object settings sent with both single and multipart uploads."""

    storage_class: str | None = None
    sse: str | None = None
    sse_kms_key_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def request_args(self) -> dict[str, str]:
        args: dict[str, str] = {}
        if self.storage_class:
            args["StorageClass"] = self.storage_class
        if self.sse:
            args["ServerSideEncryption"] = self.sse
        if self.sse_kms_key_id:
            args["SSEKMSKeyId"] = self.sse_kms_key_id
        if self.tags:
            args["Tagging"] = urlencode(self.tags)
        return args


@dataclass(frozen=True, slots=True)
class TransferSettings:
    """How to upload: retry policy, multipart sizes (bytes), and the threads that read and
    hash the file."""

    policy: RetryPolicy
    multipart_threshold: int
    part_size: int
    part_concurrency: int
    executor: Executor


@dataclass(frozen=True, slots=True)
class Transferred:
    """A verified object in the store."""

    etag: str
    size_bytes: int
    parts: int
    retries: int
    version_id: str | None


OnRetry = Callable[[str, int, BaseException], None]
OnUploadId = Callable[[str | None], Awaitable[None]]


class Transfer:
    """Uploads one job's file with `client` (an aiobotocore S3 client), proven by `checksum`."""

    def __init__(
        self,
        client: Any,
        job: RecordingJob,
        options: StoreOptions,
        settings: TransferSettings,
        checksum: Checksum,
        *,
        on_retry: OnRetry,
        on_upload_id: OnUploadId,
    ) -> None:
        self._client = client
        self._job = job
        self._options = options
        self._settings = settings
        self._on_retry = on_retry
        self._on_upload_id = on_upload_id
        self._retries = 0
        self._checksum = checksum
        self._object_args: dict[str, Any] = {
            "Bucket": job.bucket,
            "Key": job.key,
            "ContentType": job.content_type,
            "Metadata": dict(job.metadata),
            **options.request_args(),
        }

    async def run(self) -> Transferred:
        """Uploads and verifies, or raises TransferError (or CancelledError)."""
        try:
            size, data, digest = await self._in_thread(
                self._read_small, self._job.local_path, self._settings.multipart_threshold
            )
        except OSError as exc:
            raise self._failure(exc) from exc
        if data is None:
            return await self._multipart(size)
        return await self._single(data, digest)

    async def _single(self, data: bytes, digest: bytes) -> Transferred:
        async def put() -> dict[str, Any]:
            response: dict[str, Any] = await self._client.put_object(
                Body=MemoryBody(data), **self._checksum.body_args(digest), **self._object_args
            )
            await self._verify(response, self._checksum.expected(digest), len(data))
            return response

        response = await self._with_retries("PutObject", put)
        return Transferred(
            etag=etag(response),
            size_bytes=len(data),
            parts=0,
            retries=self._retries,
            version_id=response.get("VersionId"),
        )

    async def _multipart(self, size: int) -> Transferred:
        part_size = _part_size(size, self._settings.part_size)
        count = math.ceil(size / part_size)
        retries_before = self._retries
        created = await self._with_retries(
            "CreateMultipartUpload",
            lambda: self._client.create_multipart_upload(
                **self._checksum.create_args(), **self._object_args
            ),
        )
        upload_id: str = created["UploadId"]
        ids = {"Bucket": self._job.bucket, "Key": self._job.key, "UploadId": upload_id}
        try:
            await self._on_upload_id(upload_id)
            if self._retries > retries_before:
                # A failed attempt (a timeout, say) may have created an upload all the same.
                await self.abort_unrecorded(keep=upload_id)
            digests, parts = await self._upload_parts(ids, size, part_size, count)
            expected = self._checksum.expected_whole(digests)

            async def complete() -> dict[str, Any]:
                response: dict[str, Any] = await self._client.complete_multipart_upload(
                    MultipartUpload={"Parts": parts}, **ids
                )
                await self._verify(response, expected, size)
                return response

            response = await self._with_retries("CompleteMultipartUpload", complete)
        except BaseException:
            await self._abort(ids)
            raise
        await self._on_upload_id(None)
        if self._retries > retries_before:
            # A create that failed on our side may reach the store late; by now it has.
            await self.abort_unrecorded()
        return Transferred(
            etag=etag(response),
            size_bytes=size,
            parts=count,
            retries=self._retries,
            version_id=response.get("VersionId"),
        )

    async def _upload_parts(
        self, ids: dict[str, str], size: int, part_size: int, count: int
    ) -> tuple[list[bytes], list[dict[str, Any]]]:
        """Uploads the parts, `part_concurrency` at once, each read from disk when its turn comes.

        At most `part_concurrency` parts are in memory, whatever the file size. Returns the
        parts' digests and their entries for CompleteMultipartUpload.
        """
        digests: list[bytes] = [b""] * count
        parts: list[dict[str, Any]] = [{}] * count
        numbers: Iterator[int] = iter(range(count))
        fd = await self._in_thread(os.open, self._job.local_path, os.O_RDONLY | os.O_CLOEXEC)

        async def lane() -> None:
            for n in numbers:
                offset = n * part_size
                data, digest = await self._in_thread(
                    self._read_range, fd, offset, min(part_size, size - offset)
                )

                async def put_part(
                    data: bytes = data, digest: bytes = digest, n: int = n
                ) -> dict[str, Any]:
                    response: dict[str, Any] = await self._client.upload_part(
                        Body=MemoryBody(data),
                        PartNumber=n + 1,
                        **self._checksum.body_args(digest),
                        **ids,
                    )
                    await self._verify(response, self._checksum.expected(digest), None)
                    return response

                response = await self._with_retries("UploadPart", put_part)
                digests[n] = digest
                parts[n] = self._checksum.completed_part(n + 1, digest, response)

        try:
            lanes = [asyncio.ensure_future(lane()) for _ in range(self._settings.part_concurrency)]
            try:
                await asyncio.gather(*lanes)
            except BaseException:
                for task in lanes:
                    task.cancel()
                await asyncio.gather(*lanes, return_exceptions=True)
                raise
        finally:
            os.close(fd)
        return digests, parts

    async def _in_thread(self, func: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._settings.executor, func, *args)

    def _read_small(self, path: Path, threshold: int) -> tuple[int, bytes | None, bytes]:
        """The file's size and, below `threshold`, its bytes and digest: one thread hop."""
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size >= threshold:
                return size, None, b""
            data = f.read()
        return len(data), data, self._checksum.digest(data)

    def _read_range(self, fd: int, offset: int, length: int) -> tuple[bytes, bytes]:
        data = os.pread(fd, length, offset)
        if len(data) != length:
            raise OSError(f"file shrank while uploading: read {len(data)} of {length} bytes")
        return data, self._checksum.digest(data)

    async def abort_stale(self, upload_id: str) -> None:
        """Aborts a multipart upload of this job that an earlier run left open.

        Retried like any request; an upload the store no longer knows counts as aborted.
        Raises TransferError when it cannot be aborted, so the caller keeps the id.
        """

        async def abort() -> None:
            try:
                await self._client.abort_multipart_upload(
                    Bucket=self._job.bucket, Key=self._job.key, UploadId=upload_id
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                    raise

        await self._with_retries("AbortMultipartUpload", abort)

    async def abort_unrecorded(self, keep: str | None = None) -> None:
        """Aborts the multipart uploads of this job's key whose ids were never recorded.

        A CreateMultipartUpload whose answer was lost (a crash while it was in flight, or a
        timeout after the store had acted) leaves such an upload behind; listing the key's
        open uploads finds it. It holds no parts, since parts go up only once the id is
        known, so this is best effort: when the listing (s3:ListBucketMultipartUploads) or
        an abort fails, a warning is logged and the job goes on. `keep` is the upload in use.
        """

        async def listing() -> dict[str, Any]:
            response: dict[str, Any] = await self._client.list_multipart_uploads(
                Bucket=self._job.bucket, Prefix=self._job.key
            )
            return response

        try:
            listed = await self._with_retries("ListMultipartUploads", listing)
            for upload in listed.get("Uploads", []):
                if upload.get("Key") == self._job.key and upload.get("UploadId") != keep:
                    await self.abort_stale(str(upload["UploadId"]))
        except TransferError as exc:
            log.warning(
                "could not clean up open multipart uploads of s3://%s/%s (%s); such an upload "
                "holds no data, and a lifecycle rule (AbortIncompleteMultipartUpload) removes it",
                self._job.bucket,
                self._job.key,
                exc.reason,
            )

    async def stored_size(self) -> int | None:
        """The size of the object at the job's key, or None when there is none.

        Raises TransferError when the store cannot tell (after retries).
        """

        async def head() -> int | None:
            try:
                response = await self._client.head_object(
                    Bucket=self._job.bucket, Key=self._job.key
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                    return None
                raise
            return int(response["ContentLength"])

        return await self._with_retries("HeadObject", head)

    async def store_checks_crc32(self) -> bool | None:
        """Asks the store whether it checks the CRC32 of a body and returns it; leaves nothing.

        In a multipart upload of the job's key, aborted at the end (and until then recorded
        like any upload of the job, so a crash does not leave it behind), a small part sent
        with a wrong `x-amz-checksum-crc32` must be refused as damaged, and the same part with
        the right one accepted with that CRC32 in the answer. Returns True when both hold,
        False when the store shows it does not check (it takes the wrong checksum, refuses
        the header, or returns none) and None when it could not be asked (a server or network
        failure, access denied, no such bucket). One attempt per request, no retries.
        """
        crc32 = Crc32Checksum()
        try:
            created = await self._client.create_multipart_upload(
                Bucket=self._job.bucket, Key=self._job.key, **crc32.create_args()
            )
        except Exception as exc:
            return _probe_refusal(exc)
        ids = {"Bucket": self._job.bucket, "Key": self._job.key, "UploadId": created["UploadId"]}
        try:
            await self._on_upload_id(ids["UploadId"])
            digest = crc32.digest(_PROBE_BODY)
            wrong = crc32.digest(_PROBE_BODY[::-1])
            try:
                await self._client.upload_part(
                    Body=_PROBE_BODY, PartNumber=1, **crc32.body_args(wrong), **ids
                )
            except Exception as exc:
                if classify(exc).reason != "damaged":
                    return _probe_refusal(exc)
            else:
                return False
            try:
                response = await self._client.upload_part(
                    Body=_PROBE_BODY, PartNumber=1, **crc32.body_args(digest), **ids
                )
            except Exception as exc:
                return _probe_refusal(exc)
            returned = crc32.returned(response)
            return returned is not None and crc32.same(returned, crc32.expected(digest))
        finally:
            await self._abort(ids)

    async def _abort(self, ids: dict[str, str]) -> None:
        """Aborts a multipart upload that cannot finish; bounded, so shutdown stays prompt."""
        try:
            async with asyncio.timeout(_ABORT_TIMEOUT):
                await asyncio.shield(self._client.abort_multipart_upload(**ids))
        except Exception as exc:
            log.warning(
                "could not abort multipart upload of s3://%s/%s (%s); it is aborted at the "
                "next start if the job is spooled",
                self._job.bucket,
                self._job.key,
                type(exc).__name__,
            )
        else:
            await self._on_upload_id(None)

    async def _verify(self, response: dict[str, Any], expected: str, size: int | None) -> None:
        """Raises unless the store's answer proves it holds the bytes whose checksum we expect.

        `size` is the object's size for a whole object, None for a part.
        """
        returned = self._checksum.returned(response)
        if returned is None and size is not None:
            head = await self._client.head_object(
                Bucket=self._job.bucket, Key=self._job.key, **self._checksum.head_args()
            )
            if head.get("ContentLength") != size:
                raise ChecksumMismatchError(
                    f"store holds {head.get('ContentLength')} bytes, expected {size}"
                )
            returned = self._checksum.returned(head)
        if returned is None:
            self._checksum.without_returned()
        elif not self._checksum.same(returned, expected):
            raise ChecksumMismatchError(
                f"store reports {returned!r}, expected {expected!r}: the body was damaged on "
                "the way"
            )

    async def _with_retries(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        retry = 0
        while True:
            try:
                return await call()
            except Exception as exc:
                failure = classify(exc)
                if not failure.retryable or retry >= self._settings.policy.max_retries:
                    raise self._failure(exc, what, retry) from exc
                retry += 1
                self._retries += 1
                self._on_retry(failure.reason, retry, exc)
                await asyncio.sleep(self._settings.policy.backoff(retry))

    def _failure(self, exc: BaseException, what: str = "reading", retry: int = 0) -> TransferError:
        failure = classify(exc)
        tried = f" after {retry + 1} attempts" if failure.retryable else ""
        return TransferError(
            f"{what} for s3://{self._job.bucket}/{self._job.key} failed{tried}: "
            f"{type(exc).__name__}: {exc}",
            reason="retries_exhausted" if failure.retryable else failure.reason,
            retries=self._retries,
        )


def _probe_refusal(exc: Exception) -> bool | None:
    """What a failed probe request says: False when the store refused what was asked, so it
    does not take CRC32 checksums; None when it could not be asked."""
    if not isinstance(exc, ClientError):
        return None
    if exc.response.get("Error", {}).get("Code") == "NotImplemented":
        return False
    failure = classify(exc)
    if failure.retryable or failure.reason in _CANNOT_ASK:
        return None
    return False


def _part_size(size: int, wanted: int) -> int:
    """The part size to use: at least `wanted` and 5 MiB, and few enough parts for S3."""
    needed = math.ceil(size / MAX_PARTS)
    return max(wanted, MIN_PART_SIZE, math.ceil(needed / MiB) * MiB)
