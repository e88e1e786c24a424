"""Recorder benchmarks: CPU per 20 ms frame, and many real-time sessions in one event loop.

Part 1 measures the process CPU time (`time.process_time`, so helper threads count) of writing
the same number of 640-byte frames (20 ms of 16 kHz mono int16) with each approach, best of
several interleaved repeats, into a fresh temporary directory that is deleted after each
measurement; then write_samples in steady state over 1000 recorders and over one, beside the
kernel's share alone (the same chunks written with `os.pwrite` and nothing else). Part 2
runs N concurrent sessions in real time on one plain asyncio loop (no uvloop), each scenario
in a fresh interpreter so its peak RSS is its own.

The README figures come from a full run (about 2 minutes), from the repository root::

    python benchmarks/bench_recorder.py

and a smoke run (about 20 s) is ``python benchmarks/bench_recorder.py --quick``. ``--dir``
chooses the filesystem the files go to (default: the system temporary directory).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiofiles
from _common import LoopLagMonitor, cpu_time, print_table
from aiofiles.threadpool.binary import AsyncBufferedIOBase

from recording_aio import AsyncFileRecorder, open_recorder
from recording_aio._writer import WRITER  # only to wait until handed chunks are written
from recording_aio.wav import HEADER_SIZE

RATE = 16_000
FRAME_S = 0.020
FRAME = bytes(range(256)) * 2 + bytes(128)  # 640 bytes: 320 int16 samples, 20 ms at 16 kHz
BUFFER_BYTES = 64 * 1024

assert len(FRAME) == 640


# --------------------------------------------------------------------------------------------
# Part 1: CPU per frame
# --------------------------------------------------------------------------------------------

Approach = Callable[[Path, int], Awaitable[float]]
"""Writes `n` frames into a new file in the directory; returns the CPU seconds of its close."""


async def _write_samples(directory: Path, n: int) -> float:
    rec = await open_recorder(directory, "rec", RATE)
    for _ in range(n):
        await rec.write_samples(FRAME, RATE)
    before = cpu_time()
    await rec.aclose()
    return cpu_time() - before


async def _aiofiles_per_frame(directory: Path, n: int) -> float:
    async with aiofiles.open(directory / "rec.raw", "wb") as f:
        for _ in range(n):
            await f.write(FRAME)
        before = cpu_time()
    return cpu_time() - before


async def _os_write_per_frame(directory: Path, n: int) -> float:
    fd = os.open(directory / "rec.raw", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for _ in range(n):
            os.write(fd, FRAME)
    finally:
        before = cpu_time()
        os.close(fd)
    return cpu_time() - before


async def _wave_per_frame(directory: Path, n: int) -> float:
    w = wave.open(str(directory / "rec.wav"), "wb")  # noqa: SIM115 - close is timed on its own
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(RATE)
    for _ in range(n):
        w.writeframes(FRAME)
    before = cpu_time()
    w.close()
    return cpu_time() - before


async def _aiofiles_buffered(directory: Path, n: int) -> float:
    buf = bytearray()
    async with aiofiles.open(directory / "rec.raw", "wb") as f:
        for _ in range(n):
            buf += FRAME
            if len(buf) >= BUFFER_BYTES:
                await f.write(buf)
                buf.clear()
        if buf:
            await f.write(buf)
        before = cpu_time()
    return cpu_time() - before


async def _append(buf: bytearray, frame: bytes) -> None:
    buf += frame
    if len(buf) >= BUFFER_BYTES:
        buf.clear()


async def _floor(directory: Path, n: int) -> float:
    buf = bytearray()
    for _ in range(n):
        await _append(buf, FRAME)
    return 0.0


APPROACHES: dict[str, Approach] = {
    "recording_aio: await rec.write_samples (incl. open+aclose)": _write_samples,
    "aiofiles: await f.write(frame) per frame": _aiofiles_per_frame,
    "os.write(fd, frame) per frame (sync)": _os_write_per_frame,
    "wave: writeframes(frame) per frame (sync)": _wave_per_frame,
    "aiofiles: bytearray + await f.write every 64 KiB": _aiofiles_buffered,
    "floor: await coroutine appending to a bytearray": _floor,
}
WRITE_SAMPLES = next(iter(APPROACHES))
FLOOR = list(APPROACHES)[-1]


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU seconds of one measurement: whole process, the event-loop thread, the close."""

    process_s: float
    loop_thread_s: float
    close_s: float


async def _measure(approach: Approach, root: Path, n: int) -> CpuSample:
    directory = Path(tempfile.mkdtemp(dir=root))
    try:
        gc.collect()
        p0, t0 = cpu_time(), time.thread_time()
        close_s = await approach(directory, n)
        return CpuSample(cpu_time() - p0, time.thread_time() - t0, close_s)
    finally:
        shutil.rmtree(directory)


async def _cpu_part(root: Path, n: int, repeats: int) -> dict[str, CpuSample]:
    best: dict[str, CpuSample] = {}
    names = list(APPROACHES)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order
            sample = await _measure(APPROACHES[name], root, n)
            if name not in best or sample.process_s < best[name].process_s:
                best[name] = sample
    return best


WARM_UP_ROUNDS = 50
"""Frames each recorder takes before the timing starts (at flush_interval 1 s, past its first,
shorter chunk)."""


def chunk_frames(flush_interval: float) -> int:
    """Frames in a recorder's chunk: half of flush_interval."""
    return int(flush_interval * RATE) // 2 * 2 // len(FRAME)


async def _round_robin(
    root: Path, streams: int, rounds: int, flush_interval: float = 1.0
) -> CpuSample:
    """Writes `rounds` frames to each of `streams` recorders, interleaved, in steady state.

    Timed from after a warm-up until what the recorders handed off is written. `rounds` is a
    whole number of chunks, so each recorder hands off as much audio as it takes while timed.
    """
    directory = Path(tempfile.mkdtemp(dir=root))
    try:
        recs = [
            await open_recorder(directory, f"r{i}", RATE, flush_interval=flush_interval)
            for i in range(streams)
        ]
        for _ in range(WARM_UP_ROUNDS):
            for rec in recs:
                await rec.write_samples(FRAME, RATE)
        await WRITER.barrier()
        gc.collect()
        p0, t0 = cpu_time(), time.thread_time()
        for _ in range(rounds):
            for rec in recs:
                await rec.write_samples(FRAME, RATE)
        await WRITER.barrier()  # until the writer thread has written what it was handed
        sample = CpuSample(cpu_time() - p0, time.thread_time() - t0, 0.0)
        await asyncio.gather(*(rec.aclose() for rec in recs))
        return sample
    finally:
        shutil.rmtree(directory)


def _pwrite_alone(root: Path, streams: int, rounds: int, flush_interval: float) -> float:
    """CPU seconds of writing the same audio as `_round_robin`, in the same chunks,
    round-robin into as many new files, with one `os.pwrite` per chunk: the kernel's share,
    which any way of putting this audio in files pays."""
    directory = Path(tempfile.mkdtemp(dir=root))
    chunk = FRAME * chunk_frames(flush_interval)
    try:
        fds = [
            os.open(directory / f"r{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            for i in range(streams)
        ]
        offsets = [HEADER_SIZE] * streams
        gc.collect()
        p0 = cpu_time()
        for _ in range(rounds * len(FRAME) // len(chunk)):
            for i, fd in enumerate(fds):
                offsets[i] += os.pwrite(fd, chunk, offsets[i])
        elapsed = cpu_time() - p0
        for fd in fds:
            os.close(fd)
        return elapsed
    finally:
        shutil.rmtree(directory)


SCALE_CASES = [(1000, 1.0), (1, 1.0), (1, 10.0)]
"""Streams and flush_interval of the scale table's rows."""


async def _scale_part(root: Path, frames: int, repeats: int, floor: float) -> list[list[object]]:
    rows: list[list[object]] = []
    for streams, flush_interval in SCALE_CASES:
        per_chunk = chunk_frames(flush_interval)
        rounds = frames // streams // per_chunk * per_chunk
        n = rounds * streams
        samples = [
            await _round_robin(root, streams, rounds, flush_interval) for _ in range(repeats)
        ]
        best = min(samples, key=lambda s: s.process_s)
        kernel = (
            min(_pwrite_alone(root, streams, rounds, flush_interval) for _ in range(repeats))
            / n
            * 1e6
        )
        us, loop_us = best.process_s / n * 1e6, best.loop_thread_s / n * 1e6
        rows.append(
            [f"{streams} x {rounds:,} frames, flush_interval {flush_interval:g} s", us,
             us / floor, loop_us, loop_us / floor, us - loop_us, kernel]
        )  # fmt: skip
    return rows


def run_cpu_part(root: Path, n: int, repeats: int) -> list[str]:
    """Prints the per-frame CPU tables; returns the lines on their targets."""
    best = asyncio.run(_cpu_part(root, n, repeats))
    per_frame = {name: s.process_s / n * 1e6 for name, s in best.items()}
    ws, floor = per_frame[WRITE_SAMPLES], per_frame[FLOOR]
    rows = [[name, us, us / floor, us / ws] for name, us in per_frame.items()]
    print_table(
        f"CPU per 20 ms frame (640 B), {n:,} frames ({n * len(FRAME) / 2**20:.0f} MiB) "
        f"per approach, process CPU incl. threads, best of {repeats}",
        ["approach", "us/frame", "x floor", "x write_samples"],
        rows,
    )
    s = best[WRITE_SAMPLES]
    split = [
        ["whole process (as above)", s.process_s / n * 1e6, s.process_s * 1e3],
        ["event-loop thread only (time.thread_time)", s.loop_thread_s / n * 1e6,
         s.loop_thread_s * 1e3],
        ["other threads (writer thread pwrite, open/aclose executor)",
         (s.process_s - s.loop_thread_s) / n * 1e6, (s.process_s - s.loop_thread_s) * 1e3],
        ["  of which aclose (flush, patch sizes, fsync file+dir)", s.close_s / n * 1e6,
         s.close_s * 1e3],
    ]  # fmt: skip
    print_table(
        "write_samples CPU split (same best run)",
        ["part", "us/frame (amortised)", "ms total"],
        split,
    )
    scale_frames = 5 * n
    scale = asyncio.run(_scale_part(root, scale_frames, repeats, floor))
    print_table(
        f"Scale: {scale_frames:,} frames round-robin over 1000 or 1 recorders, in steady state "
        f"(after {WARM_UP_ROUNDS} frames each), until on disk, best of {repeats}",
        ["recorders", "write_samples us/frame", "x floor", "loop thread us/frame",
         "loop x floor", "other threads us/frame", "pwrite of the same chunks alone"],
        scale,
    )  # fmt: skip
    print(
        "\nThe sync approaches (os.write, wave) block the event loop on every frame; aiofiles "
        "per frame pays a thread hop per frame; only write_samples and the floor never leave "
        "the loop per frame. Only aclose fsyncs."
    )
    many, one, one_longer = scale
    us, loop_us, kernel = many[1], many[3], many[6]
    verdict = "met" if us <= 3 * floor else "NOT met"
    own = us - kernel
    return [
        f"write_samples at 1000 recorders: {us:.3g} us/frame of process CPU = "
        f"{us / floor:.1f}x the floor (target <= 3x): {verdict}; on the event-loop thread "
        f"{loop_us:.3g} us = {loop_us / floor:.1f}x: {'met' if loop_us <= 3 * floor else 'NOT met'}"
        f"; without the kernel's share ({kernel:.3g} us: the same chunks written with nothing "
        f"else, which the floor does not write) {own:.3g} us = {own / floor:.1f}x: "
        f"{'met' if own <= 3 * floor else 'NOT met'}",
        f"one recorder written flat out: {one[1]:.3g} us/frame = {one[2]:.1f}x the floor, as "
        "it waits for the writer thread once per flush_interval of audio to keep the loss "
        f"bound; with flush_interval 10 s: {one_longer[1]:.3g} us = {one_longer[2]:.1f}x",
    ]


# --------------------------------------------------------------------------------------------
# Part 2: concurrent real-time sessions
# --------------------------------------------------------------------------------------------


class Sink(Protocol):
    """One session's destination for frames."""

    async def write(self, frame: bytes) -> None: ...

    async def close(self) -> None: ...


class RecorderSink:
    """recording_aio: write_samples per frame, aclose at the end (fsyncs)."""

    def __init__(self, rec: AsyncFileRecorder) -> None:
        self.rec = rec

    @classmethod
    async def open(cls, directory: Path, i: int) -> RecorderSink:
        return cls(await open_recorder(directory, f"s{i}", RATE))

    async def write(self, frame: bytes) -> None:
        await self.rec.write_samples(frame, RATE)

    async def close(self) -> None:
        await self.rec.aclose()


class AiofilesSink:
    """aiofiles: `await f.write(frame)` per frame, close at the end (no fsync)."""

    def __init__(self, f: AsyncBufferedIOBase) -> None:
        self.f = f

    @classmethod
    async def open(cls, directory: Path, i: int) -> AiofilesSink:
        return cls(await aiofiles.open(directory / f"s{i}.raw", "wb"))

    async def write(self, frame: bytes) -> None:
        await self.f.write(frame)

    async def close(self) -> None:
        await self.f.close()


class FloorSink:
    """No I/O: append to a bytearray (cleared every 64 KiB); the harness's own cost."""

    def __init__(self) -> None:
        self.buf = bytearray()

    @classmethod
    async def open(cls, directory: Path, i: int) -> FloorSink:
        return cls()

    async def write(self, frame: bytes) -> None:
        self.buf += frame
        if len(self.buf) >= BUFFER_BYTES:
            self.buf.clear()

    async def close(self) -> None:
        self.buf.clear()


Opener = Callable[[Path, int], Awaitable[Sink]]
SCENARIOS: dict[str, Opener] = {
    "floor": FloorSink.open,
    "write_samples": RecorderSink.open,
    "aiofiles/frame": AiofilesSink.open,
}


def _runqueue_wait_s() -> float:
    """Seconds this thread has waited for a CPU (Linux schedstat), 0.0 where unavailable."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def _rss_mib(field: str = "VmHWM") -> float:
    """This process's peak (VmHWM) or current (VmRSS) resident set in MiB.

    Linux's getrusage() ru_maxrss carries over the parent's peak into a spawned child, so
    /proc/self/status is read where it exists; elsewhere ru_maxrss is the fallback.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pct(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


async def _session(
    sink: Sink, t0: float, n_frames: int, deadline: float, lateness: array[float]
) -> int:
    """Writes frame k at t0 + k * 20 ms (sleeping until due); stops at `deadline`."""
    loop = asyncio.get_running_loop()
    for k in range(n_frames):
        due = t0 + k * FRAME_S
        now = loop.time()
        if now >= deadline:
            return k
        if due > now:
            await asyncio.sleep(due - now)
        await sink.write(FRAME)
        lateness.append(loop.time() - due)
    return n_frames


async def _load(kind: str, sessions: int, duration: float, root: Path) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    opener = SCENARIOS[kind]
    directory = Path(tempfile.mkdtemp(dir=root))
    rss_before = _rss_mib("VmRSS")
    n_frames = round(duration / FRAME_S)
    try:
        async with LoopLagMonitor() as open_lag:
            w0, t0 = time.perf_counter(), time.thread_time()
            sinks = await asyncio.gather(*(opener(directory, i) for i in range(sessions)))
            open_s, open_cpu = time.perf_counter() - w0, time.thread_time() - t0

        lateness: array[float] = array("d")
        start = loop.time() + 0.05
        deadline = start + duration + FRAME_S  # a session behind schedule stops here
        p0, t0, q0, w0 = cpu_time(), time.thread_time(), _runqueue_wait_s(), time.perf_counter()
        async with LoopLagMonitor() as lag:
            written = await asyncio.gather(
                *(  # phases spread evenly over the 20 ms period, as independent calls are
                    _session(sink, start + FRAME_S * i / sessions, n_frames, deadline, lateness)
                    for i, sink in enumerate(sinks)
                )
            )
        wall = time.perf_counter() - w0
        cpu, loop_cpu = cpu_time() - p0, time.thread_time() - t0
        rq_wait = _runqueue_wait_s() - q0

        async with LoopLagMonitor() as close_lag:
            w0, t0 = time.perf_counter(), time.thread_time()
            await asyncio.gather(*(sink.close() for sink in sinks))
            close_s, close_cpu = time.perf_counter() - w0, time.thread_time() - t0
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    late = sorted(lateness)
    steady = lag.summary()
    return {
        "open_s": open_s,
        "open_lag_max_ms": open_lag.summary()["max_ms"],
        "open_loop_cpu_us": open_cpu / sessions * 1e6,
        "cpu_pct": 100 * cpu / wall,
        "loop_cpu_pct": 100 * loop_cpu / wall,
        "loop_rq_wait_pct": 100 * rq_wait / wall,
        "lag_p50_ms": steady["p50_ms"],
        "lag_p99_ms": steady["p99_ms"],
        "lag_max_ms": steady["max_ms"],
        "late_p50_ms": _pct(late, 0.5) * 1e3,
        "late_p99_ms": _pct(late, 0.99) * 1e3,
        "late_max_ms": (late[-1] if late else 0.0) * 1e3,
        "written_pct": 100 * sum(written) / (n_frames * sessions),
        "close_s": close_s,
        "close_lag_max_ms": close_lag.summary()["max_ms"],
        "close_loop_cpu_us": close_cpu / sessions * 1e6,
        "rss_before_mib": rss_before,
        "rss_peak_mib": _rss_mib(),
    }


async def _idle(duration: float) -> dict[str, float]:
    async with LoopLagMonitor() as lag:
        await asyncio.sleep(duration)
    return {f"lag_{k}": v for k, v in lag.summary().items()}


def _scenario_main(args: argparse.Namespace) -> None:
    """Child process: runs one scenario and prints its figures as one JSON line."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < args.sessions + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.sessions + 256), hard))
    if args.scenario == "idle":
        result = asyncio.run(_idle(args.duration))
    else:
        result = asyncio.run(_load(args.scenario, args.sessions, args.duration, args.dir))
    print(json.dumps(result))


def _run_scenario(kind: str, sessions: int, duration: float, root: Path) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--scenario", kind, "--sessions", str(sessions)]
    cmd += ["--duration", str(duration), "--dir", str(root)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    if out.stderr:
        sys.stderr.write(out.stderr)
    return dict(json.loads(out.stdout.splitlines()[-1]))


def run_load_part(
    root: Path, sessions: int, duration: float, runs: dict[str, int]
) -> dict[str, list[dict[str, float]]]:
    """Runs the scenarios, prints their tables; returns the runs by scenario."""
    idle = _run_scenario("idle", sessions, 2.0, root)
    results: list[tuple[str, dict[str, float]]] = []
    for kind, count in runs.items():
        results += [(kind, _run_scenario(kind, sessions, duration, root)) for _ in range(count)]

    steady = [
        ["idle loop (lag monitor only)", "-", idle["lag_p50_ms"], idle["lag_p99_ms"],
         idle["lag_max_ms"], "-", "-", "-", "-", "-", "-"],
    ]  # fmt: skip
    for kind, r in results:
        steady.append(
            [kind, r["cpu_pct"], r["lag_p50_ms"], r["lag_p99_ms"], r["lag_max_ms"],
             r["late_p50_ms"], r["late_p99_ms"], r["late_max_ms"], r["written_pct"],
             r["loop_cpu_pct"], r["loop_rq_wait_pct"]]
        )  # fmt: skip
    print_table(
        f"{sessions} sessions in real time, one plain asyncio loop, {duration:g} s "
        "(steady state; one row per run)",
        ["sessions write", "CPU % of 1 core", "lag p50 ms", "lag p99 ms", "lag max ms",
         "late p50 ms", "late p99 ms", "late max ms", "audio written %",
         "loop thread CPU %", "loop waited for CPU %"],
        steady,
    )  # fmt: skip
    print_table(
        f"{sessions} sessions: open and close bursts, memory",
        ["sessions write", "open burst s", "open lag max ms", "loop CPU us/open",
         "close burst s", "close lag max ms", "loop CPU us/close", "peak RSS MiB",
         "RSS before open MiB"],
        [[kind, r["open_s"], r["open_lag_max_ms"], r["open_loop_cpu_us"], r["close_s"],
          r["close_lag_max_ms"], r["close_loop_cpu_us"], r["rss_peak_mib"],
          r["rss_before_mib"]] for kind, r in results],
    )  # fmt: skip
    print(
        "\nLag: how late the loop wakes a task sleeping 1 ms. Lateness: when `await write` "
        "returned minus when the frame was due (frame k of a session due at t0 + k*20 ms; "
        "session phases spread over 20 ms). A session still behind at the end stops, so "
        "'audio written' < 100 % means it fell behind. CPU: process CPU over the steady phase "
        "(all threads). 'loop waited for CPU': time the loop thread was runnable but not "
        "running (other processes). floor = harness alone (no I/O). write_samples closes with "
        "fsync, aiofiles without. Loop CPU per open/close: event-loop thread CPU time of the "
        "burst divided by the sessions."
    )
    by_kind: dict[str, list[dict[str, float]]] = {}
    for kind, r in results:
        by_kind.setdefault(kind, []).append(r)
    return by_kind


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~20 s smoke run")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--duration", type=float, help="seconds of real-time load per run")
    parser.add_argument("--only", choices=["cpu", "load"], help="run one part only")
    parser.add_argument("--pin", type=int, metavar="CPU", help="run everything on this CPU")
    parser.add_argument("--scenario", choices=["idle", *SCENARIOS], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scenario:
        _scenario_main(args)
        return
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})  # inherited by the scenario processes

    quick = args.quick
    duration = args.duration or (5.0 if quick else 10.0)
    frames, repeats = (10_000, 3) if quick else (50_000, 5)
    runs = {"floor": 1, "write_samples": 1, "aiofiles/frame": 1}
    if not quick:
        runs = {"floor": 2, "write_samples": 3, "aiofiles/frame": 1}
    root = Path(tempfile.mkdtemp(prefix="bench_recorder-", dir=args.dir))
    print(f"# recording_aio recorder benchmark{' (quick)' if quick else ''}")
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, plain asyncio, "
        f"files under {args.dir}, load average {os.getloadavg()[0]:.2f} at start"
        + (f", pinned to CPU {args.pin}" if args.pin is not None else "")
    )
    targets: list[str] = []
    try:
        if args.only in (None, "cpu"):
            targets += run_cpu_part(root, frames, repeats)
        if args.only in (None, "load"):
            by_kind = run_load_part(root, args.sessions, duration, runs)
            load = by_kind["write_samples"]
            p99 = statistics.median(r["lag_p99_ms"] for r in load)
            worst = statistics.median(r["lag_max_ms"] for r in load)
            targets.append(
                f"{args.sessions} sessions, median of {len(load)} run(s): loop lag p99 "
                f"{p99:.2f} ms (target < 2 ms): {'met' if p99 < 2 else 'NOT met'}; max "
                f"{worst:.2f} ms (target < 20 ms): {'met' if worst < 20 else 'NOT met'}"
            )
            frames_per_s = args.sessions / FRAME_S
            extra = {
                key: (
                    statistics.median(r[key] for r in load)
                    - statistics.median(r[key] for r in by_kind["floor"])
                )
                / 100
                / frames_per_s
                * 1e6
                for key in ("cpu_pct", "loop_cpu_pct")
            }
            targets.append(
                f"in real time, write_samples adds {extra['cpu_pct']:.2g} us of process CPU "
                f"per frame over the no-I/O harness ({extra['loop_cpu_pct']:.2g} us on the "
                "event-loop thread), medians of the runs above"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("\n### Targets\n")
    print("\n".join(f"- {line}" for line in targets))
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
