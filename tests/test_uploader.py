"""AsyncUploader over real HTTP: moto's S3 server, behind the fault proxy where faults are needed.

Every test checks what the store received (attempts at the proxy, object bytes by GET), what
became of the local file, the handle's result or error, and the uploader's metrics.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import os
import threading
import time
import uuid
import warnings
from pathlib import Path

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.client import BaseClient
from faultproxy import (
    ACCESS_DENIED,
    INTERNAL_ERROR,
    NO_SUCH_BUCKET,
    SLOW_DOWN,
    Fault,
    FaultProxy,
    RequestInfo,
    always,
    fail_first,
)
from prometheus_client import CollectorRegistry
from s3fixtures import ACCESS_KEY, REGION, SECRET_KEY, stored
from uploads import (
    DURATION_COUNT,
    ENQUEUED,
    FAILED,
    IN_FLIGHT,
    QUEUE_DEPTH,
    RETRIES,
    SUCCESS,
    UPLOADED_BYTES,
    Metrics,
    new_uploader,
    wait_until,
    write_file,
)

from recording_aio import (
    AsyncUploader,
    ConfigurationError,
    QueueFullError,
    RecordingError,
    RecordingJob,
    UploaderClosedError,
    UploadFailedError,
    UploadHandle,
    UploadResult,
)


def put_outcomes(proxy: FaultProxy) -> list[tuple[str, int | None]]:
    """(outcome, status) of every PutObject the proxy saw, in order."""
    return [(r.outcome, r.status) for r in proxy.requests if r.info.op == "PutObject"]


async def wait_for(handle: UploadHandle) -> UploadResult:
    """Awaits a handle from a task of its own."""
    return await handle


def failure_of(handle: UploadHandle) -> UploadFailedError:
    """The UploadFailedError of a finished handle."""
    with pytest.raises(UploadFailedError) as excinfo:
        handle.result()
    return excinfo.value


# -- the success path ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", [None, "audio/x-wav"], ids=["default-content-type", "custom-content-type"]
)
async def test_upload_stores_the_exact_object_then_deletes_the_file(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
    content_type: str | None,
) -> None:
    """One PUT stores the file's bytes, type and metadata; the file is deleted; metrics count it."""
    f = write_file(tmp_path, "call-1.wav", 10_000)
    extra = {} if content_type is None else {"content_type": content_type}
    job = f.job(bucket, metadata={"call-id": "c-1", "agent": "bot"}, **extra)
    async with new_uploader(fault_proxy.url, registry) as up:
        result = await (await up.enqueue(job))
        assert up.qsize() == 0
        assert up.in_flight == 0

    assert put_outcomes(fault_proxy) == [("forwarded", 200)]
    assert len(fault_proxy.requests) == 1
    assert stored(s3, bucket, job.key) == f.data
    head = s3.head_object(Bucket=bucket, Key=job.key)
    assert head["ContentType"] == (content_type or "audio/wav")
    assert head["Metadata"] == {"call-id": "c-1", "agent": "bot"}
    assert head["ContentLength"] == 10_000
    assert not f.path.exists()

    assert result.bucket == bucket
    assert result.key == job.key
    assert result.etag == f.md5
    assert result.size_bytes == 10_000
    assert result.attempts == 1
    assert result.parts == 0
    assert result.local_path == f.path
    assert result.duration_s > 0

    assert metrics.value(ENQUEUED) == 1.0
    assert metrics.value(SUCCESS) == 1.0
    assert metrics.value(UPLOADED_BYTES) == 10_000.0
    assert metrics.value(DURATION_COUNT) == 1.0
    assert metrics.value(QUEUE_DEPTH) == 0.0
    assert metrics.value(IN_FLIGHT) == 0.0
    assert metrics.by_label(FAILED, "reason") == {}
    assert metrics.by_label(RETRIES, "reason") == {}


# -- retryable failures --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "reason", "read_timeout"),
    [
        pytest.param(INTERNAL_ERROR, "server_error", 5.0, id="500-internal-error"),
        pytest.param(SLOW_DOWN, "throttled", 5.0, id="503-slow-down"),
        pytest.param(Fault.reset(), "connection", 5.0, id="reset-mid-body"),
        pytest.param(Fault.stall(3.0), "timeout", 0.5, id="stall-past-read-timeout"),
        pytest.param(Fault.flip_bit(), "damaged", 5.0, id="flipped-bit-in-body"),
        pytest.param(
            Fault.error(400, "BadDigest", "The CRC32 you specified did not match."),
            "damaged",
            5.0,
            id="400-bad-digest-aws",
        ),
        pytest.param(
            Fault.error(
                400,
                "XAmzContentChecksumMismatch",
                "The provided 'x-amz-checksum' header does not match what was computed.",
            ),
            "damaged",
            5.0,
            id="400-checksum-mismatch-minio",
        ),
        pytest.param(Fault.bad_etag(), "damaged", 5.0, id="corrupted-response-etag"),
    ],
)
async def test_retryable_failure_is_retried_until_the_upload_succeeds(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
    fault: Fault,
    reason: str,
    read_timeout: float,
) -> None:
    """Two failed PUTs of one kind, then a good one: three attempts, an exact object, no file."""
    f = write_file(tmp_path, "call.wav", 64 * 1024)
    job = f.job(bucket)
    fault_proxy.set_rule(fail_first(2, fault, op="PutObject"))
    async with new_uploader(
        fault_proxy.url, registry, read_timeout=read_timeout, max_retries=3
    ) as up:
        result = await (await up.enqueue(job))

    outcomes = [outcome for outcome, _ in put_outcomes(fault_proxy)]
    assert outcomes == [fault.kind, fault.kind, "forwarded"]
    if fault.kind in ("flip_bit", "bad_etag"):
        # The store answered 200 to the damaged attempts: only our own check caught them.
        assert [status for _, status in put_outcomes(fault_proxy)] == [200, 200, 200]
    assert stored(s3, bucket, job.key) == f.data
    assert not f.path.exists()
    assert result.etag == f.md5
    assert result.attempts == 3, (
        f"the proxy saw 3 PUT attempts but UploadResult.attempts is {result.attempts} and the "
        f"retries metric is {metrics.by_label(RETRIES, 'reason')}: a layer under the "
        "uploader's retry loop resent the request without it knowing"
    )
    assert metrics.by_label(RETRIES, "reason") == {reason: 2.0}
    assert metrics.value(SUCCESS) == 1.0
    assert metrics.by_label(FAILED, "reason") == {}


async def test_damaged_body_the_store_accepted_is_never_taken_as_uploaded(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
) -> None:
    """Every PUT damaged yet answered 200: the job fails, its file stays (verify before delete)."""
    f = write_file(tmp_path, "call.wav", 32 * 1024)
    job = f.job(bucket)
    fault_proxy.set_rule(always(Fault.flip_bit(), op="PutObject"))
    async with new_uploader(fault_proxy.url, registry, max_retries=2) as up:
        handle = await up.enqueue(job)
        with pytest.raises(UploadFailedError) as excinfo:
            await handle

    assert put_outcomes(fault_proxy) == [("flip_bit", 200)] * 3
    damaged = stored(s3, bucket, job.key)
    assert damaged is not None
    assert len(damaged) == len(f.data)
    assert sum(bin(a ^ b).count("1") for a, b in zip(damaged, f.data, strict=True)) == 1
    assert f.intact()
    assert excinfo.value.reason == "retries_exhausted"
    assert excinfo.value.attempts == 3
    assert metrics.by_label(RETRIES, "reason") == {"damaged": 2.0}
    assert metrics.by_label(FAILED, "reason") == {"retries_exhausted": 1.0}
    assert metrics.value(SUCCESS) == 0.0


# -- retries exhausted ---------------------------------------------------------------------


@pytest.mark.parametrize("max_retries", [0, 1, 3])
async def test_max_retries_allows_exactly_that_many_retries(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
    max_retries: int,
) -> None:
    """With every PUT failing, max_retries=N makes N+1 attempts, then the job fails, file kept."""
    f = write_file(tmp_path, "call.wav")
    job = f.job(bucket)
    fault_proxy.set_rule(always(INTERNAL_ERROR, op="PutObject"))
    async with new_uploader(fault_proxy.url, registry, max_retries=max_retries) as up:
        handle = await up.enqueue(job)
        with pytest.raises(UploadFailedError) as excinfo:
            await handle

    assert put_outcomes(fault_proxy) == [("error", 500)] * (max_retries + 1)
    assert len(fault_proxy.requests) == max_retries + 1
    error = excinfo.value
    assert isinstance(error, RecordingError)
    assert isinstance(error, OSError)
    assert error.reason == "retries_exhausted"
    assert error.attempts == max_retries + 1
    assert (error.bucket, error.key, error.local_path) == (bucket, job.key, f.path)
    assert f.intact()
    assert stored(s3, bucket, job.key) is None
    assert metrics.by_label(FAILED, "reason") == {"retries_exhausted": 1.0}
    expected_retries = {"server_error": float(max_retries)} if max_retries else {}
    assert metrics.by_label(RETRIES, "reason") == expected_retries
    assert metrics.value(SUCCESS) == 0.0
    assert metrics.value(QUEUE_DEPTH) == 0.0


async def test_max_retries_counts_connection_resets_too(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
) -> None:
    """Every PUT reset mid-body with max_retries=1: exactly two attempts reach the store."""
    f = write_file(tmp_path, "call.wav", 64 * 1024)
    fault_proxy.set_rule(always(Fault.reset(), op="PutObject"))
    async with new_uploader(fault_proxy.url, registry, max_retries=1) as up:
        handle = await up.enqueue(f.job(bucket))
        with pytest.raises(UploadFailedError) as excinfo:
            await handle

    attempts = fault_proxy.count(op="PutObject")
    assert attempts == 2, (
        f"max_retries=1 must mean at most 2 HTTP attempts, all layers counted, but the store "
        f"saw {attempts} (the uploader counted {excinfo.value.attempts}): aiohttp resends an "
        "idempotent PUT once by itself when the connection drops, under the uploader's "
        "retry loop"
    )
    assert excinfo.value.reason == "retries_exhausted"
    assert f.intact()
    assert metrics.by_label(RETRIES, "reason") == {"connection": 1.0}


# -- permanent failures --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        pytest.param(ACCESS_DENIED, "access_denied", id="403-access-denied"),
        pytest.param(NO_SUCH_BUCKET, "no_such_bucket", id="404-no-such-bucket"),
    ],
)
async def test_permanent_failure_fails_at_once(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
    fault: Fault,
    reason: str,
) -> None:
    """A permanent error ends the job after one attempt, however many retries are allowed."""
    f = write_file(tmp_path, "call.wav")
    job = f.job(bucket)
    fault_proxy.set_rule(always(fault, op="PutObject"))
    async with new_uploader(fault_proxy.url, registry, max_retries=5) as up:
        handle = await up.enqueue(job)
        with pytest.raises(UploadFailedError) as excinfo:
            await handle

    assert put_outcomes(fault_proxy) == [("error", fault.status)]
    assert excinfo.value.reason == reason
    assert excinfo.value.attempts == 1
    assert f.intact()
    assert stored(s3, bucket, job.key) is None
    assert metrics.by_label(FAILED, "reason") == {reason: 1.0}
    assert metrics.by_label(RETRIES, "reason") == {}
    assert metrics.value(SUCCESS) == 0.0


async def test_missing_bucket_fails_at_once(
    tmp_path: Path, fault_proxy: FaultProxy, registry: CollectorRegistry, metrics: Metrics
) -> None:
    """A bucket the store does not have: one attempt, reason no_such_bucket, the file kept."""
    f = write_file(tmp_path, "call.wav")
    async with new_uploader(fault_proxy.url, registry, max_retries=5) as up:
        handle = await up.enqueue(f.job(f"missing-{uuid.uuid4().hex}"))
        with pytest.raises(UploadFailedError) as excinfo:
            await handle

    assert put_outcomes(fault_proxy) == [("forwarded", 404)]
    assert excinfo.value.reason == "no_such_bucket"
    assert f.intact()
    assert metrics.by_label(FAILED, "reason") == {"no_such_bucket": 1.0}
    assert metrics.by_label(RETRIES, "reason") == {}


async def test_file_deleted_after_enqueue_fails_as_missing_file(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
) -> None:
    """A file removed between enqueue and upload fails with reason missing_file, no request."""
    f = write_file(tmp_path, "call.wav")
    async with new_uploader(fault_proxy.url, registry, max_retries=5) as up:
        handle = up.enqueue_nowait(f.job(bucket))
        f.path.unlink()  # no await since enqueue: no worker has taken the job yet
        with pytest.raises(UploadFailedError) as excinfo:
            await handle

    assert excinfo.value.reason == "missing_file"
    assert fault_proxy.requests == []
    assert metrics.by_label(FAILED, "reason") == {"missing_file": 1.0}
    assert metrics.by_label(RETRIES, "reason") == {}


# -- enqueue -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["enqueue", "enqueue_nowait"])
@pytest.mark.parametrize("case", ["empty-bucket", "empty-key", "directory", "missing-path"])
async def test_invalid_job_is_rejected_by_enqueue_itself(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
    method: str,
    case: str,
) -> None:
    """An invalid job raises a clear error from enqueue and nothing is queued or sent."""
    f = write_file(tmp_path, "call.wav")
    cases: dict[str, tuple[RecordingJob, type[Exception], str]] = {
        "empty-bucket": (RecordingJob(f.path, "", "k.wav"), ConfigurationError, "bucket"),
        "empty-key": (RecordingJob(f.path, bucket, ""), ConfigurationError, "key"),
        "directory": (
            RecordingJob(tmp_path, bucket, "k.wav"),
            ConfigurationError,
            "not a regular file",
        ),
        "missing-path": (
            RecordingJob(tmp_path / "nope.wav", bucket, "k.wav"),
            FileNotFoundError,
            r"nope\.wav",
        ),
    }
    job, error, message = cases[case]
    async with new_uploader(fault_proxy.url, registry) as up:

        async def submit() -> None:
            if method == "enqueue":
                await up.enqueue(job)
            else:
                up.enqueue_nowait(job)

        with pytest.raises(error, match=message):
            await submit()
        assert up.qsize() == 0
        assert up.in_flight == 0

    assert metrics.value(ENQUEUED) == 0.0
    assert metrics.value(QUEUE_DEPTH) == 0.0
    assert fault_proxy.requests == []
    assert f.intact()


async def test_enqueue_nowait_on_a_full_queue_raises_and_leaves_the_file(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
) -> None:
    """With the worker busy and the queue full, enqueue_nowait raises QueueFullError."""
    files = [write_file(tmp_path, f"call-{i}.wav") for i in range(4)]
    fault_proxy.set_rule(fail_first(1, Fault.stall(0.5, then_forward=True), op="PutObject"))
    async with new_uploader(fault_proxy.url, registry, workers=1, queue_size=2) as up:
        handles = [up.enqueue_nowait(files[0].job(bucket))]
        await wait_until(
            "a PUT to reach the proxy", lambda: fault_proxy.count(op="PutObject") == 1, timeout=5.0
        )
        handles += [up.enqueue_nowait(f.job(bucket)) for f in files[1:3]]
        with pytest.raises(QueueFullError, match="full") as excinfo:
            up.enqueue_nowait(files[3].job(bucket))
        assert isinstance(excinfo.value, asyncio.QueueFull)
        assert isinstance(excinfo.value, RecordingError)
        assert up.qsize() == 2
        assert metrics.value(QUEUE_DEPTH) == 2.0
        assert metrics.value(ENQUEUED) == 3.0
        results = [await handle for handle in handles]

    assert [r.key for r in results] == [f.job(bucket).key for f in files[:3]]
    for f in files[:3]:
        assert stored(s3, bucket, f.job(bucket).key) == f.data
        assert not f.path.exists()
    assert files[3].intact()
    assert stored(s3, bucket, files[3].job(bucket).key) is None
    assert fault_proxy.count(op="PutObject") == 3
    assert metrics.value(QUEUE_DEPTH) == 0.0


async def test_enqueue_waits_for_room_then_proceeds(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
) -> None:
    """`await enqueue` on a full queue waits until a worker frees a slot, then accepts the job."""
    files = [write_file(tmp_path, f"call-{i}.wav") for i in range(3)]
    fault_proxy.set_rule(fail_first(1, Fault.stall(1.0, then_forward=True), op="PutObject"))
    async with new_uploader(fault_proxy.url, registry, workers=1, queue_size=1) as up:
        first = up.enqueue_nowait(files[0].job(bucket))
        await wait_until(
            "a PUT to reach the proxy", lambda: fault_proxy.count(op="PutObject") == 1, timeout=5.0
        )
        second = up.enqueue_nowait(files[1].job(bucket))
        waiting = asyncio.create_task(up.enqueue(files[2].job(bucket)))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        assert up.qsize() == 1
        assert metrics.value(ENQUEUED) == 2.0
        third = await asyncio.wait_for(waiting, 5)
        assert first.done()  # room came from the worker finishing the stalled job
        results = [await handle for handle in (first, second, third)]

    assert [r.attempts for r in results] == [1, 1, 1]
    for f in files:
        assert stored(s3, bucket, f.job(bucket).key) == f.data
        assert not f.path.exists()
    assert metrics.value(ENQUEUED) == 3.0
    assert metrics.value(SUCCESS) == 3.0


async def test_enqueue_before_start_and_after_shutdown_raises_closed(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
) -> None:
    """An uploader not started, or shut down, refuses jobs with UploaderClosedError."""
    f = write_file(tmp_path, "call.wav")
    job = f.job(bucket)
    up = new_uploader(fault_proxy.url, registry)

    async def refuse_all() -> None:
        with pytest.raises(UploaderClosedError):
            up.enqueue_nowait(job)
        with pytest.raises(UploaderClosedError):
            await up.enqueue(job)
        with pytest.raises(UploaderClosedError):
            up.enqueue_threadsafe(job)

    await refuse_all()
    await up.start()
    await up.shutdown(timeout=5)
    await refuse_all()
    assert issubclass(UploaderClosedError, RuntimeError)
    assert f.intact()
    assert metrics.value(ENQUEUED) == 0.0
    assert fault_proxy.requests == []


# -- shutdown ------------------------------------------------------------------------------


async def test_shutdown_drains_the_queue(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
) -> None:
    """Jobs still queued at shutdown are all uploaded when they finish within the timeout."""
    files = [write_file(tmp_path, f"call-{i}.wav") for i in range(6)]
    up = new_uploader(fault_proxy.url, registry, workers=2, queue_size=8)
    await up.start()
    handles = [up.enqueue_nowait(f.job(bucket)) for f in files]
    await up.shutdown(timeout=10)

    assert all(handle.done() for handle in handles)
    assert [handle.result().key for handle in handles] == [f.job(bucket).key for f in files]
    for f in files:
        assert stored(s3, bucket, f.job(bucket).key) == f.data
        assert not f.path.exists()
    assert fault_proxy.count(op="PutObject") == 6
    assert metrics.value(SUCCESS) == 6.0
    assert metrics.value(QUEUE_DEPTH) == 0.0


async def test_shutdown_timeout_cancels_stalled_uploads_and_keeps_their_files(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
) -> None:
    """With uploads stalled, shutdown(timeout=1) returns promptly and every job keeps its file."""
    files = [write_file(tmp_path, f"call-{i}.wav") for i in range(5)]
    fault_proxy.set_rule(always(Fault.stall(30.0), op="PutObject"))
    up = new_uploader(fault_proxy.url, registry, workers=2, read_timeout=60.0)
    await up.start()
    handles = [up.enqueue_nowait(f.job(bucket)) for f in files]
    await wait_until(
        "two PUTs to reach the proxy", lambda: fault_proxy.count(op="PutObject") == 2, timeout=5.0
    )

    started = time.monotonic()
    await up.shutdown(timeout=1)
    elapsed = time.monotonic() - started

    assert 0.9 <= elapsed <= 1 + 2.5, f"shutdown(timeout=1) took {elapsed:.2f} s"
    for handle in handles:
        assert handle.done()
        error = failure_of(handle)
        assert error.reason == "shutdown"
        assert error.local_path == handle.job.local_path
    for f in files:
        assert f.intact()
        assert stored(s3, bucket, f.job(bucket).key) is None
    assert fault_proxy.count(op="PutObject") == 2
    assert up.in_flight == 0
    assert up.qsize() == 0
    assert metrics.value(SUCCESS) == 0.0
    assert metrics.value(QUEUE_DEPTH) == 0.0
    assert metrics.value(IN_FLIGHT) == 0.0


async def test_shutdown_is_idempotent(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
) -> None:
    """Concurrent and repeated shutdowns are harmless, started or not."""
    f = write_file(tmp_path, "call.wav")
    up = new_uploader(fault_proxy.url, registry)
    await up.start()
    handle = up.enqueue_nowait(f.job(bucket))
    await asyncio.gather(up.shutdown(timeout=5), up.shutdown(timeout=5))
    await up.shutdown(timeout=5)
    assert up.is_closing
    assert handle.result().size_bytes == len(f.data)
    assert stored(s3, bucket, f.job(bucket).key) == f.data

    never_started = new_uploader(fault_proxy.url, CollectorRegistry())
    await never_started.shutdown(timeout=1)
    await never_started.shutdown(timeout=1)
    with pytest.raises(UploaderClosedError):
        await never_started.start()


async def test_async_with_exit_shuts_down(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
) -> None:
    """Leaving `async with`, normally or by an exception, drains the queue and closes."""
    files = [write_file(tmp_path, f"call-{i}.wav") for i in range(4)]
    up = new_uploader(fault_proxy.url, registry)
    async with up:
        handles = [up.enqueue_nowait(f.job(bucket)) for f in files[:2]]
    assert up.is_closing
    with pytest.raises(UploaderClosedError):
        up.enqueue_nowait(files[2].job(bucket))

    failing = new_uploader(fault_proxy.url, CollectorRegistry())

    async def enqueue_then_raise() -> None:
        async with failing:
            handles.append(failing.enqueue_nowait(files[3].job(bucket)))
            raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await enqueue_then_raise()
    assert failing.is_closing

    assert all(handle.done() for handle in handles)
    assert [handle.result().attempts for handle in handles] == [1, 1, 1]
    for f in (files[0], files[1], files[3]):
        assert stored(s3, bucket, f.job(bucket).key) == f.data
        assert not f.path.exists()
    assert files[2].intact()


# -- cancellation --------------------------------------------------------------------------


async def test_cancelling_a_task_awaiting_the_handle_does_not_cancel_the_upload(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
) -> None:
    """The upload goes on after the task awaiting its handle is cancelled."""
    f = write_file(tmp_path, "call.wav")
    fault_proxy.set_rule(fail_first(1, Fault.stall(0.5, then_forward=True), op="PutObject"))
    async with new_uploader(fault_proxy.url, registry) as up:
        handle = await up.enqueue(f.job(bucket))
        waiter = asyncio.create_task(wait_for(handle))
        await wait_until(
            "a PUT to reach the proxy", lambda: fault_proxy.count(op="PutObject") == 1, timeout=5.0
        )
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert not handle.done()
        result = await handle

    assert result.attempts == 1
    assert put_outcomes(fault_proxy) == [("stall", 200)]
    assert stored(s3, bucket, f.job(bucket).key) == f.data
    assert not f.path.exists()
    assert metrics.value(SUCCESS) == 1.0


async def test_cancelling_a_blocked_enqueue_queues_nothing(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
) -> None:
    """A task cancelled while `await enqueue` waits for room leaves no job behind."""
    files = [write_file(tmp_path, f"call-{i}.wav") for i in range(3)]
    fault_proxy.set_rule(fail_first(1, Fault.stall(0.5, then_forward=True), op="PutObject"))
    async with new_uploader(fault_proxy.url, registry, workers=1, queue_size=1) as up:
        handles = [up.enqueue_nowait(files[0].job(bucket))]
        await wait_until(
            "a PUT to reach the proxy", lambda: fault_proxy.count(op="PutObject") == 1, timeout=5.0
        )
        handles.append(up.enqueue_nowait(files[1].job(bucket)))
        blocked = asyncio.create_task(up.enqueue(files[2].job(bucket)))
        await asyncio.sleep(0.1)
        assert not blocked.done()
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        assert up.qsize() == 1
        assert metrics.value(ENQUEUED) == 2.0
        results = [await handle for handle in handles]

    assert len(results) == 2
    assert fault_proxy.count(op="PutObject") == 2
    assert files[2].intact()
    assert stored(s3, bucket, files[2].job(bucket).key) is None
    assert metrics.value(ENQUEUED) == 2.0
    assert metrics.value(SUCCESS) == 2.0
    assert metrics.value(QUEUE_DEPTH) == 0.0


# -- other threads -------------------------------------------------------------------------


async def test_enqueue_threadsafe_from_a_plain_thread(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
) -> None:
    """From another thread, enqueue_threadsafe returns a concurrent future of the UploadResult."""
    f = write_file(tmp_path, "call.wav")
    job = f.job(bucket)
    async with new_uploader(fault_proxy.url, registry) as up:

        def from_thread() -> tuple[object, UploadResult]:
            future = up.enqueue_threadsafe(job)
            return future, future.result(timeout=10)

        future, result = await asyncio.to_thread(from_thread)

    assert isinstance(future, concurrent.futures.Future)
    assert result.key == job.key
    assert result.etag == f.md5
    assert stored(s3, bucket, job.key) == f.data
    assert not f.path.exists()
    assert metrics.value(ENQUEUED) == 1.0
    assert metrics.value(SUCCESS) == 1.0


async def test_enqueue_threadsafe_on_the_loop_thread_raises(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
) -> None:
    """Called on the uploader's own loop, enqueue_threadsafe raises RuntimeError at once."""
    f = write_file(tmp_path, "call.wav")
    async with new_uploader(fault_proxy.url, registry) as up:
        with pytest.raises(RuntimeError, match="own loop") as excinfo:
            up.enqueue_threadsafe(f.job(bucket))
        assert not isinstance(excinfo.value, UploaderClosedError)
        assert up.qsize() == 0
    assert metrics.value(ENQUEUED) == 0.0
    assert fault_proxy.requests == []
    assert f.intact()


# -- load ----------------------------------------------------------------------------------


async def test_two_hundred_jobs_over_eight_workers_upload_once_each(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
) -> None:
    """200 small jobs on 8 workers: 200 PUTs, 200 exact objects, no file left, metrics 200."""
    files = [write_file(tmp_path, f"call-{i:03}.wav", 512 + 7 * i) for i in range(200)]
    async with new_uploader(fault_proxy.url, registry, workers=8, queue_size=32) as up:
        handles = [await up.enqueue(f.job(bucket)) for f in files]
        results = await asyncio.gather(*handles)

    assert fault_proxy.count(op="PutObject") == 200
    assert fault_proxy.count(op="PutObject", outcome="forwarded") == 200
    assert sorted(r.key for r in results) == sorted(f.job(bucket).key for f in files)
    assert {r.attempts for r in results} == {1}
    listed = s3.list_objects_v2(Bucket=bucket, MaxKeys=1000)
    assert listed["KeyCount"] == 200
    for f in files:
        assert stored(s3, bucket, f.job(bucket).key) == f.data
        assert not f.path.exists()
    total = float(sum(len(f.data) for f in files))
    assert metrics.value(ENQUEUED) == 200.0
    assert metrics.value(SUCCESS) == 200.0
    assert metrics.value(UPLOADED_BYTES) == total
    assert metrics.value(DURATION_COUNT) == 200.0
    assert metrics.value(QUEUE_DEPTH) == 0.0
    assert metrics.value(IN_FLIGHT) == 0.0


# -- handles nobody awaits -----------------------------------------------------------------


async def test_ignored_handles_cause_no_warnings_or_unretrieved_errors(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Handles of jobs that succeed or fail may be dropped unawaited without any complaint."""
    good = write_file(tmp_path, "good.wav")
    bad = write_file(tmp_path, "bad.wav")
    good_by_thread = write_file(tmp_path, "good-thread.wav")
    bad_by_thread = write_file(tmp_path, "bad-thread.wav")

    def deny_bad(info: RequestInfo) -> Fault | None:
        return ACCESS_DENIED if info.op == "PutObject" and "bad" in info.path else None

    fault_proxy.set_rule(deny_bad)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with new_uploader(fault_proxy.url, registry) as up:
            up.enqueue_nowait(good.job(bucket))
            await up.enqueue(bad.job(bucket))
            await asyncio.to_thread(up.enqueue_threadsafe, good_by_thread.job(bucket))
            await asyncio.to_thread(up.enqueue_threadsafe, bad_by_thread.job(bucket))
            await wait_until(
                "the queue to drain", lambda: up.qsize() == 0 and up.in_flight == 0, timeout=5.0
            )
        gc.collect()
        await asyncio.sleep(0.01)
        gc.collect()

    assert [str(w.message) for w in caught] == []
    unretrieved = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert unretrieved == []
    assert metrics.value(SUCCESS) == 2.0
    assert metrics.by_label(FAILED, "reason") == {"access_denied": 2.0}
    assert stored(s3, bucket, good.job(bucket).key) == good.data
    assert stored(s3, bucket, good_by_thread.job(bucket).key) == good_by_thread.data
    assert bad.intact()
    assert bad_by_thread.intact()


# -- metrics registries --------------------------------------------------------------------


async def test_two_named_uploaders_on_one_registry_keep_separate_series(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
) -> None:
    """Two uploaders with different names run at once on one registry, each with its series."""
    a_files = [write_file(tmp_path, f"a-{i}.wav", 1000) for i in range(3)]
    b_files = [write_file(tmp_path, f"b-{i}.wav", 3000) for i in range(2)]
    fault_proxy.set_rule(fail_first(1, SLOW_DOWN, op="PutObject"))
    async with (
        new_uploader(fault_proxy.url, registry, name="alpha", workers=1) as alpha,
        new_uploader(fault_proxy.url, registry, name="beta", workers=1) as beta,
    ):
        alpha_handles = [alpha.enqueue_nowait(f.job(bucket)) for f in a_files]
        beta_handles = [beta.enqueue_nowait(f.job(bucket)) for f in b_files]
        await asyncio.gather(*alpha_handles, *beta_handles)

    for f in a_files + b_files:
        assert stored(s3, bucket, f.job(bucket).key) == f.data
    a, b = Metrics(registry, "alpha"), Metrics(registry, "beta")
    assert (a.value(ENQUEUED), b.value(ENQUEUED)) == (3.0, 2.0)
    assert (a.value(SUCCESS), b.value(SUCCESS)) == (3.0, 2.0)
    assert (a.value(UPLOADED_BYTES), b.value(UPLOADED_BYTES)) == (3000.0, 6000.0)
    assert (a.value(DURATION_COUNT), b.value(DURATION_COUNT)) == (3.0, 2.0)
    retries = (a.by_label(RETRIES, "reason"), b.by_label(RETRIES, "reason"))
    assert retries in (({"throttled": 1.0}, {}), ({}, {"throttled": 1.0}))
    assert Metrics(registry, "default").value(ENQUEUED) is None


async def test_default_named_uploaders_on_a_shared_registry_do_not_collide(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
) -> None:
    """Two uploaders with the default name on one registry construct, run and share a series."""
    files = [write_file(tmp_path, f"call-{i}.wav") for i in range(2)]
    async with (
        new_uploader(fault_proxy.url, registry) as first,
        new_uploader(fault_proxy.url, registry) as second,
    ):
        await asyncio.gather(
            await first.enqueue(files[0].job(bucket)), await second.enqueue(files[1].job(bucket))
        )

    for f in files:
        assert stored(s3, bucket, f.job(bucket).key) == f.data
    assert metrics.value(ENQUEUED) == 2.0
    assert metrics.value(SUCCESS) == 2.0


# -- a client the caller owns --------------------------------------------------------------


async def test_caller_owned_client_is_used_and_not_closed(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client passed in carries the uploads, with our retries alone, and outlives shutdown."""
    f = write_file(tmp_path, "call.wav")
    job = f.job(bucket)
    fault_proxy.set_rule(fail_first(1, INTERNAL_ERROR, op="PutObject"))
    config = AioConfig(retries={"total_max_attempts": 1}, read_timeout=5, connect_timeout=2)
    async with get_session().create_client(
        "s3", endpoint_url=fault_proxy.url, region_name=REGION, config=config
    ) as client:
        up = AsyncUploader(client=client, registry=registry, backoff_base=0.001, max_retries=1)
        async with up:
            result = await (await up.enqueue(job))
        head = await client.head_object(Bucket=bucket, Key=job.key)

    assert put_outcomes(fault_proxy) == [("error", 500), ("forwarded", 200)]
    assert fault_proxy.count(op="HeadObject") == 1
    assert head["ContentLength"] == len(f.data)
    assert result.attempts == 2
    assert stored(s3, bucket, job.key) == f.data
    assert not f.path.exists()
    assert metrics.by_label(RETRIES, "reason") == {"server_error": 1.0}
    assert [r for r in caplog.records if "retries on its own" in r.getMessage()] == []


async def test_caller_owned_client_with_its_own_retries_logs_a_warning(
    fault_proxy: FaultProxy, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A client left with botocore's retries on draws one warning when given to the uploader."""
    async with get_session().create_client(
        "s3", endpoint_url=fault_proxy.url, region_name=REGION
    ) as client:
        AsyncUploader(client=client, registry=registry)

    warned = [r for r in caplog.records if "retries on its own" in r.getMessage()]
    assert len(warned) == 1
    assert warned[0].levelno == logging.WARNING
    assert warned[0].name == "recording_aio"
    assert "total_max_attempts" in warned[0].getMessage()


# -- logging -------------------------------------------------------------------------------


async def test_logs_a_warning_per_retry_and_an_error_per_failed_job(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    bucket: str,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each retried attempt logs one WARNING, each job failed for good one ERROR; no secrets."""
    caplog.set_level(logging.DEBUG, logger="recording_aio")
    flaky = write_file(tmp_path, "flaky.wav")
    doomed = write_file(tmp_path, "doomed.wav")
    async with new_uploader(fault_proxy.url, registry, max_retries=2) as up:
        fault_proxy.set_rule(fail_first(2, SLOW_DOWN, op="PutObject"))
        await (await up.enqueue(flaky.job(bucket)))
        fault_proxy.set_rule(always(INTERNAL_ERROR, op="PutObject"))
        handle = await up.enqueue(doomed.job(bucket))
        with pytest.raises(UploadFailedError):
            await handle

    ours = [r for r in caplog.records if r.name.startswith("recording_aio")]
    retried = [r.getMessage() for r in ours if r.levelno == logging.WARNING]
    failed = [r.getMessage() for r in ours if r.levelno == logging.ERROR]
    assert len(retried) == 4
    assert len(failed) == 1
    for message, (local, attempt) in zip(
        retried, [(flaky, 1), (flaky, 2), (doomed, 1), (doomed, 2)], strict=True
    ):
        assert f"bucket={bucket}" in message
        assert f"key={local.job(bucket).key}" in message
        assert f"attempt={attempt}" in message
        assert "ClientError" in message
    assert f"bucket={bucket}" in failed[0]
    assert f"key={doomed.job(bucket).key}" in failed[0]
    assert "attempts=3" in failed[0]
    assert "ClientError" in failed[0]
    assert "retries_exhausted" in failed[0]
    assert_no_credentials(caplog)


def assert_no_credentials(caplog: pytest.LogCaptureFixture) -> None:
    """No log record, message, arguments or traceback, holds the test credentials."""
    for secret in (SECRET_KEY, ACCESS_KEY):
        for record in caplog.records:
            assert secret not in record.getMessage(), record.getMessage()
            assert secret not in repr(record.args)
            assert secret not in (record.exc_text or "")
        assert secret not in caplog.text


# -- a worker survives the unexpected ------------------------------------------------------


async def test_unexpected_error_fails_that_job_only_and_the_worker_goes_on(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug-like error in one upload fails its handle, keeps its file, and later jobs upload."""
    from recording_aio import transfer

    real_run = transfer.Transfer.run
    calls = 0

    async def run_once_broken(self: transfer.Transfer) -> transfer.Transferred:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return await real_run(self)

    monkeypatch.setattr(transfer.Transfer, "run", run_once_broken)
    broken, fine = write_file(tmp_path, "broken.wav"), write_file(tmp_path, "fine.wav")
    async with new_uploader(fault_proxy.url, registry, workers=1) as up:
        first = await up.enqueue(broken.job(bucket))
        with pytest.raises(UploadFailedError) as failure:
            await first
        result = await (await up.enqueue(fine.job(bucket)))

    assert failure.value.reason == "unexpected"
    assert broken.intact()
    assert stored(s3, bucket, broken.job(bucket).key) is None
    assert result.size_bytes == len(fine.data)
    assert stored(s3, bucket, fine.job(bucket).key) == fine.data
    assert metrics.value(FAILED, reason="unexpected") == 1.0
    assert "unexpected error uploading" in caplog.text


# -- sharing the event loop ----------------------------------------------------------------

SCHED_IDLE = getattr(os, "SCHED_IDLE", None)


@pytest.mark.skipif(SCHED_IDLE is None, reason="SCHED_IDLE is Linux-only")
@pytest.mark.parametrize(
    ("idle_priority", "policy"),
    [(True, SCHED_IDLE), (False, getattr(os, "SCHED_OTHER", None))],
    ids=["idle", "normal"],
)
async def test_file_reads_and_checksums_run_in_threads_of_the_asked_priority(
    tmp_path: Path,
    s3_endpoint: str,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    idle_priority: bool,
    policy: int,
) -> None:
    """The uploader's own threads read and hash; the loop's default executor is left alone."""
    small = write_file(tmp_path, "small.wav", 10_000)
    large = write_file(tmp_path, "large.wav", 6 << 20)  # two parts
    options = {"multipart_threshold": 5 << 20, "part_size": 5 << 20, "part_concurrency": 1}
    async with new_uploader(
        s3_endpoint, registry, name="prio", idle_priority=idle_priority, **options
    ) as up:
        for f in (small, large):
            await (await up.enqueue(f.job(bucket)))
        io_threads = [
            t for t in threading.enumerate() if t.name.startswith("recording-aio-io-prio")
        ]
        policies = {os.sched_getscheduler(t.native_id or 0) for t in io_threads}
        default_executor_policy = await asyncio.to_thread(os.sched_getscheduler, 0)

    assert io_threads
    assert policies == {policy}
    assert default_executor_policy == os.SCHED_OTHER
    assert stored(s3, bucket, small.job(bucket).key) == small.data
    assert stored(s3, bucket, large.job(bucket).key) == large.data
    await wait_until("io threads to exit", lambda: not any(t.is_alive() for t in io_threads))


async def test_the_loop_runs_other_callbacks_while_a_request_is_prepared(
    tmp_path: Path, s3_endpoint: str, bucket: str, registry: CollectorRegistry
) -> None:
    """botocore's preparation of a request is split: other callbacks run after the parameters
    are built and again after the request is signed."""
    loop = asyncio.get_running_loop()
    ran: list[str] = []
    seen: dict[str, list[str]] = {}

    def parameters_built(**_: object) -> None:
        loop.call_soon(ran.append, "after parameters")

    def request_created(**_: object) -> None:  # runs before the request is signed
        seen["before signing"] = list(ran)
        loop.call_soon(ran.append, "after signing")

    def before_send(**_: object) -> None:
        seen["before sending"] = list(ran)

    session = get_session()
    session.register("before-parameter-build.s3.PutObject", parameters_built)
    session.register("request-created.s3.PutObject", request_created)
    session.register("before-send", before_send)  # the least specific runs last
    f = write_file(tmp_path, "call.wav")
    async with new_uploader(s3_endpoint, registry, session=session) as up:
        await (await up.enqueue(f.job(bucket)))

    assert seen == {
        "before signing": ["after parameters"],
        "before sending": ["after parameters", "after signing"],
    }
