"""Turning caller samples into int16 little-endian bytes: what is taken, what is refused."""

from __future__ import annotations

from array import array
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wavreaders import SAMPLE_FORMS, pcm

from recording_aio.errors import InvalidSamplesError, RecordingError
from recording_aio.pcm import to_pcm16le

int16s = st.integers(min_value=-32768, max_value=32767)


@st.composite
def frames(draw: st.DrawFn) -> tuple[list[int], int]:
    """A channel count and whole frames of int16 values for it."""
    channels = draw(st.integers(min_value=1, max_value=8))
    n = draw(st.integers(min_value=0, max_value=64))
    return draw(st.lists(int16s, min_size=n * channels, max_size=n * channels)), channels


@settings(max_examples=60, deadline=None)
@given(data=frames(), form=st.sampled_from(sorted(SAMPLE_FORMS)))
def test_every_accepted_form_gives_the_exact_little_endian_bytes(
    data: tuple[list[int], int], form: str
) -> None:
    """Each accepted kind of input yields exactly the int16 LE bytes of its values."""
    values, channels = data
    assert bytes(to_pcm16le(SAMPLE_FORMS[form](values, channels), channels)) == pcm(values)


def test_extremes_and_byte_order_are_exact() -> None:
    """-32768, -1, 0, 1 and 32767 encode little-endian, from either byte order of ndarray."""
    expected = b"\x00\x80\xff\xff\x00\x00\x01\x00\xff\x7f"
    values = [-32768, -1, 0, 1, 32767]
    assert bytes(to_pcm16le(values, 1)) == expected
    assert bytes(to_pcm16le(np.array(values, dtype=">i2"), 1)) == expected
    assert bytes(to_pcm16le(array("h", values), 1)) == expected


def test_big_endian_input_is_not_modified_in_place() -> None:
    """Converting a big-endian array leaves the caller's array and its bytes unchanged."""
    samples = np.array([1, -2, 300], dtype=">i2")
    before = samples.tobytes()
    to_pcm16le(samples, 1)
    assert samples.tobytes() == before
    assert samples.tolist() == [1, -2, 300]


REJECTED: dict[str, tuple[Callable[[], object], int]] = {
    "odd-byte-count": (lambda: b"\x00\x01\x02", 1),
    "odd-bytearray": (lambda: bytearray(5), 1),
    "odd-memoryview": (lambda: memoryview(b"\x00"), 1),
    "partial-stereo-frame-bytes": (lambda: b"\x00" * 6, 2),
    "partial-stereo-frame-list": (lambda: [1, 2, 3], 2),
    "partial-stereo-frame-ndarray": (lambda: np.zeros(5, dtype="<i2"), 2),
    "partial-3ch-frame-array": (lambda: array("h", [1, 2, 3, 4]), 3),
    "float32-ndarray": (lambda: np.zeros(4, dtype=np.float32), 1),
    "float64-ndarray": (lambda: np.zeros(4, dtype=np.float64), 1),
    "float16-ndarray": (lambda: np.zeros(4, dtype=np.float16), 1),
    "int32-ndarray": (lambda: np.zeros(4, dtype=np.int32), 1),
    "int64-ndarray": (lambda: np.zeros(4, dtype=np.int64), 1),
    "uint16-ndarray": (lambda: np.zeros(4, dtype=np.uint16), 1),
    "bool-ndarray": (lambda: np.zeros(4, dtype=bool), 1),
    "bytes-string-ndarray": (lambda: np.zeros(4, dtype="S2"), 1),
    "float-array": (lambda: array("f", [0.0, 0.5]), 1),
    "double-array": (lambda: array("d", [0.0]), 1),
    "int32-array": (lambda: array("i", [1, 2]), 1),
    "uint16-array": (lambda: array("H", [1, 2]), 1),
    "too-large-int": (lambda: [0, 32768], 1),
    "too-small-int": (lambda: [-32769], 1),
    "huge-int": (lambda: [2**70], 1),
    "float-in-list": (lambda: [0, 1.0], 1),
    "numpy-float-in-list": (lambda: [np.float64(1.0)], 1),
    "str-in-list": (lambda: ["1"], 1),
    "none-in-list": (lambda: [None], 1),
    "str": (lambda: "\x00\x01", 1),
    "empty-str": (lambda: "", 1),
    "int": (lambda: 5, 1),
    "none": (lambda: None, 1),
    "float": (lambda: 0.5, 1),
    "dict": (lambda: {0: 1}, 1),
    "set": (lambda: {1, 2}, 1),
    "generator": (lambda: (i for i in range(4)), 1),
    "iterator": (lambda: iter([1, 2]), 1),
}


@pytest.mark.parametrize(("make", "channels"), REJECTED.values(), ids=REJECTED.keys())
def test_rejected_input_raises_invalid_samples_error(
    make: Callable[[], object], channels: int
) -> None:
    """Every refused input raises InvalidSamplesError, which is a ValueError and a TypeError."""
    samples = make()
    with pytest.raises(InvalidSamplesError) as caught:
        to_pcm16le(samples, channels)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, RecordingError)


def test_float_rejection_explains_the_conversion() -> None:
    """Refusing floats names the dtype and says how to convert, rather than converting."""
    with pytest.raises(InvalidSamplesError, match=r"float32.*astype"):
        to_pcm16le(np.zeros(2, dtype=np.float32), 1)


def test_partial_frame_message_names_the_channel_count() -> None:
    """A partial stereo frame is reported as such, not as a generic error."""
    with pytest.raises(InvalidSamplesError, match="2-channel frames"):
        to_pcm16le(b"\x00\x00", 2)
