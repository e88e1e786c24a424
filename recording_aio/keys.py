"""Object keys for recordings: `<base_path>/yyyy/mm/dd/<call_id>.<format>`."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime

from .errors import ConfigurationError

MAX_KEY_BYTES = 1024
"""S3's limit on the UTF-8 length of an object key."""

DEFAULT_BASE_PATH = "recordings"


def build_s3_key(
    base_path: str, call_id: str, format: str = "wav", t: datetime | None = None
) -> str:
    """Builds `"<base_path>/yyyy/mm/dd/<call_id>.<format>"` with the date in UTC.

    Args:
        base_path: key prefix; surrounding slashes are trimmed, empty means "recordings".
        call_id: one path segment naming the call; must not be empty, `.` or `..`, nor
            contain `/`, `\\` or control characters, so a caller-supplied id cannot climb
            out of its prefix or smuggle characters into the key.
        format: file extension without the dot.
        t: when the call happened; defaults to now. A naive datetime is taken as UTC.

    Raises:
        ConfigurationError: (a ValueError) a bad call_id or format, or a key over 1024 bytes.
    """
    _check_segment("call_id", call_id)
    _check_segment("format", format)
    prefix = base_path.strip("/") or DEFAULT_BASE_PATH
    if any(_is_forbidden(c) for c in prefix):
        raise ConfigurationError(f"base_path {prefix!r} contains control or surrogate characters")
    when = datetime.now(UTC) if t is None else t
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    key = f"{prefix}/{when:%Y/%m/%d}/{call_id}.{format}"
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ConfigurationError(
            f"object key is {len(key.encode('utf-8'))} bytes in UTF-8; S3 allows {MAX_KEY_BYTES}"
        )
    return key


def _check_segment(name: str, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{name} must be a non-empty string, got {value!r}")
    if value in (".", ".."):
        raise ConfigurationError(f"{name} must not be {value!r}")
    if "/" in value or "\\" in value:
        raise ConfigurationError(f"{name} {value!r} must not contain '/' or '\\'")
    if any(_is_forbidden(c) for c in value):
        raise ConfigurationError(f"{name} {value!r} contains control or surrogate characters")


def _is_forbidden(char: str) -> bool:
    """Control characters, and lone surrogates that cannot be encoded as UTF-8."""
    return unicodedata.category(char) in ("Cc", "Cs")
