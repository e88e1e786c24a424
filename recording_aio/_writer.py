"""One background thread that writes every recorder's audio chunks to disk.

A thread hop per frame costs more than the frame, and even a hop per recorder per flush adds
up at hundreds of calls. So recorders hand whole chunks to this thread through a lock-free
queue and go on: the event loop never waits on the disk, and nobody waits on a future
unless they ask to (`barrier`). Writes use `os.pwrite` at explicit offsets, so a chunk can
never land in the wrong place.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from functools import partial
from typing import Final


class WriteTarget:
    """An open file as the writer thread sees it: its descriptor, progress and first error."""

    __slots__ = ("error", "fd", "written_bytes")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.written_bytes = 0
        self.error: OSError | None = None


class ChunkWriter:
    """A FIFO of disk jobs run by one daemon thread, started on first use."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, target: WriteTarget, data: bytes | bytearray, offset: int) -> None:
        """Queues `data` to be written at `offset`; returns at once."""
        self._put(partial(_write, target, data, offset))

    def close_when_written(self, target: WriteTarget) -> None:
        """Closes the target's descriptor after its queued chunks (for an abandoned recorder)."""
        self._put(partial(os.close, target.fd))

    async def barrier(self) -> None:
        """Returns once every job submitted before the call has run."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._put(partial(_wake, done, loop))
        await done

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
        while (job := self._queue.get()) is not None:
            job()

    def _reset_after_fork(self) -> None:
        self._queue = queue.SimpleQueue()
        self._thread = None
        self._lock = threading.Lock()


def _write(target: WriteTarget, data: bytes | bytearray, offset: int) -> None:
    if target.error is None:
        try:
            view = memoryview(data)
            while view:
                n = os.pwrite(target.fd, view, offset)
                view, offset = view[n:], offset + n
        except OSError as exc:
            target.error = exc
    target.written_bytes += len(data)


def _wake(done: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting any more
        loop.call_soon_threadsafe(_resolve, done)


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


WRITER: Final = ChunkWriter()
atexit.register(WRITER.stop)
os.register_at_fork(after_in_child=WRITER._reset_after_fork)
