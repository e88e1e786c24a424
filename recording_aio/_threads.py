"""The uploader's threads for file reads and checksums, at idle CPU priority where possible.

Reading and hashing an 8 MiB part keeps a thread on a core for 3 to 15 ms. When every core
is busy, the event loop's thread, woken by a timer or a socket, waits for such a thread's
time slice to end: on 2 cores that was 5 to 7 ms of loop lag at p99 during a large upload.
A thread under Linux's SCHED_IDLE is preempted the moment a normal thread wakes, so the loop
never waits for it, and it still gets every core that nothing else wants.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor


def io_executor(name: str, *, idle_priority: bool) -> ThreadPoolExecutor:
    """A pool for the uploader's blocking reads and checksums (the default number of threads)."""
    return ThreadPoolExecutor(
        thread_name_prefix=f"recording-aio-io-{name}",
        initializer=_to_idle_priority if idle_priority else None,
    )


def _to_idle_priority() -> None:
    # Platforms without SCHED_IDLE, or a sandbox that forbids the call, keep normal threads.
    if hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
