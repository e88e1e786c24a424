"""Turning caller samples into 16-bit little-endian PCM bytes, with validation.

Pure and synchronous. Accepts what voice stacks hand around: bytes-like little-endian int16,
`array('h')`, NumPy int16 arrays (any buffer of 2-byte signed integers), or a sequence of
ints. Anything else, including floats or wider integers, is refused rather than converted,
because a silent conversion would record noise.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence

from .errors import InvalidSamplesError

_LITTLE_ENDIAN_HOST = sys.byteorder == "little"
_BYTE_FORMATS = frozenset({"B", "b", "c"})
_KIND_NAMES = {
    "e": "float16",
    "f": "float32",
    "d": "float64",
    "i": "int32",
    "l": "int32/int64",
    "q": "int64",
    "H": "uint16",
    "I": "uint32",
    "L": "uint32/uint64",
    "Q": "uint64",
    "?": "bool",
}

PcmBytes = bytes | bytearray | memoryview


def to_pcm16le(samples: object, channels: int) -> PcmBytes:
    """Returns `samples` as whole frames of int16 LE bytes, or raises InvalidSamplesError."""
    data: PcmBytes
    if isinstance(samples, bytes | bytearray):
        data = samples
    elif isinstance(samples, str):
        raise InvalidSamplesError(
            "samples must be int16 PCM (bytes, array('h'), int16 ndarray or ints), not str"
        )
    else:
        try:
            view = memoryview(samples)  # type: ignore[arg-type]
        except TypeError:
            data = _from_ints(samples)
        else:
            with view:
                data = _from_buffer(view)
    _check_whole_frames(len(data), channels)
    return data


def _from_buffer(view: memoryview) -> PcmBytes:
    order, code = _split_format(view.format)
    if code in _BYTE_FORMATS and view.itemsize == 1:
        return view.tobytes() if not view.c_contiguous else bytes(view.cast("B"))
    if code != "h" or view.itemsize != 2:
        kind = _KIND_NAMES.get(code, f"format {view.format!r}, {view.itemsize}-byte items")
        raise InvalidSamplesError(
            f"samples are {kind}; only 16-bit signed integers are taken (no silent conversion: "
            "convert to int16 first, e.g. (x * 32767).astype('<i2') for floats in [-1, 1])"
        )
    raw = view.tobytes()
    little = order == "<" or (order in "@=" and _LITTLE_ENDIAN_HOST)
    if little:
        return raw
    swapped = array("h", raw)
    swapped.byteswap()
    return swapped.tobytes()


def _split_format(fmt: str) -> tuple[str, str]:
    if fmt and fmt[0] in "@=<>!":
        return fmt[0], fmt[1:]
    return "@", fmt


def _from_ints(samples: object) -> bytes:
    if not isinstance(samples, Sequence):
        raise InvalidSamplesError(
            f"samples of type {type(samples).__name__} are not int16 PCM: pass bytes, "
            "array('h'), an int16 ndarray or a sequence of ints"
        )
    try:
        values = array("h", samples)
    except OverflowError as exc:
        raise InvalidSamplesError("sample values must be in [-32768, 32767]") from exc
    except TypeError as exc:
        raise InvalidSamplesError(f"samples must be ints in [-32768, 32767]: {exc}") from exc
    if not _LITTLE_ENDIAN_HOST:
        values.byteswap()
    return values.tobytes()


def _check_whole_frames(nbytes: int, channels: int) -> None:
    if nbytes % 2:
        raise InvalidSamplesError(
            f"{nbytes} bytes is not a whole number of 16-bit samples (odd byte count)"
        )
    if nbytes % (2 * channels):
        raise InvalidSamplesError(
            f"{nbytes // 2} samples is not a whole number of {channels}-channel frames; "
            "interleave complete frames only"
        )
