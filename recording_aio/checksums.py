"""How an upload proves that the store holds our bytes, before the local file is deleted.

- `"md5"` works with any store: the ETag of a plain PUT is the MD5 of what the store
  received, and a multipart ETag is the MD5 of the parts' MD5s, so we compare both with our
  own. It costs an MD5 pass over every byte (about 1.7 ms per MiB).
- `"crc32"` sends an `x-amz-checksum-crc32` with every body and compares the checksum the store
  answers with. AWS S3 computes it from what it received and rejects a body that does not
  match, so the proof is the store's check; CRC32 costs about a seventh of MD5. A store that
  echoes the header without checking it (moto does) proves nothing this way: use `"md5"` there.
- `"auto"` (the default) is `"crc32"` on AWS S3 (an `amazonaws.com` endpoint, which is where a
  client without `endpoint_url` goes). On any other endpoint the first job asks the store
  whether it checks CRC32 (`Transfer.store_checks_crc32`, a multipart upload it aborts): it is
  `"crc32"` where the store refuses a wrong CRC32 and returns the right one (MinIO, Ceph and
  AWS-like stores), `"md5"` where it does not (moto, stores without checksum support), and
  `"md5"` from the first upload the store then leaves without a CRC32 (`ChecksumChoice`).

Digests are computed in threads; the rest runs on the loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import urlsplit

from .retry import UnverifiableUploadError

log = logging.getLogger("recording_aio")

ChecksumMode = Literal["auto", "md5", "crc32"]
CHECKSUM_MODES: tuple[ChecksumMode, ...] = ("auto", "md5", "crc32")
_AWS_DOMAINS = (".amazonaws.com", ".amazonaws.com.cn")


class Checksum:
    """The MD5 / ETag check; `Crc32Checksum` overrides it for the store-checked CRC32."""

    mode: ChecksumMode = "md5"

    def digest(self, data: bytes) -> bytes:
        """The digest of one body; CPU-heavy, so called in a thread."""
        return hashlib.md5(data).digest()

    def body_args(self, digest: bytes) -> dict[str, str]:
        """PutObject / UploadPart arguments that let the store reject a damaged body."""
        return {"ContentMD5": _b64(digest)}

    def create_args(self) -> dict[str, str]:
        """CreateMultipartUpload arguments."""
        return {}

    def head_args(self) -> dict[str, str]:
        """HeadObject arguments that make the store return what `returned` reads."""
        return {}

    def completed_part(
        self, number: int, digest: bytes, response: dict[str, Any]
    ) -> dict[str, Any]:
        """A part's entry in CompleteMultipartUpload, from its digest and UploadPart answer."""
        return {"ETag": f'"{digest.hex()}"', "PartNumber": number}

    def expected(self, digest: bytes) -> str:
        """What the store must return for one body."""
        return digest.hex()

    def expected_whole(self, digests: list[bytes]) -> str:
        """What the store must return for the object joined from parts of these digests."""
        return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"

    def returned(self, response: dict[str, Any]) -> str | None:
        """The value the store answered with, or None when its answer holds none."""
        encrypted = str(response.get("ServerSideEncryption", "")).startswith("aws:kms")
        if encrypted or "SSECustomerAlgorithm" in response:
            return None  # that ETag is no MD5
        return etag(response)

    def same(self, returned: str, expected: str) -> bool:
        """True when the store's value proves it holds the bytes `expected` stands for."""
        return returned == expected

    def without_returned(self) -> None:
        """Called when the store returned nothing to compare (size already confirmed).

        An encrypted object's ETag is no MD5, but the store has checked our Content-MD5.
        """


class Crc32Checksum(Checksum):
    """The CRC32 the store checks and returns (`x-amz-checksum-crc32`, composite for parts)."""

    mode: ChecksumMode = "crc32"

    def digest(self, data: bytes) -> bytes:
        return zlib.crc32(data).to_bytes(4, "big")

    def body_args(self, digest: bytes) -> dict[str, str]:
        return {"ChecksumAlgorithm": "CRC32", "ChecksumCRC32": _b64(digest)}

    def create_args(self) -> dict[str, str]:
        return {"ChecksumAlgorithm": "CRC32"}

    def head_args(self) -> dict[str, str]:
        return {"ChecksumMode": "ENABLED"}

    def completed_part(
        self, number: int, digest: bytes, response: dict[str, Any]
    ) -> dict[str, Any]:
        return {"ETag": response["ETag"], "ChecksumCRC32": _b64(digest), "PartNumber": number}

    def expected(self, digest: bytes) -> str:
        return _b64(digest)

    def expected_whole(self, digests: list[bytes]) -> str:
        return f"{_b64(self.digest(b''.join(digests)))}-{len(digests)}"

    def returned(self, response: dict[str, Any]) -> str | None:
        value = response.get("ChecksumCRC32")
        return str(value) if value else None

    def same(self, returned: str, expected: str) -> bool:
        # Some stores leave the "-N" part count off a composite checksum in a HEAD answer.
        value, _, parts = returned.partition("-")
        expected_value, _, expected_parts = expected.partition("-")
        return value == expected_value and parts in ("", expected_parts)

    def without_returned(self) -> None:
        raise UnverifiableUploadError(
            "the store returned no CRC32 checksum, so it cannot prove that it holds our "
            'bytes: it does not support checksums; upload to it with checksum="md5"'
        )


def checksum_for(mode: ChecksumMode, endpoint_url: str | None) -> Checksum:
    """The checksum strategy for `mode` on the store at `endpoint_url`, without asking it."""
    if mode == "auto":
        mode = "crc32" if _on_aws(endpoint_url) else "md5"
    return Crc32Checksum() if mode == "crc32" else Checksum()


Probe = Callable[[], Awaitable[bool | None]]


class ChecksumChoice:
    """The checksum an uploader's jobs use: `mode`'s, or for "auto" off AWS what the store says.

    The first job asks the store (`probe`, True when it checks CRC32); jobs wait for that
    answer, and use MD5 while a probe could not ask. After `MAX_UNANSWERED` such probes MD5
    stays, so a store that keeps failing is not asked before every job. A store that then
    fails to return a CRC32 after all is switched to MD5 (`md5_instead_of`).
    """

    MAX_UNANSWERED = 3

    def __init__(self, mode: ChecksumMode, endpoint_url: str | None) -> None:
        self._endpoint_url = endpoint_url
        self._chosen: Checksum | None = None
        self._asks_store = mode == "auto" and not _on_aws(endpoint_url)
        if not self._asks_store:
            self._chosen = checksum_for(mode, endpoint_url)
        self._asking = asyncio.Lock()
        self._unanswered = 0

    async def checksum(self, probe: Probe) -> Checksum:
        """The checksum for the next job; `probe` asks the store while that is undecided."""
        if self._chosen is not None:
            return self._chosen
        async with self._asking:
            if self._chosen is not None:
                return self._chosen
            checks_crc32 = await probe()
            if checks_crc32 is None:
                self._unanswered += 1
                if self._unanswered < self.MAX_UNANSWERED:
                    return Checksum()
            self._chosen = Crc32Checksum() if checks_crc32 else Checksum()
            log.info(
                "the store at %s %s; uploads are verified with %s",
                self._endpoint_url,
                {
                    True: "checks CRC32 checksums",
                    False: "does not check CRC32 checksums",
                    None: f"could not be asked whether it checks CRC32 in {self._unanswered} tries",
                }[checks_crc32],
                self._chosen.mode.upper(),
            )
            return self._chosen

    def md5_instead_of(self, checksum: Checksum) -> Checksum | None:
        """MD5 from now on, after the store returned no CRC32 for an upload although it did
        when asked; None when `checksum` is no CRC32 the store's answer chose."""
        if not self._asks_store or checksum.mode != "crc32":
            return None
        self._chosen = Checksum()
        log.warning(
            "the store at %s returned no CRC32 checksum for an upload, although it did when "
            "asked; uploads are verified with MD5 from now on",
            self._endpoint_url,
        )
        return self._chosen


def _on_aws(endpoint_url: str | None) -> bool:
    host = (urlsplit(endpoint_url or "").hostname or "").rstrip(".")
    return host.endswith(_AWS_DOMAINS)


def etag(response: dict[str, Any]) -> str:
    """The ETag of a store's answer, without its quotes."""
    return str(response.get("ETag", "")).strip('"')


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")
