"""Helpers shared by the benchmarks: event-loop lag sampling and table printing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path


class LoopLagMonitor:
    """Measures how late the event loop wakes a task that sleeps `interval` seconds.

    Use as `async with LoopLagMonitor() as lag:`; afterwards `lag.summary()` gives the
    p50/p99/max lag in milliseconds. A blocked loop shows up as a large lag.
    """

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            self.lags.append(max(0.0, loop.time() - start - self.interval))

    async def __aenter__(self) -> LoopLagMonitor:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def summary(self) -> dict[str, float]:
        """p50, p99 and max lag in milliseconds (zeros when nothing was sampled)."""
        if not self.lags:
            return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
        ordered = sorted(self.lags)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return {
            "p50_ms": statistics.median(ordered) * 1000,
            "p99_ms": p99 * 1000,
            "max_ms": ordered[-1] * 1000,
        }


_BYSTANDER_MAIN = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
from _common import LoopLagMonitor

async def main():
    monitor = LoopLagMonitor()
    async with monitor:
        print("sampling", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    print(json.dumps(monitor.summary()), flush=True)

asyncio.run(main())
"""


class BystanderLag:
    """The loop lag of an idle event loop in a process of its own, for as long as the block runs.

    It does nothing but sample, so what it sees is what the load on the machine alone does to
    any event loop: the floor under the lag measured in the process that does the work. Use
    as `async with BystanderLag() as bystander:`; afterwards `bystander.summary` holds the
    figures of `LoopLagMonitor.summary()`.
    """

    def __init__(self) -> None:
        self.summary: dict[str, float] = {}
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> BystanderLag:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _BYSTANDER_MAIN,
            str(Path(__file__).parent),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._process.stdout is not None
        await self._process.stdout.readline()  # "sampling"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._process is not None
        output, _ = await self._process.communicate(b"")
        self.summary = json.loads(output)


def cpu_time() -> float:
    """Process CPU time (user + system) in seconds."""
    return time.process_time()


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Prints a Markdown table, so the output can be pasted into the README as it is."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(f"\n### {title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 10 else f"{value:.3g}"
    return str(value)
