"""build_s3_key: `<base_path>/yyyy/mm/dd/<call_id>.<format>`, dated in UTC, validated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from recording_aio import ConfigurationError, build_s3_key
from recording_aio.keys import MAX_KEY_BYTES

T = datetime(2024, 3, 9, 12, 30, tzinfo=UTC)


def test_key_layout() -> None:
    """The key is base/yyyy/mm/dd/call_id.format with zero-padded month and day."""
    assert build_s3_key("calls", "abc-123", "wav", T) == "calls/2024/03/09/abc-123.wav"


def test_format_defaults_to_wav_and_is_used_as_extension() -> None:
    """format defaults to "wav"; another format becomes the extension."""
    assert build_s3_key("calls", "c1", t=T) == "calls/2024/03/09/c1.wav"
    assert build_s3_key("calls", "c1", "flac", T) == "calls/2024/03/09/c1.flac"


@pytest.mark.parametrize(
    ("when", "day"),
    [
        (datetime(2024, 3, 9, 23, 30, tzinfo=timezone(timedelta(hours=-5))), "2024/03/10"),
        (datetime(2024, 3, 10, 1, 0, tzinfo=timezone(timedelta(hours=3))), "2024/03/09"),
        (datetime(2025, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), "2024/12/31"),
        (datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC), "2024/02/29"),
    ],
    ids=["west-of-utc", "east-of-utc", "year-boundary", "leap-day-utc"],
)
def test_aware_datetimes_are_dated_in_utc(when: datetime, day: str) -> None:
    """An aware datetime is converted to UTC before its date is taken."""
    assert build_s3_key("r", "c", t=when) == f"r/{day}/c.wav"


def test_naive_datetime_is_taken_as_utc() -> None:
    """A naive datetime is read as UTC, not as local time."""
    assert build_s3_key("r", "c", t=datetime(2024, 3, 9, 23, 59)) == "r/2024/03/09/c.wav"
    assert build_s3_key("r", "c", t=datetime(2024, 3, 10, 0, 0)) == "r/2024/03/10/c.wav"


def test_default_time_is_now_in_utc() -> None:
    """Without t the key carries today's UTC date."""
    before = datetime.now(UTC)
    key = build_s3_key("r", "c")
    after = datetime.now(UTC)
    assert key in {f"r/{d:%Y/%m/%d}/c.wav" for d in (before, after)}


@pytest.mark.parametrize(
    ("base", "prefix"),
    [
        ("", "recordings"),
        ("/", "recordings"),
        ("///", "recordings"),
        ("calls", "calls"),
        ("/calls/", "calls"),
        ("//a/b//", "a/b"),
        ("a/b", "a/b"),
        ("tenant-1/ünïcode", "tenant-1/ünïcode"),
    ],
)
def test_base_path_is_trimmed_and_defaults_to_recordings(base: str, prefix: str) -> None:
    """Surrounding slashes are trimmed; an empty base means "recordings"."""
    assert build_s3_key(base, "c", t=T) == f"{prefix}/2024/03/09/c.wav"


BAD_CALL_IDS = [
    "",
    ".",
    "..",
    "a/b",
    "/c",
    "c/",
    "a\\b",
    "..\\x",
    "a\x00b",
    "line\nbreak",
    "tab\t",
    "\r",
    "del\x7f",
    "c1\x85control",
    "\x1b[31m",
    "lone\ud800surrogate",
]


@pytest.mark.parametrize("call_id", BAD_CALL_IDS)
def test_invalid_call_id_raises_value_error(call_id: str) -> None:
    """Empty, ./.., separators, control characters and lone surrogates are refused."""
    with pytest.raises(ValueError, match="call_id") as caught:
        build_s3_key("r", call_id, t=T)
    assert isinstance(caught.value, ConfigurationError)


@pytest.mark.parametrize("call_id", [None, 5, b"abc"])
def test_non_string_call_id_raises_value_error(call_id: object) -> None:
    """A call_id that is not a str is refused with ValueError."""
    with pytest.raises(ValueError, match="call_id"):
        build_s3_key("r", call_id, t=T)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["", ".", "..", "w/av", "w\\av", "wa\nv"])
def test_invalid_format_raises_value_error(fmt: str) -> None:
    """A format that is not one clean path segment is refused."""
    with pytest.raises(ConfigurationError, match="format"):
        build_s3_key("r", "c", fmt, T)


def test_control_character_in_base_path_raises_value_error() -> None:
    """A base path with a control character is refused."""
    with pytest.raises(ValueError, match="base_path"):
        build_s3_key("rec\nordings", "c", t=T)


@pytest.mark.parametrize("call_id", [".hidden", "...", "a.b", "ü€😀", "with space"])
def test_dots_and_non_ascii_are_allowed_in_call_id(call_id: str) -> None:
    """Dots other than ./.., spaces and printable non-ASCII are kept verbatim."""
    assert build_s3_key("r", call_id, t=T) == f"r/2024/03/09/{call_id}.wav"


FIXED = len(b"r/2024/03/09/.wav")


@pytest.mark.parametrize(
    "char", ["a", "é", "€", "😀"], ids=["1-byte", "2-byte", "3-byte", "4-byte"]
)
def test_key_of_exactly_1024_utf8_bytes_is_accepted(char: str) -> None:
    """A key of exactly 1024 UTF-8 bytes is built, whatever the width of its characters."""
    width = len(char.encode("utf-8"))
    call_id = "a" * ((MAX_KEY_BYTES - FIXED) % width) + char * ((MAX_KEY_BYTES - FIXED) // width)
    key = build_s3_key("r", call_id, t=T)
    assert len(key.encode("utf-8")) == MAX_KEY_BYTES == 1024
    assert key == f"r/2024/03/09/{call_id}.wav"


@pytest.mark.parametrize("char", ["é", "€", "😀"], ids=["2-byte", "3-byte", "4-byte"])
def test_key_over_1024_utf8_bytes_is_refused_even_when_under_1024_characters(char: str) -> None:
    """The limit counts UTF-8 bytes: one multi-byte character too many is refused."""
    width = len(char.encode("utf-8"))
    call_id = char * ((MAX_KEY_BYTES - FIXED) // width + 1)
    assert len(f"r/2024/03/09/{call_id}.wav") < MAX_KEY_BYTES
    with pytest.raises(ValueError, match="1024"):
        build_s3_key("r", call_id, t=T)


def test_long_base_path_counts_towards_the_limit() -> None:
    """The base path's bytes count too: 1024 bytes in all is built, 1025 refused."""
    base = "é" * 500  # 1000 bytes
    assert len(build_s3_key(base, "c" * 8, t=T).encode("utf-8")) == 1024
    with pytest.raises(ValueError, match="1024"):
        build_s3_key(base, "c" * 9, t=T)
