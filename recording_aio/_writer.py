"""One background thread that does every recorder's disk work, in order.

A thread hop per frame costs more than the frame, and even a hop per recorder per flush adds
up at hundreds of calls. So recorders hand whole chunks (lists of frames) to this thread and
go on: the event loop never waits on the disk. While chunks flow, the thread collects them
every 10 ms instead of being woken for each. Writes use `os.pwrite` at explicit offsets, so
a chunk can never land in the wrong place. Creating and finishing files also run here
(`call`), after the chunks handed off before them, and their results go back to the loop in
batches: a thousand calls opening or closing at once wake the loop a few times, not a
thousand, and keep its lag low.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

from ._fs import fsync_directory

T = TypeVar("T")
_BATCH = 64
_BATCH_DELAY = 0.002
_CHUNK_DELAY = 0.01


class WriteTarget:
    """An open file as the writer thread sees it: its descriptor, progress and first error."""

    __slots__ = ("created_by_job", "error", "fd", "written_bytes")

    def __init__(self, fd: int, created_by_job: int) -> None:
        self.fd = fd
        self.created_by_job = created_by_job
        self.written_bytes = 0
        self.error: OSError | None = None


class ChunkWriter:
    """A FIFO of disk jobs run by one daemon thread, started on first use."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._chunks: deque[tuple[WriteTarget, list[bytes], int, int]] = deque()
        self._idle = False
        self._results: list[_Result] = []
        self._first_result_at = 0.0
        self.jobs_run = 0
        self._dirs_synced: dict[Path, int] = {}

    def submit(self, target: WriteTarget, frames: list[bytes], nbytes: int, offset: int) -> None:
        """Queues `frames` (`nbytes` in all) to be written at `offset`; returns at once.

        This does not wake the thread while it is busy or polling (see `_run`), so a thousand
        recordings handing off chunks cost a hundred wake-ups a second, not thousands.
        """
        self._chunks.append((target, frames, nbytes, offset))
        if self._idle or self._thread is None:
            self._idle = False
            self._put(_nothing)

    def close_when_written(self, target: WriteTarget) -> None:
        """Closes the target's descriptor after its queued chunks (for an abandoned recorder)."""
        self._put(partial(os.close, target.fd))

    def call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Runs `fn(*args)` in the writer thread after every job queued before it."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._put(partial(self._run_call, fn, args, done, loop))
        return done

    async def barrier(self) -> None:
        """Returns once every job submitted before the call has run."""
        await self.call(_nothing)

    def stop(self) -> None:
        """Runs what is queued, then ends the thread (at interpreter exit)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout=10)

    def _put(self, job: Callable[[], None]) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="recording-aio-writer", daemon=True
                    )
                    self._thread.start()
        self._queue.put(job)

    def _run(self) -> None:
        """Runs queued calls, and every chunk handed off before each of them.

        While chunks keep coming, the thread wakes every `_CHUNK_DELAY` to write them (or
        earlier for a call); after a quiet period it sleeps until `submit` or `call` wakes it.
        """
        polling = False
        while True:
            try:
                job = self._queue.get(timeout=_CHUNK_DELAY) if polling else self._wait_idle()
            except queue.Empty:
                job = _nothing
            polling = self._write_chunks()
            if job is None:
                break
            job()
            job = _nothing  # not holding the finished job (and its loop) until the next one
            self.jobs_run += 1
            if self._results and (
                self._queue.empty()
                or len(self._results) >= _BATCH
                or time.monotonic() - self._first_result_at > _BATCH_DELAY
            ):
                self._deliver()
        self._deliver()

    def _wait_idle(self) -> Callable[[], None] | None:
        self._idle = True
        if self._chunks:  # handed off before the flag was set, so nobody woke us for it
            self._idle = False
            return _nothing
        job = self._queue.get()
        self._idle = False
        return job

    def _write_chunks(self) -> bool:
        """Writes every chunk handed off so far; says whether there were any."""
        if not self._chunks:
            return False
        chunks = self._chunks
        while chunks:
            _write(*chunks.popleft())
        return True

    def sync_directory(self, directory: Path, since: int) -> None:
        """Makes entries created in `directory` by job number `since` durable (writer thread).

        Skipped when the directory was fsynced by a later job already: a thousand recordings
        closed together in one directory cost one directory fsync, not a thousand.
        """
        if self._dirs_synced.get(directory, -1) > since:
            return
        fsync_directory(directory)
        self._dirs_synced[directory] = self.jobs_run

    def _run_call(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        done: asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        try:
            result: _Result = (loop, done, fn(*args), None)
        except BaseException as exc:  # delivered to the awaiting task, raised there
            result = (loop, done, None, exc)
        if not self._results:
            self._first_result_at = time.monotonic()
        self._results.append(result)

    def _deliver(self) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Result]] = {}
        for result in self._results:
            by_loop.setdefault(result[0], []).append(result)
        self._results = []
        for loop, results in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting any more
                loop.call_soon_threadsafe(_resolve, results)

    def _reset_after_fork(self) -> None:
        self._queue = queue.SimpleQueue()
        self._chunks = deque()
        self._idle = False
        self._thread = None
        self._lock = threading.Lock()
        self._results = []


def write_frames(fd: int, frames: list[bytes], offset: int) -> None:
    """Writes `frames` back to back at `offset` in one system call.

    Joining them first costs less than a vectored write of many small frames, whose
    per-segment work in Python and the kernel outweighs one copy in user space.
    """
    data = b"".join(frames)
    written = os.pwrite(fd, data, offset)
    if written < len(data):  # a short write, rare on a regular file: finish it
        rest = memoryview(data)
        while written < len(data):
            written += os.pwrite(fd, rest[written:], offset + written)


def _write(target: WriteTarget, frames: list[bytes], nbytes: int, offset: int) -> None:
    if target.error is None:
        try:
            write_frames(target.fd, frames, offset)
        except OSError as exc:
            target.error = exc
    target.written_bytes += nbytes


_Result = tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Any, BaseException | None]


def shielded(done: asyncio.Future[T]) -> asyncio.Future[T]:
    """A future with `done`'s outcome; cancelling it (or its awaiting task) leaves `done` be.

    What `asyncio.shield` does for a future, at a fifth of its cost on the loop, which a
    thousand recordings opened or closed at once pay in one step.
    """
    if done.done():
        return done
    waiter: asyncio.Future[T] = done.get_loop().create_future()
    done.add_done_callback(partial(_relay, waiter))
    return waiter


def _relay(waiter: asyncio.Future[T], done: asyncio.Future[T]) -> None:
    if done.cancelled():
        waiter.cancel()
        return
    exc = done.exception()  # retrieved even when nobody waits any more, so nothing is logged
    if waiter.done():
        return
    if exc is None:
        waiter.set_result(done.result())
    else:
        waiter.set_exception(exc)


def _nothing() -> None:
    return None


def _resolve(results: list[_Result]) -> None:
    for _, done, value, exc in results:
        if done.done():
            continue
        if exc is None:
            done.set_result(value)
        else:
            done.set_exception(exc)


WRITER: Final = ChunkWriter()
atexit.register(WRITER.stop)
os.register_at_fork(after_in_child=WRITER._reset_after_fork)
