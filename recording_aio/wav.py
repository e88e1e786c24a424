"""The WAV container: build, parse, patch and repair RIFF/WAVE headers of PCM audio.

Pure and synchronous: it imports nothing from the package but its errors, and the recorder
calls it from worker threads. While a recording is open its header carries 0xFFFFFFFF as the
RIFF and data sizes, which `wave`, libsndfile, sox and ffmpeg read as "until end of file", so
audio already flushed to disk stays readable even if the process dies before `aclose()`.
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import InvalidWavError

HEADER_SIZE = 44
"""Size of the canonical header this library writes (RIFF + fmt + data chunk headers)."""

UNKNOWN_SIZE = 0xFFFF_FFFF
"""The placeholder size written while recording: readers take it as "read to end of file"."""

MAX_DATA_BYTES = 0xFFFF_FFFE - (HEADER_SIZE - 8)
"""The most audio bytes a WAV can declare without its RIFF size reaching the placeholder."""

_PCM = 0x0001
_EXTENSIBLE = 0xFFFE
_PCM_SUBFORMAT_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_PROBE_BYTES = 64 * 1024

HeaderState = Literal["final", "placeholder", "stale"]


@dataclass(frozen=True, slots=True)
class WavInfo:
    """What a WAV header says, checked against the file's real length.

    `num_frames` counts the whole frames a reader can get: for a final header the declared
    ones, otherwise those really on disk (a torn trailing frame is not counted).
    `header_state` is "final" when the sizes match the file, "placeholder" while a recording
    is open or after a crash (sizes unknown or zero), and "stale" when they disagree with it.
    """

    path: Path
    sample_rate: int
    channels: int
    bits_per_sample: int
    num_frames: int
    data_offset: int
    data_bytes: int
    file_size: int
    header_state: HeaderState

    @property
    def block_align(self) -> int:
        """Bytes per frame (all channels of one sampling instant)."""
        return self.channels * self.bits_per_sample // 8

    @property
    def duration_s(self) -> float:
        """Duration of the readable audio in seconds."""
        return self.num_frames / self.sample_rate


def build_header(sample_rate: int, channels: int, data_bytes: int | None = None) -> bytes:
    """A 44-byte header for 16-bit PCM; `data_bytes=None` writes the "unknown length" sizes."""
    block_align = channels * 2
    if data_bytes is None:
        riff_size = data_size = UNKNOWN_SIZE
    else:
        riff_size, data_size = data_bytes + HEADER_SIZE - 8, data_bytes
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        riff_size,
        b"WAVE",
        b"fmt ",
        16,
        _PCM,
        channels,
        sample_rate,
        sample_rate * block_align,
        block_align,
        16,
        b"data",
        data_size,
    )


def parse_header(head: bytes, file_size: int, path: Path) -> WavInfo:
    """Parses the start of a file (`head`, at least up to the data chunk header)."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        kind = "an RF64 file" if head[:4] == b"RF64" else "not a RIFF/WAVE file"
        raise InvalidWavError(f"{path}: {kind}; only PCM WAV files can be read or repaired")
    riff_size = struct.unpack_from("<I", head, 4)[0]
    fmt: tuple[int, int, int, int] | None = None
    offset = 12
    while offset + 8 <= len(head):
        chunk_id = head[offset : offset + 4]
        chunk_size = struct.unpack_from("<I", head, offset + 4)[0]
        body = offset + 8
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(head[body : body + chunk_size], path)
        elif chunk_id == b"data":
            if fmt is None:
                raise InvalidWavError(f"{path}: data chunk before the fmt chunk")
            return _info(path, fmt, riff_size, chunk_size, body, file_size)
        offset = body + chunk_size + (chunk_size & 1)
    raise InvalidWavError(f"{path}: no data chunk in the first {len(head)} bytes")


def _parse_fmt(body: bytes, path: Path) -> tuple[int, int, int, int]:
    if len(body) < 16:
        raise InvalidWavError(f"{path}: fmt chunk too short ({len(body)} bytes)")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == _EXTENSIBLE and len(body) >= 40 and body[26:40] == _PCM_SUBFORMAT_TAIL:
        tag = struct.unpack_from("<H", body, 24)[0]
    if tag != _PCM:
        raise InvalidWavError(f"{path}: audio format {tag:#06x} is not integer PCM")
    if (
        channels < 1
        or rate < 1
        or bits not in (8, 16, 24, 32)
        or block_align != channels * bits // 8
    ):
        raise InvalidWavError(
            f"{path}: inconsistent fmt chunk (channels={channels}, rate={rate}, bits={bits}, "
            f"block_align={block_align})"
        )
    return rate, channels, bits, block_align


def _info(
    path: Path,
    fmt: tuple[int, int, int, int],
    riff_size: int,
    data_size: int,
    data_offset: int,
    file_size: int,
) -> WavInfo:
    rate, channels, bits, block_align = fmt
    on_disk = max(0, file_size - data_offset)
    state: HeaderState
    if data_size in (UNKNOWN_SIZE, 0) or riff_size in (UNKNOWN_SIZE, 0):
        state = "placeholder" if on_disk or data_size == UNKNOWN_SIZE else "final"
    elif riff_size + 8 == file_size and data_size <= on_disk:
        state = "final"
    else:
        state = "stale"
    readable = data_size if state == "final" else on_disk
    frames = readable // block_align
    return WavInfo(
        path=path,
        sample_rate=rate,
        channels=channels,
        bits_per_sample=bits,
        num_frames=frames,
        data_offset=data_offset,
        data_bytes=frames * block_align,
        file_size=file_size,
        header_state=state,
    )


def read_wav_info(path: str | os.PathLike[str]) -> WavInfo:
    """Reads and checks the header of the WAV at `path`.

    Raises:
        InvalidWavError: (a ValueError) the file is not a PCM WAV.
        OSError: the file cannot be read.
    """
    p = Path(path)
    with p.open("rb") as f:
        head = f.read(_PROBE_BYTES)
        size = os.fstat(f.fileno()).st_size
    return parse_header(head, size, p)


def find_unfinished(directory: str | os.PathLike[str], *, min_age_s: float = 60.0) -> list[WavInfo]:
    """The WAVs in `directory` whose header is not final: recordings a crash left behind.

    Files modified less than `min_age_s` seconds ago are skipped, since a live recorder's
    file looks the same. Pass each to `repair_wav()`, then upload it like any recording.
    Files that are not PCM WAVs are skipped.
    """
    found: list[WavInfo] = []
    now = time.time()
    for path in sorted(Path(directory).glob("*.wav")):
        try:
            if now - path.stat().st_mtime < min_age_s or not path.is_file():
                continue
            info = read_wav_info(path)
        except (OSError, InvalidWavError):
            continue
        if info.header_state != "final":
            found.append(info)
    return found


def repair_wav(path: str | os.PathLike[str]) -> WavInfo:
    """Makes the header of a WAV left by a crash exact, from the file's real length.

    Drops a torn trailing frame, patches the RIFF and data sizes and fsyncs. A file whose
    header is already final is left as it is. A file that is not a PCM WAV raises
    `InvalidWavError` (a ValueError) and is not touched.
    """
    p = Path(path)
    info = read_wav_info(p)
    if info.header_state == "final":
        return info
    if info.data_bytes > MAX_DATA_BYTES:
        raise InvalidWavError(f"{p}: {info.data_bytes} bytes of audio exceed the WAV size limit")
    fd = os.open(p, os.O_RDWR | os.O_CLOEXEC)
    try:
        end = info.data_offset + info.data_bytes
        if info.file_size > end:
            os.ftruncate(fd, end)
        os.pwrite(fd, struct.pack("<I", end - 8), 4)
        os.pwrite(fd, struct.pack("<I", info.data_bytes), info.data_offset - 4)
        os.fsync(fd)
    finally:
        os.close(fd)
    return read_wav_info(p)
