"""AsyncUploader: a pool of worker tasks that upload finished recordings to S3.

Jobs flow enqueue → (spool) → queue → worker → transfer → store → local file deleted →
spool entry removed. Every step that can fail leaves the file, and with a spool its entry,
for a later attempt: a recording is never lost to a full queue, exhausted retries, a
shutdown deadline or a crash.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import functools
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

import aiofiles.os
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.config import Config
from prometheus_client import CollectorRegistry

from ._http import CountedAttemptsSession, skip_expect_continue, yield_to_loop
from ._threads import io_executor
from .checksums import CHECKSUM_MODES, Checksum, ChecksumChoice, ChecksumMode
from .errors import (
    ConfigurationError,
    QueueFullError,
    UploaderClosedError,
    UploadFailedError,
)
from .jobs import RecordingJob, UploadHandle, UploadResult, check_job
from .metrics import UploaderMetrics
from .retry import RetryPolicy
from .spool import Spool, SpoolEntry, new_entry
from .transfer import MiB, StoreOptions, Transfer, TransferError, TransferSettings

log = logging.getLogger("recording_aio")


class _State(enum.Enum):
    UNSTARTED = "unstarted"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class _Pending:
    """A job between acceptance and its end: the entry (spooled or not) and its handle."""

    __slots__ = ("entry", "future", "recovered", "spooled")

    def __init__(
        self,
        entry: SpoolEntry,
        future: asyncio.Future[UploadResult],
        spooled: bool,
        recovered: bool = False,
    ):
        self.entry = entry
        self.future = future
        self.spooled = spooled
        self.recovered = recovered


class AsyncUploader:
    """Uploads `RecordingJob`s with `workers` concurrent tasks; use with `async with`.

    Example::

        async with AsyncUploader(workers=4, spool_dir="/var/spool/rec-jobs") as up:
            handle = await up.enqueue(RecordingJob(info.path, "calls", key))
            result = await handle          # optional: UploadResult, or UploadFailedError

    Args:
        workers: concurrent uploads.
        queue_size: jobs that may wait for a worker; `enqueue_nowait` raises QueueFullError
            beyond it and `enqueue` waits for room.
        max_retries: retries per request; each request makes at most max_retries + 1 HTTP
            attempts in all (botocore's own retries are turned off).
        backoff_base, backoff_max: exponential backoff with full jitter, in seconds.
        endpoint_url, region_name: the store; for S3-compatible stores give endpoint_url
            (path-style addressing is then the default).
        client_config: a botocore `Config` merged over the uploader's defaults, e.g.
            `Config(read_timeout=10, max_pool_connections=50)`.
        session: an aiobotocore session (credentials and region from it).
        client: a ready S3 client; the caller owns its lifetime. Configure it with
            `retries={"total_max_attempts": 1}` or attempts multiply.
        spool_dir: where accepted jobs are persisted before enqueue returns; jobs found there
            are enqueued again by `start()`. Without it, jobs live only in memory.
        registry: Prometheus registry for the metrics (default: the global one).
        name: the `uploader` label of the metrics and the name in logs.
        multipart_threshold, part_size, part_concurrency: files of multipart_threshold bytes
            or more go up in parts of part_size bytes, part_concurrency at once; an upload
            holds at most part_size * part_concurrency bytes of the file in memory.
        checksum: how the store proves it holds a file's bytes before the file is deleted.
            "md5" compares the ETag with our MD5 and works with any store; "crc32" sends
            `x-amz-checksum-crc32` and compares what the store returns: about 7x cheaper to
            compute, but a proof only where the store checks it, as AWS S3 does (moto, for
            one, echoes it unchecked). "auto" (default): "crc32" on AWS S3 endpoints
            (`*.amazonaws.com`); on any other the first job asks the store, in a multipart
            upload it aborts, and it is "crc32" where the store refuses a wrong CRC32 and
            returns the right one, "md5" where not. See `recording_aio.checksums`.
        idle_priority: run the file reads and checksums in threads of idle CPU priority
            (SCHED_IDLE, on Linux), so that the event loop never waits for a core while
            they hash. They get every core nothing else wants; on a host whose cores are
            all busy all the time they get little, and uploads slow down: pass False there.
        storage_class, sse, sse_kms_key_id, tags: defaults for the jobs' store options.
        shutdown_timeout: what `async with` exit passes to `shutdown()`, in seconds.
    """

    def __init__(
        self,
        *,
        workers: int = 2,
        queue_size: int = 32,
        max_retries: int = 3,
        backoff_base: float = 0.1,
        backoff_max: float = 20.0,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client_config: Config | None = None,
        session: AioSession | None = None,
        client: Any = None,
        spool_dir: str | os.PathLike[str] | None = None,
        registry: CollectorRegistry | None = None,
        name: str = "default",
        multipart_threshold: int = 16 * MiB,
        part_size: int = 8 * MiB,
        part_concurrency: int = 4,
        checksum: ChecksumMode = "auto",
        idle_priority: bool = True,
        storage_class: str | None = None,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        tags: dict[str, str] | None = None,
        shutdown_timeout: float = 30.0,
    ) -> None:
        _check_positive(workers=workers, queue_size=queue_size, part_concurrency=part_concurrency)
        if max_retries < 0 or backoff_base < 0 or backoff_max < 0:
            raise ConfigurationError("max_retries, backoff_base and backoff_max must be >= 0")
        if part_size < 5 * MiB:
            raise ConfigurationError(
                f"part_size must be at least 5 MiB (S3's minimum), got {part_size}"
            )
        if not 0 < multipart_threshold <= part_size * part_concurrency:
            raise ConfigurationError(
                f"multipart_threshold ({multipart_threshold}) must be > 0 and at most "
                f"part_size * part_concurrency ({part_size * part_concurrency}), which bounds "
                "the memory of one upload; raise part_concurrency to raise it"
            )
        if checksum not in CHECKSUM_MODES:
            raise ConfigurationError(
                f"checksum must be one of {', '.join(CHECKSUM_MODES)}, got {checksum!r}"
            )
        self._workers_count = workers
        self._queue_size = queue_size
        self._policy = RetryPolicy(max_retries, backoff_base, backoff_max)
        self._multipart_threshold = multipart_threshold
        self._part_size = part_size
        self._part_concurrency = part_concurrency
        self._checksum_mode = checksum
        self._idle_priority = idle_priority
        # Set by start(), once the client's endpoint is known:
        self._settings: TransferSettings
        self._checksums: ChecksumChoice
        self._defaults = StoreOptions(storage_class, sse, sse_kms_key_id, dict(tags or {}))
        self._endpoint_url = endpoint_url
        self._region_name = region_name
        self._client_config = client_config
        self._session = session
        self._client: Any = client
        self._owns_client = client is None
        self._spool_dir = None if spool_dir is None else Path(spool_dir)
        self._spool: Spool | None = None
        self._name = name
        self._shutdown_timeout = shutdown_timeout
        self._metrics = UploaderMetrics(name, registry)
        self._state = _State.UNSTARTED
        self._queue: deque[_Pending] = deque()
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self._work_ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._background: set[asyncio.Future[None]] = set()
        self._recovered: list[UploadHandle] = []
        self._in_flight = 0
        self._workers: list[asyncio.Task[None]] = []
        self._exit_stack = AsyncExitStack()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown_task: asyncio.Future[None] | None = None
        if client is not None:
            _warn_if_client_retries(client)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Opens the client and the spool, re-enqueues spooled jobs and starts the workers."""
        if self._state is not _State.UNSTARTED:
            raise UploaderClosedError(f"uploader {self._name!r} was already started")
        self._loop = asyncio.get_running_loop()
        try:
            if self._spool_dir is not None:
                self._spool = await asyncio.to_thread(Spool.open, self._spool_dir)
                self._exit_stack.callback(self._spool.close)
            if self._client is None:
                session = self._session or get_session()
                self._client = await self._exit_stack.enter_async_context(
                    session.create_client(
                        "s3",
                        endpoint_url=self._endpoint_url,
                        region_name=self._region_name,
                        config=client_config(
                            self._client_config,
                            self._endpoint_url,
                            connections=self._workers_count * self._part_concurrency,
                        ),
                    )
                )
                events = self._client.meta.events
                events.register_last("before-call.s3", skip_expect_continue)
                events.register_last("before-call.s3", yield_to_loop)
                events.register_last("before-send.s3", yield_to_loop)
            endpoint = getattr(getattr(self._client, "meta", None), "endpoint_url", None)
            executor = io_executor(self._name, idle_priority=self._idle_priority)
            self._exit_stack.callback(executor.shutdown, wait=False)
            self._settings = TransferSettings(
                self._policy,
                self._multipart_threshold,
                self._part_size,
                self._part_concurrency,
                executor,
            )
            self._checksums = ChecksumChoice(self._checksum_mode, endpoint)
            if self._spool is not None:
                await self._recover(self._spool)
        except BaseException:
            await self._exit_stack.aclose()
            self._state = _State.CLOSED
            raise
        self._state = _State.RUNNING
        self._workers = [
            asyncio.create_task(self._worker(), name=f"recording-aio-upload-{self._name}-{i}")
            for i in range(self._workers_count)
        ]

    async def shutdown(self, timeout: float | None = 30.0) -> None:  # noqa: ASYNC109 (the API)
        """Stops taking jobs, drains the queue for up to `timeout` seconds, then cancels.

        Jobs not finished by then keep their files (and spool entries, tried again at the
        next start); their handles raise UploadFailedError with reason "shutdown".
        Idempotent; returns within about `timeout` plus the time to abort open multipart
        uploads (bounded at 2 s).
        """
        if self._state is _State.UNSTARTED:
            self._state = _State.CLOSED
            return
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.ensure_future(self._shutdown(timeout))
        await asyncio.shield(self._shutdown_task)

    async def _shutdown(self, timeout: float | None) -> None:  # noqa: ASYNC109
        self._state = _State.CLOSING
        for waiter in self._room_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._work_ready.set()
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            log.warning(
                "uploader %r: shutdown timeout of %ss reached with %d jobs queued and %d in "
                "flight; their files are kept",
                self._name,
                timeout,
                len(self._queue),
                self._in_flight,
            )
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        while self._queue:
            self._fail(self._queue.popleft(), "shutdown", "uploader shut down before upload")
            self._metrics.queue_depth.dec()
        await self._exit_stack.aclose()
        self._state = _State.CLOSED

    async def __aenter__(self) -> AsyncUploader:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown(self._shutdown_timeout)

    # -- introspection -----------------------------------------------------------------------

    async def join(self) -> None:
        """Waits until no job is queued or in flight (like `asyncio.Queue.join`)."""
        await self._idle.wait()

    @property
    def recovered(self) -> tuple[UploadHandle, ...]:
        """Handles of the jobs `start()` found in the spool and enqueued again."""
        return tuple(self._recovered)

    def qsize(self) -> int:
        """Jobs waiting for a worker."""
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Jobs being uploaded now."""
        return self._in_flight

    @property
    def is_closing(self) -> bool:
        """True once shutdown has begun."""
        return self._state in (_State.CLOSING, _State.CLOSED)

    def __repr__(self) -> str:
        return (
            f"<AsyncUploader name={self._name!r} workers={self._workers_count} "
            f"queued={len(self._queue)} in_flight={self._in_flight} state={self._state.name}>"
        )

    # -- enqueueing --------------------------------------------------------------------------

    def enqueue_nowait(self, job: RecordingJob) -> UploadHandle:
        """Accepts a job or raises at once; with a spool, persists it first (a blocking fsync).

        Raises:
            QueueFullError: the queue is full; nothing was written and the file stays.
            UploaderClosedError: not started, or shutting down.
            ConfigurationError, FileNotFoundError: the job is invalid.
        """
        self._check_room()
        entry = new_entry(job, check_job(job))
        if self._spool is not None:
            self._spool.save(entry)
        return self._accept(entry)

    async def enqueue(self, job: RecordingJob) -> UploadHandle:
        """Accepts a job, waiting for room in the queue; with a spool, persists it first.

        Cancelling the caller before this returns leaves no spool entry behind.

        Raises:
            UploaderClosedError: not started, or shut down while waiting.
            ConfigurationError, FileNotFoundError: the job is invalid.
        """
        self._check_accepting()
        size = await asyncio.to_thread(check_job, job)
        entry = new_entry(job, size)
        if self._spool is not None:
            await self._persist(self._spool, entry)
        try:
            while len(self._queue) >= self._queue_size and not self.is_closing:
                await self._wait_for_room()
            self._check_accepting()
        except BaseException:
            if self._spool is not None:
                await asyncio.shield(asyncio.to_thread(self._spool.remove, entry))
            raise
        return self._accept(entry)

    def enqueue_threadsafe(self, job: RecordingJob) -> concurrent.futures.Future[UploadResult]:
        """`enqueue_nowait` for code on other threads; returns a future of the result.

        With a spool the job is persisted on the calling thread, so the loop never waits
        for that fsync.
        """
        loop = self._loop
        if loop is None or self.is_closing:
            raise UploaderClosedError(f"uploader {self._name!r} is not running")
        if _running_loop() is loop:
            raise RuntimeError(
                "enqueue_threadsafe() called on the uploader's own loop; use enqueue()"
            )
        entry = new_entry(job, check_job(job))
        if self._spool is not None:
            self._spool.save(entry)
        accepted = asyncio.run_coroutine_threadsafe(self._accept_from_thread(entry), loop)
        try:
            handle = accepted.result()
        except BaseException:
            if self._spool is not None:
                self._spool.remove(entry)
            raise
        return asyncio.run_coroutine_threadsafe(_await_handle(handle), loop)

    async def _accept_from_thread(self, entry: SpoolEntry) -> UploadHandle:
        self._check_room()
        return self._accept(entry)

    def _check_room(self) -> None:
        self._check_accepting()
        if len(self._queue) >= self._queue_size:
            raise QueueFullError(
                f"upload queue of {self._name!r} is full ({self._queue_size} jobs); use "
                "`await enqueue(job)` to wait for room, or raise queue_size"
            )

    def _check_accepting(self) -> None:
        if self._state is not _State.RUNNING:
            state = "not started" if self._state is _State.UNSTARTED else "shut down"
            raise UploaderClosedError(f"uploader {self._name!r} is {state}; it takes no jobs")

    async def _persist(self, spool: Spool, entry: SpoolEntry) -> None:
        saving = asyncio.ensure_future(asyncio.to_thread(spool.save, entry))
        try:
            await asyncio.shield(saving)
        except asyncio.CancelledError:
            saving.add_done_callback(lambda _: self._spool_remove_soon(entry))
            raise

    def _spool_remove_soon(self, entry: SpoolEntry) -> None:
        if self._spool is not None:
            task = asyncio.ensure_future(asyncio.to_thread(self._spool.remove, entry))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _wait_for_room(self) -> None:
        assert self._loop is not None
        waiter = self._loop.create_future()
        self._room_waiters.append(waiter)
        try:
            await waiter
        finally:
            with contextlib.suppress(ValueError):
                self._room_waiters.remove(waiter)

    def _accept(self, entry: SpoolEntry, *, recovered: bool = False) -> UploadHandle:
        assert self._loop is not None
        future: asyncio.Future[UploadResult] = self._loop.create_future()
        self._queue.append(
            _Pending(entry, future, spooled=self._spool is not None, recovered=recovered)
        )
        self._idle.clear()
        self._work_ready.set()
        self._metrics.queue_depth.inc()
        if recovered:
            self._metrics.recovered.inc()
        else:
            self._metrics.enqueued.inc()
        return UploadHandle(entry.job, future)

    # -- recovery ----------------------------------------------------------------------------

    async def _recover(self, spool: Spool) -> None:
        """Enqueues what a previous run left in the spool, after cleaning up its traces."""
        for entry in await asyncio.to_thread(spool.load):
            if not await aiofiles.os.path.exists(entry.job.local_path):
                await self._settle_missing(spool, entry)
                continue
            # Multipart uploads the last run left open (entry.upload_id, or one whose id a
            # crash kept from the spool) are aborted by the worker before it uploads the job
            # again; a recorded id stays spooled until then.
            self._recovered.append(self._accept(entry, recovered=True))
        if self._queue:
            log.info("uploader %r: %d spooled jobs enqueued again", self._name, len(self._queue))

    async def _settle_missing(self, spool: Spool, entry: SpoolEntry) -> None:
        """A spooled job without its file: done already if the object is there, else dead.

        When the store cannot be asked (after retries), the entry stays for the next start.
        """
        job = entry.job
        transfer = self._transfer(entry.job, _no_upload_id)
        try:
            if entry.upload_id is not None:
                await transfer.abort_stale(entry.upload_id)
            size = await transfer.stored_size()
        except TransferError as exc:
            log.warning(
                "uploader %r: spooled job for s3://%s/%s has no local file %s and the store "
                "could not be asked about it (%s); kept in the spool for the next start",
                self._name,
                job.bucket,
                job.key,
                job.local_path,
                exc,
            )
            return
        if size == entry.size_bytes:
            await asyncio.to_thread(spool.remove, entry)
            return
        log.error(
            "uploader %r: spooled job for s3://%s/%s has no local file %s and no object in "
            "the store; moved to %s/dead",
            self._name,
            job.bucket,
            job.key,
            job.local_path,
            spool.directory,
        )
        await asyncio.to_thread(spool.bury, entry, "local file missing")

    # -- workers -----------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            if not self._queue:
                if self.is_closing:
                    return
                self._work_ready.clear()
                await self._work_ready.wait()
                continue
            pending = self._queue.popleft()
            self._metrics.queue_depth.dec()
            self._wake_one_waiter()
            self._in_flight += 1
            self._metrics.in_flight.inc()
            try:
                await self._upload(pending)
            finally:
                self._in_flight -= 1
                self._metrics.in_flight.dec()
                if not self._queue and not self._in_flight:
                    self._idle.set()

    def _wake_one_waiter(self) -> None:
        while self._room_waiters:
            waiter = self._room_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _upload(self, pending: _Pending) -> None:
        entry, job = pending.entry, pending.entry.job
        started = time.monotonic()
        remember = functools.partial(self._remember_upload_id, pending)
        transfer = self._transfer(job, remember)
        try:
            if entry.upload_id is not None:
                await transfer.abort_stale(entry.upload_id)
                await self._remember_upload_id(pending, None)
            checksum = await self._checksums.checksum(transfer.store_checks_crc32)
            transfer = self._transfer(job, remember, checksum)
            sweep = pending.recovered and entry.size_bytes >= self._multipart_threshold
            if sweep:
                await transfer.abort_unrecorded()
            try:
                done = await transfer.run()
            except TransferError as exc:
                md5 = (
                    self._checksums.md5_instead_of(checksum) if exc.reason == "unverified" else None
                )
                if md5 is None:
                    raise
                self._on_retry(job, exc.reason, exc.retries + 1, exc)
                done = await self._transfer(job, remember, md5).run()
                done = replace(done, retries=done.retries + exc.retries + 1)
            if sweep:
                # The crashed run's CreateMultipartUpload may have reached the store only
                # after the first sweep; once this upload is done, nothing else is ours.
                await transfer.abort_unrecorded()
            with contextlib.suppress(FileNotFoundError):
                await aiofiles.os.remove(job.local_path)
        except asyncio.CancelledError:
            self._fail(pending, "shutdown", "upload cancelled by shutdown; the file is kept")
            raise
        except TransferError as exc:
            await self._record_failure(pending, exc)
            return
        except Exception as exc:  # a bug or an odd local failure must not end the worker
            log.exception("uploader %r: unexpected error uploading %s", self._name, job.local_path)
            self._metrics.failed("unexpected")
            self._fail(pending, "unexpected", f"unexpected {type(exc).__name__}: {exc}")
            return
        if pending.spooled and self._spool is not None:
            try:
                await asyncio.to_thread(self._spool.remove, pending.entry)
            except OSError as exc:  # the next start finds the object uploaded and drops it
                log.warning("could not remove spool entry %s: %s", pending.entry.id, exc)
        duration = time.monotonic() - started
        self._metrics.success.inc()
        self._metrics.uploaded_bytes.inc(done.size_bytes)
        self._metrics.duration.observe(duration)
        if not pending.future.done():
            pending.future.set_result(
                UploadResult(
                    bucket=job.bucket,
                    key=job.key,
                    etag=done.etag,
                    size_bytes=done.size_bytes,
                    attempts=entry.attempts + done.retries + 1,
                    duration_s=duration,
                    parts=done.parts,
                    local_path=job.local_path,
                    version_id=done.version_id,
                )
            )

    def _transfer(
        self,
        job: RecordingJob,
        on_upload_id: Callable[[str | None], Awaitable[None]],
        checksum: Checksum | None = None,
    ) -> Transfer:
        """A transfer of `job`; without a `checksum` one that only aborts, asks or probes."""
        return Transfer(
            self._client,
            job,
            self._options_for(job),
            self._settings,
            checksum or Checksum(),
            on_retry=lambda reason, attempt, exc: self._on_retry(job, reason, attempt, exc),
            on_upload_id=on_upload_id,
        )

    async def _record_failure(self, pending: _Pending, exc: TransferError) -> None:
        job = pending.entry.job
        attempts = pending.entry.attempts + exc.retries + 1
        log.error(
            "upload failed for good: bucket=%s key=%s attempts=%d reason=%s error=%s",
            job.bucket,
            job.key,
            attempts,
            exc.reason,
            exc.__cause__.__class__.__name__ if exc.__cause__ else type(exc).__name__,
        )
        self._metrics.failed(exc.reason)
        if pending.spooled and self._spool is not None:
            pending.entry = replace(pending.entry, attempts=attempts, last_error=str(exc))
            try:
                await asyncio.to_thread(self._spool.save, pending.entry)
            except OSError as spool_exc:
                log.error("could not update spool entry %s: %s", pending.entry.id, spool_exc)
        self._fail(pending, exc.reason, str(exc), attempts)

    def _fail(self, pending: _Pending, reason: str, message: str, attempts: int = 0) -> None:
        job = pending.entry.job
        if not pending.future.done():
            pending.future.set_exception(
                UploadFailedError(
                    f"{message} (local file kept: {job.local_path})",
                    bucket=job.bucket,
                    key=job.key,
                    local_path=job.local_path,
                    reason=reason,
                    attempts=attempts or pending.entry.attempts,
                )
            )

    def _on_retry(self, job: RecordingJob, reason: str, attempt: int, exc: BaseException) -> None:
        self._metrics.retried(reason)
        log.warning(
            "retrying upload: bucket=%s key=%s attempt=%d reason=%s error=%s",
            job.bucket,
            job.key,
            attempt,
            reason,
            type(exc).__name__,
        )

    async def _remember_upload_id(self, pending: _Pending, upload_id: str | None) -> None:
        if pending.spooled and self._spool is not None:
            pending.entry = replace(pending.entry, upload_id=upload_id)
            await asyncio.to_thread(self._spool.save, pending.entry)

    def _options_for(self, job: RecordingJob) -> StoreOptions:
        d = self._defaults
        return StoreOptions(
            storage_class=job.storage_class or d.storage_class,
            sse=job.sse or d.sse,
            sse_kms_key_id=job.sse_kms_key_id or d.sse_kms_key_id,
            tags={**d.tags, **job.tags},
        )


def client_config(user: Config | None, endpoint_url: str | None, connections: int = 10) -> Config:
    """The botocore Config the uploader's own client uses, with the caller's merged over it.

    Retries stay ours (one HTTP attempt per botocore call). Payload signing is off and
    botocore computes checksums only when an operation requires one, because we send our own,
    hashed off the event loop; botocore's defaults would hash the body on the loop, and its
    >= 1.36 default checksums break several S3-compatible stores.
    """
    s3: dict[str, Any] = {"payload_signing_enabled": False}
    if endpoint_url is not None:
        s3["addressing_style"] = "path"
    if user is not None and user.s3:
        s3.update(user.s3)
    base = AioConfig(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=max(10, connections),
        http_session_cls=CountedAttemptsSession,
    )
    merged = base.merge(user) if user is not None else base
    return merged.merge(AioConfig(s3=s3, retries={"total_max_attempts": 1, "mode": "standard"}))


def _warn_if_client_retries(client: Any) -> None:
    retries = getattr(getattr(getattr(client, "meta", None), "config", None), "retries", None)
    if not retries or retries.get("total_max_attempts") != 1:
        log.warning(
            "the S3 client passed to AsyncUploader retries on its own (retries=%r), so requests "
            "may make more than max_retries + 1 attempts; create it with "
            "Config(retries={'total_max_attempts': 1})",
            retries,
        )


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"{name} must be a positive int, got {value!r}")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _await_handle(handle: UploadHandle) -> UploadResult:
    return await handle


async def _no_upload_id(upload_id: str | None) -> None:
    """The `on_upload_id` of a transfer that only aborts or asks: there is nothing to keep."""
