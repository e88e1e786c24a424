"""Independent readers of WAV files, and the forms in which callers hand over samples.

Each reader (`wave`, libsndfile through `soundfile`, sox, ffprobe) returns what it decoded, so
a test can check that all of them see exactly the audio it expects. sox and ffprobe are used
when installed and skipped (the reader, never the test) when not. A reader that yields part of
a frame at the end of a torn file is credited with its whole frames only.

`SAMPLE_FORMS` turns a list of int16 values into each kind of object `write_samples` accepts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import wave
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

SOX = shutil.which("sox")
FFPROBE = shutil.which("ffprobe")


@dataclass(frozen=True)
class Reading:
    """What one reader made of a WAV file."""

    reader: str
    sample_rate: int
    channels: int
    num_frames: int
    pcm: bytes | None
    """Whole frames of int16 LE as decoded, or None for a reader that only hashes them."""
    chunks: tuple[tuple[int, int, str], ...] = field(default=())
    """(offset into the audio, size, md5 hex) of each packet, for ffprobe."""


def read_wave(path: Path) -> Reading:
    """Reads with the standard library's `wave`, bounded by the file's length."""
    bound = os.path.getsize(path)
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2, f"wave: sample width {w.getsampwidth()}"
        block = 2 * w.getnchannels()
        data = w.readframes(min(w.getnframes(), bound))
        whole = len(data) - len(data) % block
        return Reading("wave", w.getframerate(), w.getnchannels(), whole // block, data[:whole])


def read_soundfile(path: Path) -> Reading:
    """Reads with libsndfile through `soundfile`, as int16."""
    with soundfile.SoundFile(str(path)) as f:
        assert f.subtype == "PCM_16", f"soundfile: subtype {f.subtype}"
        data = f.read(dtype="int16", always_2d=True)
        return Reading("soundfile", f.samplerate, f.channels, data.shape[0], data.tobytes())


def read_sox(path: Path) -> Reading:
    """Decodes with sox to raw signed 16-bit little-endian samples."""
    assert SOX is not None
    info = subprocess.run([SOX, "--i", str(path)], capture_output=True, text=True, check=True)
    fields = {
        key.strip(): value.strip()
        for key, _, value in (line.partition(":") for line in info.stdout.splitlines())
    }
    channels = int(fields["Channels"])
    raw = subprocess.run(
        [SOX, "-V1", str(path), "-t", "raw", "-e", "signed-integer", "-b", "16", "-L", "-"],
        capture_output=True,
        check=True,
    ).stdout
    block = 2 * channels
    whole = len(raw) - len(raw) % block
    return Reading("sox", int(fields["Sample Rate"]), channels, whole // block, raw[:whole])


def read_ffprobe(path: Path) -> Reading:
    """Probes with ffprobe: stream parameters and an MD5 of every audio packet."""
    assert FFPROBE is not None
    out = subprocess.run(
        [
            FFPROBE,
            "-v",
            "error",
            "-show_data_hash",
            "MD5",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=codec_name,sample_rate,channels:packet=pos,size,data_hash",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    probe = json.loads(out)
    (stream,) = probe["streams"]
    assert stream["codec_name"] == "pcm_s16le", f"ffprobe: codec {stream['codec_name']}"
    channels = int(stream["channels"])
    packets = probe.get("packets", [])
    data_offset = int(packets[0]["pos"]) if packets else 0
    chunks = tuple(
        (int(p["pos"]) - data_offset, int(p["size"]), p["data_hash"].removeprefix("MD5:"))
        for p in packets
    )
    total = sum(size for _, size, _ in chunks)
    return Reading(
        "ffprobe", int(stream["sample_rate"]), channels, total // (2 * channels), None, chunks
    )


Reader = Callable[[Path], Reading]

IN_PROCESS: tuple[Reader, ...] = (read_wave, read_soundfile)
"""The readers that need no external program."""

EXTERNAL: tuple[Reader, ...] = tuple(
    reader for reader, tool in ((read_sox, SOX), (read_ffprobe, FFPROBE)) if tool is not None
)
"""sox and ffprobe, those of them that are installed."""

ALL_READERS: tuple[Reader, ...] = IN_PROCESS + EXTERNAL

QUICK_READERS: tuple[Reader, ...] = IN_PROCESS + ((read_sox,) if SOX is not None else ())
"""All but ffprobe, whose start-up makes it the slow one: for tests run many times over."""


def check_wav(
    path: Path,
    expected: bytes,
    sample_rate: int,
    channels: int,
    readers: Sequence[Reader] = ALL_READERS,
) -> list[Reading]:
    """Asserts every reader decodes exactly `expected` (int16 LE frames) at these parameters."""
    block = 2 * channels
    assert len(expected) % block == 0, "expected audio must be whole frames"
    frames = len(expected) // block
    readings = [read(path) for read in readers]
    for r in readings:
        assert (r.sample_rate, r.channels) == (sample_rate, channels), r.reader
        assert r.num_frames == frames, f"{r.reader}: {r.num_frames} frames, expected {frames}"
        if r.pcm is not None:
            assert r.pcm == expected, f"{r.reader}: decoded audio differs from what was written"
        for offset, size, digest in r.chunks:
            if offset + size <= len(expected):
                piece = expected[offset : offset + size]
                assert hashlib.md5(piece).hexdigest() == digest, f"{r.reader}: packet at {offset}"
            else:  # only a torn trailing frame may stick out past the whole frames
                assert offset + size - len(expected) < block, f"{r.reader}: packet at {offset}"
    return readings


def pcm(values: Sequence[int]) -> bytes:
    """int16 little-endian bytes of `values`."""
    return np.asarray(values, dtype="<i2").tobytes()


def _strided(values: Sequence[int], dtype: str) -> np.ndarray:
    """A non-contiguous view holding `values`, with junk between them in memory."""
    backing = np.full(2 * len(values), 0x5A5A, dtype=dtype)
    backing[::2] = values
    return backing[::2]


def _planar(values: Sequence[int], channels: int) -> np.ndarray:
    """A 2-D (frames, channels) view of channel-major storage: interleaved, not C-contiguous."""
    planar = np.ascontiguousarray(np.asarray(values, dtype="<i2").reshape(-1, channels).T)
    return planar.T


SAMPLE_FORMS: dict[str, Callable[[Sequence[int], int], object]] = {
    "bytes": lambda v, ch: pcm(v),
    "bytearray": lambda v, ch: bytearray(pcm(v)),
    "memoryview-bytes": lambda v, ch: memoryview(pcm(v)),
    "memoryview-h": lambda v, ch: memoryview(array("h", v)),
    "array-h": lambda v, ch: array("h", v),
    "ndarray": lambda v, ch: np.asarray(v, dtype="<i2"),
    "ndarray-big-endian": lambda v, ch: np.asarray(v, dtype=">i2"),
    "ndarray-strided": lambda v, ch: _strided(v, "<i2"),
    "ndarray-big-endian-strided": lambda v, ch: _strided(v, ">i2"),
    "ndarray-2d": lambda v, ch: np.asarray(v, dtype="<i2").reshape(-1, ch),
    "ndarray-2d-fortran": lambda v, ch: np.asfortranarray(
        np.asarray(v, dtype="<i2").reshape(-1, ch)
    ),
    "ndarray-2d-planar": _planar,
    "list": lambda v, ch: list(v),
    "tuple": lambda v, ch: tuple(v),
}
"""Every kind of object write_samples takes, built from int16 values and a channel count."""
