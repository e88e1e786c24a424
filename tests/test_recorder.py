"""AsyncFileRecorder: what reaches the file, when, and what bad input or cancellation does."""

from __future__ import annotations

import asyncio
import errno
import gc
import math
import os
import stat
import subprocess
import sys
import tempfile
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wavreaders import (
    ALL_READERS,
    IN_PROCESS,
    QUICK_READERS,
    SAMPLE_FORMS,
    Reader,
    check_wav,
    pcm,
)

from recording_aio import (
    AsyncFileRecorder,
    ConfigurationError,
    InvalidSamplesError,
    LocalFileInfo,
    RecorderClosedError,
    RecordingExistsError,
    RecordingTooLargeError,
    SampleRateMismatchError,
    open_recorder,
    read_wav_info,
    repair_wav,
)
from recording_aio import recorder as recorder_module
from recording_aio import wav as wavmod
from recording_aio._writer import WRITER, shielded
from recording_aio.wav import HEADER_SIZE, build_header


def tone(frames: int, channels: int = 1, seed: int = 0) -> bytes:
    """Whole frames of a deterministic int16 signal that differs for every seed."""
    i = np.arange(frames * channels, dtype=np.int64)
    return pcm(((i * 7919 + seed * 104729) % 65536 - 32768).tolist())


def fds_open_on(path: Path) -> list[int]:
    """Descriptors of this process that refer to `path` (Linux /proc)."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to see open descriptors")
    found: list[int] = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == str(path):
                found.append(int(name))
        except OSError:
            continue
    return found


def assert_final_file(
    path: Path, audio: bytes, rate: int, channels: int, readers: Sequence[Reader] = ALL_READERS
) -> None:
    """The file is exactly a final header plus `audio`, and every reader agrees."""
    assert path.read_bytes() == build_header(rate, channels, len(audio)) + audio
    assert read_wav_info(path).header_state == "final"
    check_wav(path, audio, rate, channels, readers)


# --- what an accepted recording holds ----------------------------------------------------------

FLUSH_INTERVALS = [0.0001, 0.001, 0.01, 1.0]


@st.composite
def plans(draw: st.DrawFn) -> tuple[int, int, float, list[tuple[str, list[int]]]]:
    """A rate, channel count, flush interval and writes of random forms and sizes."""
    channels = draw(st.sampled_from([1, 1, 2, 2, 3, 8]))
    rate = draw(st.integers(min_value=8000, max_value=48000))
    flush_interval = draw(st.sampled_from(FLUSH_INTERVALS))
    sizes = draw(st.lists(st.integers(min_value=0, max_value=480), max_size=8))
    forms = draw(
        st.lists(st.sampled_from(sorted(SAMPLE_FORMS)), min_size=len(sizes), max_size=len(sizes))
    )
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    rng = np.random.default_rng(seed)
    writes = [
        (form, rng.integers(-32768, 32768, size=n * channels).tolist())
        for form, n in zip(forms, sizes, strict=False)
    ]
    return rate, channels, flush_interval, writes


@settings(max_examples=40, deadline=None)
@given(plan=plans())
async def test_closed_file_holds_exactly_the_accepted_frames(
    plan: tuple[int, int, float, list[tuple[str, list[int]]]],
) -> None:
    """After aclose, every reader gets the written frames byte for byte; info is exact."""
    rate, channels, flush_interval, writes = plan
    expected = b""
    with tempfile.TemporaryDirectory() as d:
        before = datetime.now(UTC)
        async with open_recorder(
            d, "call", rate, channels=channels, flush_interval=flush_interval
        ) as rec:
            for form, values in writes:
                await rec.write_samples(SAMPLE_FORMS[form](values, channels), rate)
                expected += pcm(values)
            assert rec.num_frames == len(expected) // (2 * channels)
        after = datetime.now(UTC)
        info = rec.info
        assert info is not None
        frames = len(expected) // (2 * channels)
        assert info.path == Path(d) / "call.wav"
        assert (info.format, info.sample_rate, info.channels) == ("wav", rate, channels)
        assert (info.num_frames, info.size_bytes) == (frames, HEADER_SIZE + len(expected))
        assert info.size_bytes == info.path.stat().st_size
        assert info.duration_s == frames / rate
        assert info.started_at.utcoffset() == timedelta(0) == info.ended_at.utcoffset()
        assert before <= info.started_at <= info.ended_at <= after
        assert_final_file(info.path, expected, rate, channels, QUICK_READERS)


@settings(max_examples=20, deadline=None)
@given(plan=plans())
async def test_flushed_frames_are_readable_before_aclose(
    plan: tuple[int, int, float, list[tuple[str, list[int]]]],
) -> None:
    """Mid-recording the file is readable, holds a clean prefix, lags <= flush_interval."""
    rate, channels, flush_interval, writes = plan
    flush_interval = min(flush_interval, 0.01)  # keep the final wait for the timer short
    block = 2 * channels
    accepted = b""
    with tempfile.TemporaryDirectory() as d:
        rec = await open_recorder(d, "live", rate, channels=channels, flush_interval=flush_interval)
        try:
            for form, values in writes:
                await rec.write_samples(SAMPLE_FORMS[form](values, channels), rate)
                accepted += pcm(values)
                await WRITER.barrier()
                info = read_wav_info(rec.path)
                assert info.header_state == "placeholder"
                on_disk = info.num_frames * block
                assert (len(accepted) - on_disk) / block <= flush_interval * rate
                check_wav(rec.path, accepted[:on_disk], rate, channels, readers=IN_PROCESS)
            await asyncio.sleep(3 * flush_interval)
            await WRITER.barrier()
            assert read_wav_info(rec.path).num_frames * block == len(accepted)
            check_wav(rec.path, accepted, rate, channels, readers=ALL_READERS)
        finally:
            await rec.aclose()
        assert_final_file(rec.path, accepted, rate, channels, IN_PROCESS)


async def test_timer_hands_off_buffered_audio_without_further_writes(tmp_path: Path) -> None:
    """Audio below the size threshold still reaches the file once flush_interval has passed."""
    audio = tone(160)
    async with open_recorder(tmp_path, "t", 8000, flush_interval=0.2) as rec:
        await rec.write_samples(audio, 8000)
        await WRITER.barrier()
        assert read_wav_info(rec.path).num_frames == 0  # still buffered: 160 < 1600 frames
        await asyncio.sleep(0.5)
        await WRITER.barrier()
        assert read_wav_info(rec.path).header_state == "placeholder"
        check_wav(rec.path, audio, 8000, 1)
    assert_final_file(rec.path, audio, 8000, 1)


async def frames_on_disk(rec: AsyncFileRecorder) -> int:
    await WRITER.barrier()
    return read_wav_info(rec.path).num_frames


def live_timers(loop: asyncio.AbstractEventLoop) -> int:
    """Timers `loop` holds that are not cancelled (asyncio's base loop keeps them in a heap)."""
    return sum(not timer.cancelled() for timer in loop._scheduled)  # type: ignore[attr-defined]


async def test_one_timer_serves_every_recording_of_a_loop_each_by_its_own_interval(
    tmp_path: Path,
) -> None:
    """However many recordings are open, the loop holds one timer for their flush_interval.

    Each still keeps its own interval: a quiet recording with a short one is written within
    about that interval, one with a long interval is not written early. The timer ends with
    the last recording.
    """
    loop = asyncio.get_running_loop()
    timers_before = live_timers(loop)
    fast = [await open_recorder(tmp_path, f"fast{i}", 8000, flush_interval=0.2) for i in range(50)]
    slow = await open_recorder(tmp_path, "slow", 8000, flush_interval=60.0)
    assert live_timers(loop) == timers_before + 1
    for rec in [*fast, slow]:
        await rec.write_samples(tone(80), 8000)
    await asyncio.sleep(0.1)
    assert [await frames_on_disk(rec) for rec in fast] == [0] * 50  # half the interval: kept
    await asyncio.sleep(0.25)  # 0.35 s after the write: more than the 0.2 s interval
    assert [await frames_on_disk(rec) for rec in fast] == [80] * 50
    assert await frames_on_disk(slow) == 0
    await asyncio.gather(*(rec.aclose() for rec in [*fast, slow]))
    await asyncio.sleep(0.1)  # past the next sweep, which finds nobody and stops
    assert live_timers(loop) == timers_before


def test_a_finished_event_loop_is_not_kept_alive(tmp_path: Path) -> None:
    """Neither the writer thread nor the loop's sweep timer keeps a loop after it is closed."""

    async def record() -> weakref.ref[asyncio.AbstractEventLoop]:
        async with open_recorder(tmp_path, "once", 8000, flush_interval=0.01) as rec:
            await rec.write_samples(tone(80), 8000)
            await asyncio.sleep(0.05)  # the sweep timer has run and is set again
        return weakref.ref(asyncio.get_running_loop())

    loop = asyncio.run(record())
    gc.collect()
    assert loop() is None


async def test_size_threshold_hands_off_without_waiting_for_the_timer(tmp_path: Path) -> None:
    """Audio reaching half a flush_interval goes to disk at once, timer or not.

    The first chunk is shorter by a random amount (at most half), so it is filled in one go.
    """
    async with open_recorder(tmp_path, "s", 8000, flush_interval=60.0) as rec:
        first = tone(8000 * 30)
        await rec.write_samples(first, 8000)
        await WRITER.barrier()
        check_wav(rec.path, first, 8000, 1, readers=IN_PROCESS)
        second = tone(8000 * 30 - 1, seed=2)
        await rec.write_samples(second, 8000)
        await WRITER.barrier()
        assert read_wav_info(rec.path).num_frames == len(first) // 2
        third = tone(1, seed=3)  # completes the chunk
        await rec.write_samples(third, 8000)
        await WRITER.barrier()
        check_wav(rec.path, first + second + third, 8000, 1, readers=IN_PROCESS)
        big = tone(8000 * 60, seed=4)  # a whole flush_interval in one write goes at once
        await rec.write_samples(big, 8000)
        await WRITER.barrier()
        check_wav(rec.path, first + second + third + big, 8000, 1, readers=IN_PROCESS)


async def test_chunks_of_thousands_of_tiny_frames_land_in_order(tmp_path: Path) -> None:
    """Thousands of one-sample frames per chunk land in order, live and final."""
    frames = [tone(1, seed=i) for i in range(5000)]
    async with open_recorder(tmp_path, "tiny", 8000, flush_interval=1.0) as rec:
        for frame in frames:
            await rec.write_samples(frame, 8000)
        await WRITER.barrier()
        on_disk = read_wav_info(rec.path).num_frames
        assert on_disk > 2000  # a first chunk of 2001 to 4000 frames
        check_wav(rec.path, b"".join(frames[:on_disk]), 8000, 1, readers=IN_PROCESS)
    assert_final_file(rec.path, b"".join(frames), 8000, 1)


def test_a_short_write_is_finished_in_order(tmp_path: Path) -> None:
    """When the kernel writes only part of a chunk, the rest follows at the right place.

    A file size limit makes the kernel stop mid-way; the rest then fails with EFBIG, and the
    file holds exactly the bytes up to the limit, in order.
    """
    path = tmp_path / "limited"
    frames = [bytes([i]) * 1000 for i in range(10)]
    script = (
        "import os, resource, signal, sys\n"
        "from recording_aio._writer import write_frames\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4500, 4500))\n"
        "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)\n"
        "try:\n"
        "    write_frames(fd, [bytes([i]) * 1000 for i in range(10)], 100)\n"
        "except OSError as exc:\n"
        "    print(exc.errno)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(errno.EFBIG)
    assert path.read_bytes() == bytes(100) + b"".join(frames)[:4400]


async def test_flush_puts_every_accepted_frame_in_the_open_file(tmp_path: Path) -> None:
    """After flush(), every reader sees all accepted audio while the recording stays open."""
    first, second = tone(100), tone(30, seed=2)
    async with open_recorder(tmp_path, "f", 8000, flush_interval=60.0) as rec:
        await rec.write_samples(first, 8000)
        await WRITER.barrier()
        assert read_wav_info(rec.path).num_frames == 0  # far below a chunk: still in memory
        await rec.flush()
        assert read_wav_info(rec.path).header_state == "placeholder"
        check_wav(rec.path, first, 8000, 1)
        await rec.write_samples(second, 8000)
        await rec.flush()
        await rec.flush()  # nothing new: returns at once, changes nothing
        check_wav(rec.path, first + second, 8000, 1, readers=IN_PROCESS)
    assert_final_file(rec.path, first + second, 8000, 1, readers=IN_PROCESS)
    with pytest.raises(RecorderClosedError):
        await rec.flush()


async def test_a_failed_disk_write_is_raised_and_the_file_keeps_what_was_written(
    tmp_path: Path,
) -> None:
    """Once writing the file fails, writes, flush and aclose raise OSError saying what to do.

    The failure is made real by putting a read-only descriptor in place of the recorder's;
    what reached the file before stays there, and repair_wav() makes its header exact.
    """
    written = tone(100)
    rec = await open_recorder(tmp_path, "fail", 8000, flush_interval=60.0)
    await rec.write_samples(written, 8000)
    await rec.flush()
    read_only = os.open(rec.path, os.O_RDONLY)
    os.dup2(read_only, rec._target.fd)
    os.close(read_only)
    await rec.write_samples(tone(50, seed=2), 8000)  # taken into memory; the disk is not asked
    with pytest.raises(OSError, match="repair_wav") as failed:
        await rec.flush()
    assert failed.value.errno == errno.EBADF
    with pytest.raises(OSError, match="repair_wav"):
        await rec.write_samples(tone(1, seed=3), 8000)
    with pytest.raises(OSError, match="repair_wav") as closing:
        await rec.aclose()
    assert closing.value.errno == errno.EBADF
    with pytest.raises(OSError, match="repair_wav"):
        await rec.aclose()  # the same outcome again
    assert rec.info is None
    assert read_wav_info(rec.path).header_state == "placeholder"
    assert repair_wav(rec.path).num_frames == 100
    assert_final_file(rec.path, written, 8000, 1, readers=IN_PROCESS)


async def test_empty_recording_is_a_valid_final_file(tmp_path: Path) -> None:
    """A recorder closed without audio leaves a final 44-byte WAV of zero frames."""
    async with open_recorder(tmp_path, "empty", 16000, channels=2) as rec:
        await rec.write_samples(b"", 16000)
    assert rec.info is not None
    assert (rec.info.num_frames, rec.info.size_bytes, rec.info.duration_s) == (0, 44, 0.0)
    assert_final_file(rec.path, b"", 16000, 2)


async def test_write_takes_a_copy_of_mutable_input(tmp_path: Path) -> None:
    """Changing a bytearray or ndarray after write_samples returns does not change the file."""
    buf = bytearray(tone(100))
    arr = np.frombuffer(tone(100, seed=1), dtype="<i2").copy()
    expected = bytes(buf) + arr.tobytes()
    async with open_recorder(tmp_path, "copy", 8000) as rec:
        await rec.write_samples(buf, 8000)
        await rec.write_samples(arr, 8000)
        buf[:] = b"\x00" * len(buf)
        arr[:] = 0
    assert_final_file(rec.path, expected, 8000, 1)


# --- bad input -------------------------------------------------------------------------------

BAD_FRAMES: dict[str, tuple[object, type[Exception]]] = {
    "odd-bytes": (b"\x01\x02\x03", InvalidSamplesError),
    "partial-stereo-frame": (b"\x01\x02\x03\x04\x05\x06", InvalidSamplesError),
    "partial-stereo-list": ([1, 2, 3], InvalidSamplesError),
    "float32": (np.zeros(4, dtype=np.float32), InvalidSamplesError),
    "float64": (np.zeros(4, dtype=np.float64), InvalidSamplesError),
    "int32": (np.zeros(4, dtype=np.int32), InvalidSamplesError),
    "uint16": (np.zeros(4, dtype=np.uint16), InvalidSamplesError),
    "out-of-range": ([0, 40000], InvalidSamplesError),
    "float-in-list": ([0.5, 0.5], InvalidSamplesError),
    "str": ("\x00\x00\x00\x00", InvalidSamplesError),
    "none": (None, InvalidSamplesError),
    "generator": ((x for x in (1, 2)), InvalidSamplesError),
}


@pytest.mark.parametrize(("bad", "error"), BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
async def test_rejected_frame_leaves_the_recording_valid_and_writable(
    tmp_path: Path, bad: object, error: type[Exception]
) -> None:
    """A refused frame raises, adds nothing, and later frames are still recorded."""
    good1, good2 = tone(80, 2, seed=1), tone(80, 2, seed=2)
    async with open_recorder(tmp_path, "bad", 8000, channels=2, flush_interval=0.001) as rec:
        await rec.write_samples(good1, 8000)
        with pytest.raises(error):
            await rec.write_samples(bad, 8000)
        assert rec.num_frames == 80
        await WRITER.barrier()
        check_wav(rec.path, good1, 8000, 2, readers=IN_PROCESS)
        await rec.write_samples(good2, 8000)
    assert_final_file(rec.path, good1 + good2, 8000, 2)


@pytest.mark.parametrize("wrong_rate", [8001, 16000, 0, -8000])
async def test_wrong_sample_rate_is_refused(tmp_path: Path, wrong_rate: int) -> None:
    """A frame at another rate raises SampleRateMismatchError (a ValueError); nothing written."""
    good = tone(160)
    async with open_recorder(tmp_path, "rate", 8000) as rec:
        await rec.write_samples(good, 8000)
        with pytest.raises(SampleRateMismatchError) as caught:
            await rec.write_samples(tone(160, seed=9), wrong_rate)
        assert isinstance(caught.value, ValueError)
        assert (caught.value.expected, caught.value.got) == (8000, wrong_rate)
    assert_final_file(rec.path, good, 8000, 1)


async def test_write_after_close_raises_recorder_closed(tmp_path: Path) -> None:
    """write_samples after aclose raises RecorderClosedError (a ValueError); file unchanged."""
    rec = await open_recorder(tmp_path, "closed", 8000)
    await rec.write_samples(tone(10), 8000)
    await rec.aclose()
    before = rec.path.read_bytes()
    with pytest.raises(RecorderClosedError):
        await rec.write_samples(tone(10), 8000)
    with pytest.raises(ValueError, match="closed"):
        await rec.write_samples(b"", 8000)
    assert rec.closed
    assert rec.path.read_bytes() == before


async def test_write_racing_aclose_is_refused(tmp_path: Path) -> None:
    """A write issued after aclose started (before it finished) raises RecorderClosedError."""
    rec = await open_recorder(tmp_path, "race", 8000)
    await rec.write_samples(tone(10), 8000)
    closing = asyncio.ensure_future(rec.aclose())
    await asyncio.sleep(0)
    assert rec.closed
    with pytest.raises(RecorderClosedError):
        await rec.write_samples(tone(10, seed=1), 8000)
    await closing
    assert_final_file(rec.path, tone(10), 8000, 1)


async def test_wav_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that would cross the WAV size limit is refused; the file keeps earlier frames."""
    monkeypatch.setattr(wavmod, "MAX_DATA_BYTES", 1002)  # 250 stereo frames + 2 bytes
    async with open_recorder(tmp_path, "big", 8000, channels=2, flush_interval=0.001) as rec:
        first = tone(200, 2)
        await rec.write_samples(first, 8000)
        with pytest.raises(RecordingTooLargeError) as caught:
            await rec.write_samples(tone(51, 2, seed=1), 8000)
        assert isinstance(caught.value, ValueError)
        assert rec.num_frames == 200
        await WRITER.barrier()
        check_wav(rec.path, first, 8000, 2, readers=IN_PROCESS)
        last = tone(50, 2, seed=2)
        await rec.write_samples(last, 8000)
        with pytest.raises(RecordingTooLargeError):
            await rec.write_samples(tone(1, 2), 8000)
    assert rec.info is not None
    assert (rec.info.num_frames, rec.info.size_bytes) == (250, 44 + 1000)
    assert_final_file(rec.path, first + last, 8000, 2)


# --- configuration, naming and permissions ---------------------------------------------------

BAD_OPTIONS: dict[str, dict[str, object]] = {
    "rate-zero": {"sample_rate": 0},
    "rate-negative": {"sample_rate": -16000},
    "rate-float": {"sample_rate": 16000.0},
    "rate-bool": {"sample_rate": True},
    "channels-zero": {"channels": 0},
    "channels-negative": {"channels": -1},
    "channels-float": {"channels": 1.0},
    "flush-zero": {"flush_interval": 0},
    "flush-negative": {"flush_interval": -1.0},
    "flush-nan": {"flush_interval": math.nan},
    "flush-inf": {"flush_interval": math.inf},
    "base-empty": {"base": ""},
    "base-dot": {"base": "."},
    "base-dotdot": {"base": ".."},
    "base-slash": {"base": "a/b"},
    "base-absolute": {"base": "/etc/x"},
    "base-traversal": {"base": "../x"},
    "base-backslash": {"base": "a\\b"},
    "base-nul": {"base": "a\x00b"},
    "base-none": {"base": None},
    "base-bytes": {"base": b"call"},
}


@pytest.mark.parametrize("options", BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
async def test_bad_options_raise_configuration_error_and_create_nothing(
    tmp_path: Path, options: dict[str, object]
) -> None:
    """A bad rate, channel count, interval or base name raises ConfigurationError; no files."""
    args: dict[str, object] = {"base": "call", "sample_rate": 16000} | options
    directory = tmp_path / "new"
    with pytest.raises(ConfigurationError) as caught:
        await open_recorder(directory, **args)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)
    assert not directory.exists()
    assert list(tmp_path.iterdir()) == []


async def test_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    """An existing file raises RecordingExistsError (a FileExistsError); its bytes stay."""
    path = tmp_path / "call.wav"
    path.write_bytes(b"precious")
    with pytest.raises(RecordingExistsError) as caught:
        await open_recorder(tmp_path, "call", 8000)
    assert isinstance(caught.value, FileExistsError)
    assert caught.value.errno == errno.EEXIST
    assert path.read_bytes() == b"precious"
    assert fds_open_on(path) == []


async def test_symlink_in_place_of_the_file_is_not_followed(tmp_path: Path) -> None:
    """A symlink named like the recording raises RecordingExistsError; its target is untouched."""
    target = tmp_path / "target"
    target.write_bytes(b"other")
    (tmp_path / "call.wav").symlink_to(target)
    with pytest.raises(RecordingExistsError):
        await open_recorder(tmp_path, "call", 8000)
    assert target.read_bytes() == b"other"


async def test_second_recorder_on_the_same_name_is_refused(tmp_path: Path) -> None:
    """While one recorder writes call.wav, opening another on that name fails; the first wins."""
    async with open_recorder(tmp_path, "call", 8000) as rec:
        with pytest.raises(RecordingExistsError):
            await open_recorder(tmp_path, "call", 8000)
        await rec.write_samples(tone(20), 8000)
    assert_final_file(rec.path, tone(20), 8000, 1)


async def test_file_and_new_directories_are_private(tmp_path: Path, umask: int) -> None:
    """The file is 0o600 and every directory created is 0o700, whatever the umask."""
    existing_mode = stat.S_IMODE(tmp_path.stat().st_mode)
    directory = tmp_path / "a" / "b" / "c"
    async with open_recorder(directory, "call", 8000) as rec:
        assert stat.S_IMODE(rec.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(rec.path.stat().st_mode) == 0o600
    for d in (tmp_path / "a", tmp_path / "a" / "b", directory):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    assert stat.S_IMODE(tmp_path.stat().st_mode) == existing_mode
    assert os.umask(umask) == umask  # the recorder did not change the process umask


async def test_file_name_is_base_plus_wav(tmp_path: Path) -> None:
    """The recording is <directory>/<base>.wav, for names with dots, spaces and non-ASCII."""
    for base in ("call.2024-01-01", "with space", "ünï€", ".hidden"):
        async with open_recorder(str(tmp_path), base, 8000) as rec:
            pass
        assert rec.path == tmp_path / f"{base}.wav"
        assert_final_file(rec.path, b"", 8000, 1)


# --- lifecycle -------------------------------------------------------------------------------


async def test_await_form_and_aclose_is_idempotent(tmp_path: Path) -> None:
    """`await open_recorder()` gives the recorder; every aclose returns the same info object."""
    rec = await open_recorder(tmp_path, "call", 16000, channels=2)
    assert isinstance(rec, AsyncFileRecorder)
    assert (rec.sample_rate, rec.channels, rec.closed, rec.info) == (16000, 2, False, None)
    await rec.write_samples(tone(320, 2), 16000)
    first = await rec.aclose()
    second = await rec.aclose()
    assert first is second is rec.info
    assert isinstance(first, LocalFileInfo)
    assert first.num_frames == 320
    assert "closed" in repr(rec)
    assert_final_file(rec.path, tone(320, 2), 16000, 2)


async def test_concurrent_aclose_calls_share_one_result(tmp_path: Path) -> None:
    """Several tasks closing at once all get the same info, and the file is finalised once."""
    rec = await open_recorder(tmp_path, "call", 8000)
    await rec.write_samples(tone(100), 8000)
    infos = await asyncio.gather(*(rec.aclose() for _ in range(5)))
    assert all(info is infos[0] for info in infos)
    assert_final_file(rec.path, tone(100), 8000, 1)


async def test_async_with_exit_by_exception_finalises(tmp_path: Path) -> None:
    """Leaving `async with` by an exception still writes the final header; the error propagates."""
    audio = tone(500, 2)
    holder: list[AsyncFileRecorder] = []

    async def call() -> None:
        async with open_recorder(tmp_path, "call", 16000, channels=2) as rec:
            holder.append(rec)
            await rec.write_samples(audio, 16000)
            raise RuntimeError("call dropped")

    with pytest.raises(RuntimeError, match="call dropped"):
        await call()
    info = holder[0].info
    assert info is not None
    assert info.num_frames == 500
    assert_final_file(info.path, audio, 16000, 2)


async def test_cancelled_task_inside_async_with_finalises(tmp_path: Path) -> None:
    """Cancelling a task while it is inside `async with` leaves a final file."""
    written = asyncio.Event()
    holder: list[AsyncFileRecorder] = []

    async def call() -> None:
        async with open_recorder(tmp_path, "call", 8000) as rec:
            holder.append(rec)
            await rec.write_samples(tone(200), 8000)
            written.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(call())
    await written.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert holder[0].info is not None
    assert_final_file(holder[0].path, tone(200), 8000, 1)


async def _until_blocked(task: asyncio.Task[object]) -> bool:
    """Lets the loop run a little; True if `task` is still waiting."""
    for _ in range(20):
        await asyncio.sleep(0)
    return not task.done()


async def test_cancelling_a_write_blocked_on_the_disk(
    tmp_path: Path, stall_writer: Callable[[], threading.Event]
) -> None:
    """A write waiting for a congested disk can be cancelled; it adds nothing, file stays valid."""
    rec = await open_recorder(tmp_path, "slow", 8000, flush_interval=0.01)  # 80-frame chunks
    stalled_writer = stall_writer()
    accepted = b""
    blocked: asyncio.Task[None] | None = None
    for i in range(20):
        frame = tone(80, seed=i)
        task = asyncio.create_task(rec.write_samples(frame, 8000))
        if await _until_blocked(task):
            blocked = task
            break
        await task
        accepted += frame
    assert blocked is not None, "write_samples never applied back-pressure to a stalled disk"
    assert 0 < len(accepted) <= 10 * 160
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    assert rec.num_frames * 2 == len(accepted)
    stalled_writer.set()
    late = tone(80, seed=99)
    await rec.write_samples(late, 8000)
    await rec.aclose()
    assert_final_file(rec.path, accepted + late, 8000, 1)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frame_sizes=st.lists(st.integers(1, 300), min_size=1, max_size=30))
async def test_audio_not_on_disk_never_exceeds_flush_interval(
    stall_writer: Callable[[], threading.Event], frame_sizes: list[int]
) -> None:
    """With the disk stalled, writes take flush_interval (or one longer frame), then wait."""
    limit = 80 * 2  # flush_interval 0.01 s at 8000 Hz mono, in bytes
    with tempfile.TemporaryDirectory() as d:
        rec = await open_recorder(d, "bound", 8000, flush_interval=0.01)
        stalled_writer = stall_writer()
        taken: list[bytes] = []
        try:
            for i, size in enumerate(frame_sizes):
                frame = tone(size, seed=i)
                task = asyncio.create_task(rec.write_samples(frame, 8000))
                if await _until_blocked(task):
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
                    break
                await task
                taken.append(frame)
            at_risk = sum(map(len, taken))
            assert at_risk <= limit or len(taken) == 1
        finally:
            stalled_writer.set()
        await rec.aclose()
        assert_final_file(rec.path, b"".join(taken), 8000, 1, IN_PROCESS)


async def test_cancelling_aclose_blocked_on_the_disk(
    tmp_path: Path, stall_writer: Callable[[], threading.Event]
) -> None:
    """A cancelled aclose still finalises: a later aclose returns its info, the header is final."""
    rec = await open_recorder(tmp_path, "slow", 8000)
    stalled_writer = stall_writer()
    audio = tone(1000)
    await rec.write_samples(audio, 8000)
    closing = asyncio.create_task(rec.aclose())
    assert await _until_blocked(closing)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert read_wav_info(rec.path).header_state == "placeholder"
    with pytest.raises(RecorderClosedError):
        await rec.write_samples(tone(1), 8000)
    stalled_writer.set()
    info = await rec.aclose()
    assert info is await rec.aclose()
    assert info.num_frames == 1000
    assert_final_file(rec.path, audio, 8000, 1)


async def test_a_chunk_held_back_by_a_busy_writer_follows_soon_after(
    tmp_path: Path,
    stall_writer: Callable[[], threading.Event],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Audio taken while the writer is busy goes to it within an eighth of a chunk after."""
    monkeypatch.setattr(recorder_module.random, "randint", lambda low, high: low)
    rec = await open_recorder(tmp_path, "busy", 8000)  # chunks of 4000 frames, first 2001
    audio = tone(7200)
    frame_bytes = 160  # 80 frames of int16
    stalled_writer = stall_writer()
    async with asyncio.timeout(5):  # under flush_interval at risk: no write waits
        for start in range(0, 6400 * 2, frame_bytes):
            await rec.write_samples(audio[start : start + frame_bytes], 8000)
    stalled_writer.set()
    await WRITER.barrier()
    first_chunk = os.path.getsize(rec.path) - HEADER_SIZE
    assert first_chunk == 2080 * 2
    for start in range(6400 * 2, 6960 * 2, frame_bytes):  # 7 frames: 560 > 4000 / 8
        await rec.write_samples(audio[start : start + frame_bytes], 8000)
    await WRITER.barrier()
    assert os.path.getsize(rec.path) - HEADER_SIZE >= 6400 * 2
    await rec.aclose()
    assert_final_file(rec.path, audio[: 6960 * 2], 8000, 1)


async def test_a_cancelled_wait_leaves_the_writer_result_alone() -> None:
    """Cancelling the waiter neither cancels the result nor leaves its error unretrieved."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    ok, failing = loop.create_future(), loop.create_future()
    ok_waiter, failing_waiter = shielded(ok), shielded(failing)
    ok_waiter.cancel()
    failing_waiter.cancel()
    ok.set_result(7)
    failing.set_exception(OSError(errno.EIO, "disk gone"))
    await asyncio.sleep(0)
    assert ok.result() == 7
    assert await shielded(ok) == 7
    assert failing.done()
    assert not failing.cancelled()
    del ok, failing, ok_waiter, failing_waiter
    gc.collect()
    assert reported == []


async def test_cancelling_open_leaves_no_file_and_no_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelling `await open_recorder()` mid-creation removes the file it created."""
    created = threading.Event()
    release = threading.Event()
    real_create = recorder_module._create_file

    def slow_create(*args: object) -> object:
        release.wait(timeout=10)
        try:
            return real_create(*args)  # type: ignore[arg-type]
        finally:
            created.set()

    monkeypatch.setattr(recorder_module, "_create_file", slow_create)

    async def opener() -> AsyncFileRecorder:
        return await open_recorder(tmp_path, "call", 8000)

    task = asyncio.create_task(opener())
    await asyncio.sleep(0.01)
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(created.wait, 10)
    for _ in range(50):
        if not (tmp_path / "call.wav").exists():
            break
        await asyncio.sleep(0.01)
    assert not (tmp_path / "call.wav").exists()
    assert fds_open_on(tmp_path / "call.wav") == []


def _drop(holder: list[AsyncFileRecorder]) -> None:
    """Drops the last reference to a recorder and collects garbage."""
    holder.clear()
    gc.collect()


async def test_abandoned_recorder_warns_and_releases_its_descriptor(tmp_path: Path) -> None:
    """A recorder garbage-collected unclosed gives a ResourceWarning, keeps its audio, closes."""
    rec = await open_recorder(tmp_path, "lost", 8000)
    await rec.write_samples(tone(100), 8000)
    path = rec.path
    assert len(fds_open_on(path)) == 1
    holder = [rec]
    del rec
    with pytest.warns(ResourceWarning, match="never closed"):
        _drop(holder)
    await WRITER.barrier()
    assert fds_open_on(path) == []
    assert read_wav_info(path).header_state == "placeholder"
    check_wav(path, tone(100), 8000, 1)


async def test_abandoned_recorder_keeps_chunks_still_queued_for_the_disk(
    tmp_path: Path, stall_writer: Callable[[], threading.Event]
) -> None:
    """Chunks waiting in the writer queue when a recorder is dropped still reach the file."""
    rec = await open_recorder(tmp_path, "lost", 8000, flush_interval=0.01)  # 80-frame chunks
    stalled_writer = stall_writer()
    audio = tone(80, seed=1) + tone(80, seed=2) + tone(30, seed=3)
    for start in range(0, len(audio), 160):
        await rec.write_samples(audio[start : start + 160], 8000)
    path = rec.path
    holder = [rec]
    del rec
    with pytest.warns(ResourceWarning, match="never closed"):
        _drop(holder)
    stalled_writer.set()
    await WRITER.barrier()
    assert fds_open_on(path) == []
    check_wav(path, audio, 8000, 1)


async def test_abandoned_recorder_cleans_up_when_warnings_are_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ResourceWarning turned into an error, an abandoned recorder still closes its fd."""
    rec = await open_recorder(tmp_path, "lost", 8000)
    await rec.write_samples(tone(100), 8000)
    path = rec.path
    holder = [rec]
    del rec
    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: unraisable.append(u.exc_value))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        _drop(holder)
    assert [type(e) for e in unraisable] == [ResourceWarning]
    await WRITER.barrier()
    assert fds_open_on(path) == [], "the abandoned recorder's descriptor was leaked"
    check_wav(path, tone(100), 8000, 1)


# --- many recorders --------------------------------------------------------------------------


async def test_500_concurrent_recorders_each_get_exactly_their_signal(tmp_path: Path) -> None:
    """500 recorders in one loop, 20 ms frames interleaved, each file holds only its own audio."""
    rate, frame, frames_per_call = 8000, 160, 40

    async def call(k: int) -> LocalFileInfo:
        channels = 1 + k % 2
        signal = tone(frame * frames_per_call, channels, seed=k)
        step = frame * 2 * channels
        async with open_recorder(
            tmp_path, f"call-{k:03d}", rate, channels=channels, flush_interval=0.05
        ) as rec:
            for start in range(0, len(signal), step):
                await rec.write_samples(signal[start : start + step], rate)
                await asyncio.sleep(0)
        assert rec.info is not None
        return rec.info

    infos = await asyncio.gather(*(call(k) for k in range(500)))
    assert len({info.path for info in infos}) == 500
    for k, info in enumerate(infos):
        channels = 1 + k % 2
        assert (info.num_frames, info.channels) == (frame * frames_per_call, channels)
        expected = tone(frame * frames_per_call, channels, seed=k)
        readers = ALL_READERS if k % 100 == 0 else IN_PROCESS
        assert info.path.read_bytes() == build_header(rate, channels, len(expected)) + expected
        check_wav(info.path, expected, rate, channels, readers=readers)
