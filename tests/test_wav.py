"""The WAV container: header layout, parsing, header states and crash repair."""

from __future__ import annotations

import asyncio
import functools
import io
import os
import struct
import tempfile
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import given, settings
from hypothesis import strategies as st
from wavreaders import IN_PROCESS, check_wav, pcm

from recording_aio import InvalidWavError, open_recorder, read_wav_info, repair_wav
from recording_aio import wav as wavmod
from recording_aio._writer import WRITER
from recording_aio.wav import HEADER_SIZE, UNKNOWN_SIZE, build_header, parse_header


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _ramp(frames: int, channels: int, seed: int = 0) -> bytes:
    """Whole frames of a deterministic, non-repeating-looking int16 signal."""
    i = np.arange(frames * channels, dtype=np.int64) + seed
    return pcm(((i * 7919) % 65536 - 32768).tolist())


def _snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


@functools.cache
def real_recording(channels: int) -> tuple[bytes, bytes]:
    """(finished file, the same file while still open) as recorded by the library."""

    async def record(directory: str) -> tuple[bytes, bytes]:
        async with open_recorder(directory, "real", 16000, channels=channels) as rec:
            await rec.write_samples(_ramp(1601, channels), 16000)
            await rec.write_samples(_ramp(17000, channels, seed=5), 16000)
            await WRITER.barrier()
            open_bytes = rec.path.read_bytes()
        return rec.path.read_bytes(), open_bytes

    with tempfile.TemporaryDirectory() as d:
        return asyncio.run(record(d))


# --- building and parsing headers ------------------------------------------------------------


def test_header_bytes_are_the_canonical_pcm16_layout() -> None:
    """build_header writes RIFF/WAVE/fmt/data with the exact little-endian fields."""
    expected = b"".join(
        [
            b"RIFF",
            struct.pack("<I", 36 + 3200),
            b"WAVE",
            b"fmt ",
            struct.pack("<IHHIIHH", 16, 1, 2, 16000, 64000, 4, 16),
            b"data",
            struct.pack("<I", 3200),
        ]
    )
    assert build_header(16000, 2, 3200) == expected
    assert len(expected) == HEADER_SIZE == 44


def test_placeholder_header_has_unknown_sizes() -> None:
    """Without data_bytes both the RIFF and data sizes are 0xFFFFFFFF."""
    header = build_header(8000, 1)
    assert struct.unpack_from("<I", header, 4)[0] == UNKNOWN_SIZE == 0xFFFFFFFF
    assert struct.unpack_from("<I", header, 40)[0] == UNKNOWN_SIZE
    assert header[8:40] == build_header(8000, 1, 0)[8:40]


@settings(max_examples=40, deadline=None)
@given(
    rate=st.integers(min_value=1, max_value=384000),
    channels=st.integers(min_value=1, max_value=16),
    frames=st.integers(min_value=0, max_value=300),
)
def test_header_equals_what_the_wave_module_writes(rate: int, channels: int, frames: int) -> None:
    """For 16-bit PCM the header is byte for byte what the standard library writes."""
    data = bytes(range(256)) * (frames * channels * 2 // 256) + b"\x01" * (
        frames * channels * 2 % 256
    )
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data)
    assert buf.getvalue() == build_header(rate, channels, len(data)) + data


@settings(max_examples=60, deadline=None)
@given(
    rate=st.integers(min_value=1, max_value=384000),
    channels=st.integers(min_value=1, max_value=16),
    frames=st.integers(min_value=0, max_value=10**8),
    torn=st.integers(min_value=0, max_value=31),
)
def test_build_parse_round_trip(rate: int, channels: int, frames: int, torn: int) -> None:
    """parse_header gives back the rate, channels and frames, final or placeholder."""
    block = 2 * channels
    torn %= block
    data_bytes = frames * block
    path = Path("x.wav")
    final = parse_header(build_header(rate, channels, data_bytes), 44 + data_bytes, path)
    assert (final.sample_rate, final.channels, final.bits_per_sample) == (rate, channels, 16)
    assert (final.num_frames, final.data_bytes, final.data_offset) == (frames, data_bytes, 44)
    assert (final.header_state, final.block_align, final.file_size) == (
        "final",
        block,
        44 + data_bytes,
    )
    size = 44 + data_bytes + torn
    placeholder = parse_header(build_header(rate, channels), size, path)
    assert placeholder.header_state == "placeholder"
    assert (placeholder.num_frames, placeholder.data_bytes) == (frames, data_bytes)
    assert placeholder.duration_s == frames / rate


# --- header states ---------------------------------------------------------------------------


def test_closed_recording_reads_final(tmp_path: Path) -> None:
    """A finished recording's header is final, with its exact frame count."""
    path = _write(tmp_path / "a.wav", real_recording(2)[0])
    info = read_wav_info(path)
    assert info.header_state == "final"
    assert (info.num_frames, info.channels, info.sample_rate) == (18601, 2, 16000)
    assert (info.data_offset, info.data_bytes, info.file_size) == (44, 18601 * 4, 44 + 18601 * 4)
    assert info.path == path


def test_open_recording_reads_placeholder_with_frames_on_disk(tmp_path: Path) -> None:
    """A recording not yet closed reads as placeholder and counts the frames on disk."""
    path = _write(tmp_path / "a.wav", real_recording(1)[1])
    info = read_wav_info(path)
    assert info.header_state == "placeholder"
    assert (info.num_frames, info.data_bytes, info.data_offset) == (18601, 2 * 18601, 44)


@pytest.mark.parametrize(
    ("data_size", "riff_size", "extra", "state", "frames"),
    [
        (UNKNOWN_SIZE, UNKNOWN_SIZE, 0, "placeholder", 0),
        (UNKNOWN_SIZE, UNKNOWN_SIZE, 10, "placeholder", 5),
        (0, 0, 11, "placeholder", 5),
        (0, 36, 0, "final", 0),
        (10, 46, 10, "final", 5),
        (10, 46, 12, "stale", 6),
        (10, 46, 6, "stale", 3),
        (0, 36, 4, "placeholder", 2),
    ],
    ids=[
        "unknown-empty",
        "unknown-with-data",
        "zero-with-data",
        "final-empty",
        "final",
        "longer-than-declared",
        "shorter-than-declared",
        "zero-data-size-with-data",
    ],
)
def test_header_states(
    tmp_path: Path, data_size: int, riff_size: int, extra: int, state: str, frames: int
) -> None:
    """Sizes are final, placeholder (unknown or zero) or stale against the file's length."""
    header = bytearray(build_header(8000, 1))
    header[4:8] = struct.pack("<I", riff_size)
    header[40:44] = struct.pack("<I", data_size)
    path = _write(tmp_path / "s.wav", bytes(header) + b"\x01" * extra)
    info = read_wav_info(path)
    assert (info.header_state, info.num_frames) == (state, frames)


def test_chunks_before_data_are_skipped(tmp_path: Path) -> None:
    """A LIST chunk of odd size (with its pad byte) before data moves data_offset past it."""
    header = build_header(8000, 1, 4)
    listing = b"LIST" + struct.pack("<I", 5) + b"INFOx\x00"
    body = header[12:36] + listing + header[36:] + b"\x01\x00\x02\x00"
    riff = b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE"
    path = _write(tmp_path / "l.wav", riff + body)
    info = read_wav_info(path)
    assert (info.data_offset, info.num_frames, info.header_state) == (44 + 14, 2, "final")
    check_wav(path, b"\x01\x00\x02\x00", 8000, 1)


def test_wave_format_extensible_pcm_is_read(tmp_path: Path) -> None:
    """A WAVE_FORMAT_EXTENSIBLE file with the PCM subformat is parsed as PCM."""
    path = tmp_path / "x.wav"
    soundfile.write(path, np.zeros((7, 3), dtype="<i2"), 48000, subtype="PCM_16", format="WAVEX")
    info = read_wav_info(path)
    assert (info.channels, info.sample_rate, info.num_frames, info.header_state) == (
        3,
        48000,
        7,
        "final",
    )


def test_missing_file_raises_os_error(tmp_path: Path) -> None:
    """A file that does not exist raises FileNotFoundError, not InvalidWavError."""
    with pytest.raises(FileNotFoundError):
        read_wav_info(tmp_path / "nope.wav")


# --- repair ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "torn"), [(1, 0), (1, 1), (2, 0), (2, 1), (2, 3), (5, 9)])
def test_repair_drops_torn_frame_and_patches_sizes(
    tmp_path: Path, channels: int, torn: int
) -> None:
    """A crashed file gets its torn trailing frame cut and its sizes made exact."""
    audio = _ramp(1000, channels)
    torn_frame = bytes(range(1, torn + 1))
    path = _write(tmp_path / "c.wav", build_header(16000, channels) + audio + torn_frame)
    info = repair_wav(path)
    assert (info.header_state, info.num_frames, info.data_bytes) == ("final", 1000, len(audio))
    assert path.read_bytes() == build_header(16000, channels, len(audio)) + audio
    assert read_wav_info(path) == info
    check_wav(path, audio, 16000, channels)


def test_repair_of_a_stale_header_uses_the_file_length(tmp_path: Path) -> None:
    """A final header copied with a truncated body is rewritten from what is really there."""
    audio = _ramp(500, 2)
    path = _write(tmp_path / "s.wav", build_header(8000, 2, len(audio))[:44] + audio[:803])
    assert read_wav_info(path).header_state == "stale"
    info = repair_wav(path)
    assert (info.header_state, info.num_frames) == ("final", 200)
    check_wav(path, audio[:800], 8000, 2)


def test_repair_of_a_24_bit_file_keeps_whole_3_byte_frames(tmp_path: Path) -> None:
    """Repair works on any integer PCM width: a 24-bit stereo file is cut to 6-byte frames."""
    path = tmp_path / "24.wav"
    samples = (np.arange(20, dtype=np.int32).reshape(10, 2) - 10) * 1000 * 256
    soundfile.write(path, samples, 44100, subtype="PCM_24")
    raw = bytearray(path.read_bytes())
    raw[4:8] = raw[40:44] = struct.pack("<I", UNKNOWN_SIZE)
    path.write_bytes(bytes(raw) + b"\x01\x02\x03\x04")
    info = repair_wav(path)
    assert (info.header_state, info.num_frames, info.bits_per_sample) == ("final", 10, 24)
    assert path.stat().st_size == 44 + 60
    read, rate = soundfile.read(path, dtype="int32")
    assert rate == 44100
    assert read.tolist() == samples.tolist()


def test_repair_leaves_a_final_file_untouched(tmp_path: Path) -> None:
    """Repairing a file whose header is already final changes neither bytes nor mtime."""
    path = _write(tmp_path / "f.wav", real_recording(1)[0])
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = _snapshot(path)
    info = repair_wav(path)
    assert info.header_state == "final"
    assert _snapshot(path) == before


def test_repair_is_idempotent(tmp_path: Path) -> None:
    """Repairing a repaired file changes nothing more."""
    path = _write(tmp_path / "c.wav", real_recording(2)[1] + b"\x01")
    first = repair_wav(path)
    after_first = path.read_bytes()
    assert repair_wav(path) == first
    assert path.read_bytes() == after_first


def _float_wav() -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(8, dtype=np.float32), 8000, subtype="FLOAT", format="WAV")
    return buf.getvalue()


def _float_wavex() -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(8, dtype=np.float32), 8000, subtype="FLOAT", format="WAVEX")
    return buf.getvalue()


def _rf64() -> bytes:
    header = bytearray(build_header(8000, 1))
    header[0:4] = b"RF64"
    return bytes(header) + b"\x00" * 16


def _with_fmt_tag(tag: int) -> bytes:
    header = bytearray(build_header(8000, 1))
    header[20:22] = struct.pack("<H", tag)
    return bytes(header) + b"\x00" * 16


def _bad_block_align() -> bytes:
    header = bytearray(build_header(8000, 2))
    header[32:34] = struct.pack("<H", 3)
    return bytes(header) + b"\x00" * 16


def _data_before_fmt() -> bytes:
    header = build_header(8000, 1, 0)
    return header[:12] + header[36:44] + header[12:36]


NOT_PCM_WAV = {
    "empty": b"",
    "text": b"hello, this is not audio at all\n" * 4,
    "riff-not-wave": b"RIFF\x24\x00\x00\x00AVI " + b"\x00" * 40,
    "rf64": _rf64(),
    "float-wav": _float_wav(),
    "float-wavex": _float_wavex(),
    "a-law": _with_fmt_tag(6),
    "mp3-tag": _with_fmt_tag(0x55),
    "inconsistent-block-align": _bad_block_align(),
    "data-before-fmt": _data_before_fmt(),
    "no-data-chunk": build_header(8000, 1, 0)[:36] + b"LIST\x04\x00\x00\x00INFO",
}


@pytest.mark.parametrize("content", NOT_PCM_WAV.values(), ids=NOT_PCM_WAV.keys())
def test_not_a_pcm_wav_is_refused_and_left_untouched(tmp_path: Path, content: bytes) -> None:
    """read_wav_info and repair_wav raise InvalidWavError (a ValueError); bytes stay identical."""
    path = _write(tmp_path / "bad.wav", content)
    before = _snapshot(path)
    with pytest.raises(InvalidWavError):
        read_wav_info(path)
    with pytest.raises(ValueError, match=str(path)):
        repair_wav(path)
    assert _snapshot(path) == before


@pytest.mark.parametrize("cut", range(HEADER_SIZE))
def test_truncated_header_is_refused_and_left_untouched(tmp_path: Path, cut: int) -> None:
    """A file cut inside its 44-byte header is refused by repair_wav and not modified."""
    path = _write(tmp_path / "t.wav", real_recording(1)[1][:cut])
    before = _snapshot(path)
    with pytest.raises(InvalidWavError):
        repair_wav(path)
    assert _snapshot(path) == before


def test_repair_refuses_audio_beyond_the_wav_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More audio than a WAV can declare is refused, and the file is left as it was."""
    monkeypatch.setattr(wavmod, "MAX_DATA_BYTES", 100)
    path = _write(tmp_path / "big.wav", build_header(8000, 1) + b"\x01\x00" * 51)
    before = _snapshot(path)
    with pytest.raises(InvalidWavError, match="limit"):
        repair_wav(path)
    assert _snapshot(path) == before


@settings(max_examples=40, deadline=None)
@given(
    channels=st.sampled_from([1, 2]),
    finished=st.booleans(),
    fraction=st.floats(min_value=0.0, max_value=1.0),
)
def test_repair_at_any_truncation_point(channels: int, finished: bool, fraction: float) -> None:
    """Cut anywhere, a recording is either refused untouched or repaired to its whole frames."""
    final_bytes, open_bytes = real_recording(channels)
    original = final_bytes if finished else open_bytes
    cut = round(fraction * len(original))
    block = 2 * channels
    with tempfile.TemporaryDirectory() as d:
        path = _write(Path(d) / "cut.wav", original[:cut])
        if cut < HEADER_SIZE:
            before = _snapshot(path)
            with pytest.raises(InvalidWavError):
                repair_wav(path)
            assert _snapshot(path) == before
            return
        whole = (cut - HEADER_SIZE) // block * block
        audio = original[HEADER_SIZE : HEADER_SIZE + whole]
        info = repair_wav(path)
        assert (info.header_state, info.num_frames) == ("final", whole // block)
        assert path.read_bytes() == build_header(16000, channels, whole) + audio
        check_wav(path, audio, 16000, channels, readers=IN_PROCESS)
