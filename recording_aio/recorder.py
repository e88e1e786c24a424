"""Recording a conversation to a local WAV file from asyncio.

`write_samples()` only validates and appends to an in-memory buffer; chunks of half a
`flush_interval` go to disk through the shared writer thread, so a frame costs little more
than a bytearray append, and a SIGKILL never loses more than `flush_interval` of
acknowledged audio. `aclose()` writes the real sizes into the header and fsyncs the file and
its directory.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import secrets
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Protocol, runtime_checkable

from . import wav
from ._sweeper import sweeper_of
from ._writer import WRITER, WriteTarget, shielded, write_frames
from .errors import (
    ConfigurationError,
    RecorderClosedError,
    RecordingExistsError,
    RecordingTooLargeError,
    SampleRateMismatchError,
)
from .pcm import to_pcm16le

Samples = object
"""Anything `write_samples` takes: bytes-like int16 LE, `array('h')`, an int16 NumPy array
(any buffer of 2-byte signed integers) or a sequence of ints in [-32768, 32767]."""


@dataclass(frozen=True, slots=True)
class LocalFileInfo:
    """A finished recording on local disk."""

    path: Path
    started_at: datetime
    ended_at: datetime
    format: str
    sample_rate: int
    channels: int
    num_frames: int
    size_bytes: int

    @property
    def duration_s(self) -> float:
        """Audio duration in seconds."""
        return self.num_frames / self.sample_rate


@runtime_checkable
class ConversationRecorder(Protocol):
    """Records the audio of one conversation; used from one task at a time."""

    async def write_samples(self, samples: Samples, sample_rate: int) -> None:
        """Appends 16-bit PCM frames (interleaved when stereo) at `sample_rate`."""

    async def aclose(self) -> LocalFileInfo:
        """Finalises the recording and describes it; calling it again returns the same info."""


class AsyncFileRecorder:
    """A `ConversationRecorder` writing `<directory>/<base>.wav`; made by `open_recorder()`.

    Example::

        async with open_recorder("/var/spool/calls", call_id, 16000) as rec:
            async for frame in call.audio_frames():
                await rec.write_samples(frame, 16000)
        print(rec.info.path, rec.info.duration_s)
    """

    __slots__ = (
        "__weakref__",
        "_channels",
        "_chunk_bytes",
        "_closed",
        "_closing",
        "_flush_interval",
        "_frame_bytes",
        "_handed_at_mark",
        "_handed_bytes",
        "_handoff_bytes",
        "_limit_bytes",
        "_marked_at",
        "_max_at_risk",
        "_path",
        "_pending",
        "_pending_goal",
        "_room",
        "_sample_rate",
        "_started_at",
        "_sweeper",
        "_target",
        "_unusable",
    )

    def __init__(
        self,
        path: Path,
        target: WriteTarget,
        sample_rate: int,
        channels: int,
        flush_interval: float,
        started_at: datetime,
    ) -> None:
        self._path = path
        self._sample_rate = sample_rate
        self._channels = channels
        self._frame_bytes = 2 * channels
        self._flush_interval = flush_interval
        risk_frames = max(1, int(flush_interval * sample_rate))
        self._max_at_risk = risk_frames * self._frame_bytes
        chunk_frames = max(1, risk_frames // 2)
        self._chunk_bytes = chunk_frames * self._frame_bytes
        # The first chunk is shorter by a random amount, so recordings opened together hand
        # their chunks to the writer spread over time, not all in the same few milliseconds.
        first_chunk_frames = random.randint(chunk_frames // 2 + 1, chunk_frames)
        self._handoff_bytes = first_chunk_frames * self._frame_bytes
        self._limit_bytes = wav.MAX_DATA_BYTES - wav.MAX_DATA_BYTES % self._frame_bytes
        self._target = target
        self._pending: list[bytes] = []  # accepted frames not yet handed to the writer
        # `write_samples` only counts `_room` down; the pending byte count is derived from it
        # as `_pending_goal - _room` (see `_update_room`).
        self._room = self._pending_goal = 0
        self._handed_bytes = 0
        self._started_at = started_at
        loop = asyncio.get_running_loop()
        self._handed_at_mark, self._marked_at = 0, loop.time()  # see `_on_sweep`
        self._sweeper = sweeper_of(loop)
        self._sweeper.add(self, flush_interval)
        self._closing = False
        self._unusable = False
        self._closed: asyncio.Future[LocalFileInfo] | None = None
        self._update_room()

    @property
    def path(self) -> Path:
        """Where the recording is written."""
        return self._path

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def num_frames(self) -> int:
        """Frames accepted so far."""
        return (self._handed_bytes + self._pending_bytes) // self._frame_bytes

    @property
    def closed(self) -> bool:
        """True once aclose() has been called."""
        return self._closing

    @property
    def info(self) -> LocalFileInfo | None:
        """The finished file's info once aclose() has completed, else None."""
        closed = self._closed
        if closed is None or not closed.done() or closed.exception() is not None:
            return None
        return closed.result()

    async def write_samples(self, samples: Samples, sample_rate: int) -> None:
        """Appends 16-bit PCM frames; see `Samples` for the accepted kinds.

        A frame is either taken whole or, with an error, not at all: a rejected or cancelled
        call leaves the recording valid and writable.

        Raises:
            SampleRateMismatchError: `sample_rate` differs from the recorder's.
            InvalidSamplesError: not int16 PCM, or not a whole number of frames.
            RecordingTooLargeError: the WAV would pass its 4 GiB size limit.
            RecorderClosedError: after aclose().
            OSError: an earlier chunk could not be written to disk.
        """
        # The common case, whole frames of bytes that fit in the current chunk, costs a few
        # attribute reads; at a chunk boundary `_take` does the bookkeeping without a second
        # coroutine; everything else (validation, waits, errors) is in `_write_checked`.
        if type(samples) is bytes and sample_rate == self._sample_rate:
            n = len(samples)
            if not n % self._frame_bytes:
                if n <= self._room:
                    self._room -= n
                    self._pending.append(samples)
                    return
                if self._take(samples):
                    return
        await self._write_checked(samples, sample_rate)

    async def _write_checked(self, samples: Samples, sample_rate: int) -> None:
        if self._unusable:
            self._raise_unusable()
        if sample_rate != self._sample_rate:
            raise SampleRateMismatchError(self._sample_rate, sample_rate)
        data = to_pcm16le(samples, self._channels)
        frame = data if type(data) is bytes else bytes(data)  # the caller may reuse its buffer
        while True:
            if self._handed_bytes + self._pending_bytes + len(frame) > self._limit_bytes:
                raise RecordingTooLargeError(
                    f"{self._path} would exceed the WAV limit of {self._limit_bytes} audio "
                    "bytes; close it and continue in a new recording"
                )
            if self._take(frame):
                return
            await self._wait_for_disk()

    def _take(self, frame: bytes) -> bool:
        """Appends a valid frame unless it must wait for the disk first; says whether it did.

        It also declines when the recorder is unusable or the frame would pass the size
        limit, and leaves the errors to `_write_checked`.
        """
        n = len(frame)
        pending = self._pending_goal - self._room
        unwritten = self._handed_bytes - self._target.written_bytes
        at_risk = pending + unwritten + n
        if (
            self._unusable
            or self._handed_bytes + pending + n > self._limit_bytes
            or (at_risk > self._max_at_risk and at_risk > n)
        ):
            return False
        self._pending.append(frame)
        self._pending_goal += n
        if pending + n >= self._handoff_bytes and not unwritten:
            self._hand_off()  # which updates the room too
        else:
            self._update_room()
        return True

    async def flush(self) -> None:
        """Writes every frame accepted so far into the file and returns once it is there.

        The audio is then in the OS page cache: readers of the open file see it, and a crash
        of this process cannot lose it (`aclose()` also fsyncs, against power loss). The loss
        bound of flush_interval holds without calling this; it is for reading a recording
        while it is still open.

        Raises:
            RecorderClosedError: after aclose().
            OSError: audio could not be written to disk.
        """
        if self._unusable:
            self._raise_unusable()
        await self._wait_for_disk()

    @property
    def _pending_bytes(self) -> int:
        """Bytes accepted but not yet handed to the writer."""
        return self._pending_goal - self._room

    def _update_room(self) -> None:
        """Sets how many bytes `write_samples` may take without its checks.

        That is up to the next chunk boundary (past it, while the writer still has the
        previous chunk, an eighth of a chunk before looking again), the flush_interval of audio
        that may be at risk or the size limit, and none (-1, so not even an empty frame) once
        the recorder is closed or its file failed.
        """
        pending = self._pending_goal - self._room
        if self._unusable:
            room = -1
        else:
            to_handoff = self._handoff_bytes - 1 - pending
            if to_handoff < 0:
                to_handoff = self._chunk_bytes // 8
            handed = self._handed_bytes
            room = max(
                -1,
                min(
                    to_handoff,
                    self._max_at_risk - (handed - self._target.written_bytes) - pending,
                    self._limit_bytes - handed - pending,
                ),
            )
        self._room = room
        self._pending_goal = pending + room

    async def _wait_for_disk(self) -> None:
        """Hands off what is pending and waits until every handed-off chunk is written.

        Pending audio goes to the writer once it holds half a flush_interval and the previous
        chunk is on disk; while that chunk is still being written more audio is taken, and
        only a frame that would take the audio not yet on disk past flush_interval waits here.
        So a SIGKILL loses at most flush_interval (or one frame longer than that), however far
        behind the disk falls. The frame is taken only after the wait, so a cancelled call
        takes nothing.
        """
        self._hand_off()
        await WRITER.barrier()
        if self._target.error is not None and not self._unusable:
            self._unusable = True  # no frame is taken after a failed write, none is lost silently
            self._update_room()
        if self._unusable:
            self._raise_unusable()

    def _raise_unusable(self) -> None:
        if self._closing:
            raise RecorderClosedError(f"recorder for {self._path} is closed; open a new one")
        exc = self._target.error
        assert exc is not None
        raise _write_failure(self._path, exc) from exc

    def _hand_off(self) -> None:
        """Gives the pending frames to the writer thread."""
        nbytes = self._pending_bytes
        if not nbytes:
            return
        frames, self._pending = self._pending, []
        self._handoff_bytes = self._chunk_bytes
        WRITER.submit(self._target, frames, nbytes, wav.HEADER_SIZE + self._handed_bytes)
        self._handed_bytes += nbytes
        self._pending_goal -= nbytes
        if self._target.error is not None:
            self._unusable = True
        self._update_room()

    def _on_sweep(self, now: float, period: float) -> None:
        """Hands off the audio of a recording that has handed off nothing for a while.

        Called every `period` (at most a quarter of flush_interval) by the loop's sweeper, so
        audio that comes too slowly to fill a chunk still goes to the writer within about
        flush_interval of being taken.
        """
        if self._closing:
            return
        if self._handed_bytes != self._handed_at_mark:
            self._handed_at_mark, self._marked_at = self._handed_bytes, now
        elif now - self._marked_at >= self._flush_interval - period:
            self._hand_off()
            self._handed_at_mark, self._marked_at = self._handed_bytes, now

    async def aclose(self) -> LocalFileInfo:
        """Flushes, writes the final sizes, fsyncs file and directory, and returns the info.

        Finalisation runs shielded: cancelling the caller does not stop it, and a later call
        (or `async with` exit) returns the same info.
        """
        if self._closed is None:
            self._closing = self._unusable = True
            self._update_room()
            self._sweeper.discard(self)
            self._closed = self._finish()
        return await shielded(self._closed)

    def _finish(self) -> asyncio.Future[LocalFileInfo]:
        """Queues the last frames, the final header and the fsyncs; the future gives the info.

        The info and header are made in the writer thread too: a thousand calls closing at
        once then cost the event loop as little as possible.
        """
        tail, self._pending = self._pending, []
        self._pending_goal = self._room  # nothing pending any more
        describe = partial(self._describe, datetime.now(UTC))
        return WRITER.call(_finish_file, self._target, tail, self._handed_bytes, describe)

    def _describe(self, ended_at: datetime, data_bytes: int) -> LocalFileInfo:
        return LocalFileInfo(
            path=self._path,
            started_at=self._started_at,
            ended_at=ended_at,
            format="wav",
            sample_rate=self._sample_rate,
            channels=self._channels,
            num_frames=data_bytes // self._frame_bytes,
            size_bytes=wav.HEADER_SIZE + data_bytes,
        )

    async def __aenter__(self) -> AsyncFileRecorder:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if self._closed is None:
            self._hand_off()
            WRITER.close_when_written(self._target)
            warnings.warn(
                f"recorder for {self._path} was never closed; call aclose()",
                ResourceWarning,
                stacklevel=1,
            )

    def __repr__(self) -> str:
        state = "closed" if self._closing else "open"
        return (
            f"<AsyncFileRecorder path={str(self._path)!r} rate={self._sample_rate} "
            f"channels={self._channels} frames={self.num_frames} state={state}>"
        )


def _finish_file(
    target: WriteTarget,
    tail: list[bytes],
    offset: int,
    describe: Callable[[int], LocalFileInfo],
) -> LocalFileInfo:
    """Writes the last frames and the final header, makes file and directory durable."""
    data_bytes = offset + sum(map(len, tail))
    info = describe(data_bytes)
    fd = target.fd
    try:
        if target.error is not None:
            raise target.error
        write_frames(fd, tail, wav.HEADER_SIZE + offset)
        os.pwrite(fd, wav.build_header(info.sample_rate, info.channels, data_bytes), 0)
        os.fsync(fd)
    except OSError as exc:
        raise _write_failure(info.path, exc) from exc
    finally:
        os.close(fd)
    WRITER.sync_directory(info.path.parent, since=target.created_by_job)
    return info


def _write_failure(path: Path, exc: OSError) -> OSError:
    """The error for a failed write of `path`: what failed, and what the file still holds."""
    return OSError(
        exc.errno,
        f"writing {path} failed ({exc.strerror}); the file keeps the audio written before "
        "the failure, and repair_wav() makes its header exact",
    )


class _RecorderOpener:
    """What `open_recorder` returns: await it, or use it with `async with`."""

    __slots__ = ("_args", "_recorder")

    def __init__(self, *args: object) -> None:
        self._args = args
        self._recorder: AsyncFileRecorder | None = None

    def __await__(self) -> Generator[object, None, AsyncFileRecorder]:
        return _open(*self._args).__await__()  # type: ignore[arg-type]

    async def __aenter__(self) -> AsyncFileRecorder:
        self._recorder = await self
        return self._recorder

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._recorder is not None
        await self._recorder.aclose()


def open_recorder(
    directory: str | os.PathLike[str],
    base: str,
    sample_rate: int,
    *,
    channels: int = 1,
    flush_interval: float = 1.0,
) -> _RecorderOpener:
    """Creates `<directory>/<base>.wav` and returns its recorder.

    Use `rec = await open_recorder(...)` or `async with open_recorder(...) as rec:`. The
    directory is created with mode 0o700 if missing; the file is created with mode 0o600,
    never overwriting an existing one, and starts with a header that readers take as
    "length unknown" until aclose() writes the real sizes.

    Args:
        directory: where to put the recording.
        base: file name without `.wav`; one path segment (no separators, not `.`/`..`).
        sample_rate: frames per second, > 0; every write must use the same rate.
        channels: 1 (mono) or more (interleaved frames).
        flush_interval: the most acknowledged audio, in seconds, that may not yet be written
            to disk, so the most a killed process can lose; a quiet recording is also written
            at least this often. Default 1.0.

    Raises:
        ConfigurationError: (a ValueError) a bad base name, rate, channel count or interval.
        RecordingExistsError: (a FileExistsError) the file already exists.
    """
    _check_options(base, sample_rate, channels, flush_interval)
    return _RecorderOpener(os.fspath(directory), base, sample_rate, channels, float(flush_interval))


def _check_options(base: str, sample_rate: int, channels: int, flush_interval: float) -> None:
    if not isinstance(base, str) or not base or base in (".", ".."):
        raise ConfigurationError(f"base must be a non-empty file name, got {base!r}")
    if "/" in base or "\\" in base or "\x00" in base or os.sep in base:
        raise ConfigurationError(f"base {base!r} must not contain path separators or NUL")
    for name, value in (("sample_rate", sample_rate), ("channels", channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"{name} must be a positive int, got {value!r}")
    if not (flush_interval > 0 and math.isfinite(flush_interval)):
        raise ConfigurationError(
            f"flush_interval must be a finite number of seconds > 0, got {flush_interval!r}"
        )


async def _open(
    directory: str, base: str, sample_rate: int, channels: int, flush_interval: float
) -> AsyncFileRecorder:
    started_at = datetime.now(UTC)
    creating = WRITER.call(_create_file, directory, base, sample_rate, channels)
    try:
        path, target = await shielded(creating)
    except asyncio.CancelledError:
        creating.add_done_callback(_discard_if_created)
        raise
    return AsyncFileRecorder(path, target, sample_rate, channels, flush_interval, started_at)


def _create_file(
    directory_name: str, base: str, sample_rate: int, channels: int
) -> tuple[Path, WriteTarget]:
    """Creates the recording with its header already in it, never replacing a file.

    The header is written under a temporary name that is then hard-linked to the real one
    (which fails if that exists), so a crash never leaves an empty `.wav` behind. Runs in
    the writer thread, path handling included, to keep bursts of opens light on the loop.
    """
    directory = Path(directory_name)
    path = directory / f"{base}.wav"
    header = wav.build_header(sample_rate, channels)
    _make_private_dirs(directory)
    temp = directory / f".{path.name}.{secrets.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(temp, flags | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.pwrite(fd, header, 0)
    finally:
        os.close(fd)
    try:
        os.link(temp, path)
    except FileExistsError as exc:
        raise RecordingExistsError(
            exc.errno, f"{path} already exists; recordings are never overwritten", str(path)
        ) from exc
    finally:
        os.unlink(temp)
    return path, WriteTarget(os.open(path, flags), created_by_job=WRITER.jobs_run)


def _make_private_dirs(directory: Path) -> None:
    """Creates the missing directories of `directory` with mode 0o700, whatever the umask."""
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)


def _discard_if_created(creating: asyncio.Future[tuple[Path, WriteTarget]]) -> None:
    """Undoes a file creation whose caller was cancelled meanwhile."""
    if not creating.cancelled() and creating.exception() is None:
        path, target = creating.result()
        os.close(target.fd)
        os.unlink(path)
