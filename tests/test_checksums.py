"""The checksum modes over real HTTP: what each sends, what proves an upload, what is retried.

moto echoes an `x-amz-checksum-crc32` without checking it, so where a test needs a store that
checks it, as AWS S3 does, the fault proxy in front of moto does the check (`checks_crc32`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from pathlib import Path
from typing import Any

import pytest
from botocore.client import BaseClient
from faultproxy import Fault, FaultProxy, S3Op, crc32_b64, fail_first
from prometheus_client import CollectorRegistry
from s3fixtures import stored
from uploads import FAILED, RETRIES, SUCCESS, Metrics, new_uploader, write_file

from recording_aio import ConfigurationError, UploadFailedError
from recording_aio.checksums import checksum_for

MIB = 1 << 20
PART = 5 * MIB
MULTIPART = {"multipart_threshold": PART, "part_size": PART, "part_concurrency": 2}


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


def sent(proxy: FaultProxy, op: S3Op, header: str) -> list[str | None]:
    """The value of `header` in each `op` request the proxy saw, in order."""
    return [r.info.headers.get(header) for r in proxy.requests if r.info.op == op]


def outcomes(proxy: FaultProxy, op: S3Op) -> list[tuple[str, int | None]]:
    return [(r.outcome, r.status) for r in proxy.requests if r.info.op == op]


@pytest.mark.parametrize(
    ("endpoint", "mode"),
    [
        ("https://s3.amazonaws.com", "crc32"),
        ("https://s3.eu-west-1.amazonaws.com", "crc32"),
        ("https://bucket.vpce-0a1b.s3.us-east-1.vpce.amazonaws.com", "crc32"),
        ("https://s3.cn-north-1.amazonaws.com.cn", "crc32"),
        ("http://127.0.0.1:9000", "md5"),
        ("https://storage.googleapis.com", "md5"),
        ("https://s3.amazonaws.com.example.net", "md5"),
        ("https://example.net/s3.amazonaws.com", "md5"),
        ("https://notamazonaws.com", "md5"),
        (None, "md5"),
    ],
)
def test_auto_picks_crc32_on_aws_endpoints_only(endpoint: str | None, mode: str) -> None:
    assert checksum_for("auto", endpoint).mode == mode
    assert checksum_for("md5", "https://s3.amazonaws.com").mode == "md5"
    assert checksum_for("crc32", "http://127.0.0.1:9000").mode == "crc32"


def test_unknown_checksum_mode_is_a_configuration_error(registry: CollectorRegistry) -> None:
    with pytest.raises(ConfigurationError, match="checksum must be one of auto, md5, crc32"):
        new_uploader("http://127.0.0.1:1", registry, checksum="sha1")


@pytest.mark.parametrize("mode", ["auto", "md5", "crc32"])
async def test_each_mode_sends_its_checksum_and_the_upload_lands(
    tmp_path: Path, fault_proxy: FaultProxy, s3: BaseClient, bucket: str, mode: str
) -> None:
    """moto's endpoint is no AWS one, so "auto" is "md5" there."""
    f = write_file(tmp_path, "call.wav", 100_000)
    async with new_uploader(fault_proxy.url, CollectorRegistry(), checksum=mode) as up:
        result = await (await up.enqueue(f.job(bucket)))

    crc32 = mode == "crc32"
    assert sent(fault_proxy, "PutObject", "x-amz-checksum-crc32") == [
        crc32_b64(f.data) if crc32 else None
    ]
    assert sent(fault_proxy, "PutObject", "Content-MD5") == [None if crc32 else md5_b64(f.data)]
    assert stored(s3, bucket, f.job(bucket).key) == f.data
    assert not f.path.exists()
    assert result.etag == f.md5
    assert result.attempts == 1


async def test_crc32_multipart_is_checked_against_the_composite_checksum(
    tmp_path: Path, fault_proxy: FaultProxy, s3: BaseClient, bucket: str
) -> None:
    """Every part carries its CRC32; moto's CompleteMultipartUpload answer has no checksum, so
    a HEAD asks for the composite one (CRC32 of the parts' CRC32s, "-N") and the size."""
    f = write_file(tmp_path, "long.wav", 2 * PART + 777)
    pieces = [f.data[i : i + PART] for i in range(0, len(f.data), PART)]
    async with new_uploader(
        fault_proxy.url, CollectorRegistry(), checksum="crc32", **MULTIPART
    ) as up:
        result = await (await up.enqueue(f.job(bucket)))

    assert sorted(s or "" for s in sent(fault_proxy, "UploadPart", "x-amz-checksum-crc32")) == (
        sorted(crc32_b64(p) for p in pieces)
    )
    assert sent(fault_proxy, "CreateMultipartUpload", "x-amz-checksum-algorithm") == ["CRC32"]
    assert sent(fault_proxy, "HeadObject", "x-amz-checksum-mode") == ["ENABLED"]
    assert stored(s3, bucket, f.job(bucket).key) == f.data
    assert not f.path.exists()
    assert result.parts == 3
    head = s3.head_object(Bucket=bucket, Key=f.job(bucket).key, ChecksumMode="ENABLED")
    composite = zlib.crc32(b"".join(zlib.crc32(p).to_bytes(4, "big") for p in pieces))
    assert head["ChecksumCRC32"].partition("-")[0] == base64.b64encode(
        composite.to_bytes(4, "big")
    ).decode("ascii")


@pytest.mark.parametrize(
    ("op", "options"), [("PutObject", {}), ("UploadPart", MULTIPART)], ids=["put", "part"]
)
async def test_crc32_body_damaged_on_the_way_is_rejected_by_the_store_and_retried(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
    op: S3Op,
    options: dict[str, Any],
) -> None:
    f = write_file(tmp_path, "call.wav", PART + 1000 if options else 50_000)
    fault_proxy.checks_crc32 = True
    fault_proxy.set_rule(fail_first(1, Fault.flip_bit(), op=op))
    async with new_uploader(fault_proxy.url, registry, checksum="crc32", **options) as up:
        result = await (await up.enqueue(f.job(bucket)))

    assert outcomes(fault_proxy, op)[0] == ("flip_bit", 400)
    assert stored(s3, bucket, f.job(bucket).key) == f.data
    assert not f.path.exists()
    assert result.attempts == 2
    assert metrics.by_label(RETRIES, "reason") == {"damaged": 1.0}
    assert metrics.value(SUCCESS) == 1.0


async def test_crc32_wrong_checksum_in_the_answer_is_retried(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
) -> None:
    f = write_file(tmp_path, "call.wav", 50_000)
    fault_proxy.set_rule(fail_first(2, Fault.bad_checksum(), op="PutObject"))
    async with new_uploader(fault_proxy.url, registry, checksum="crc32") as up:
        result = await (await up.enqueue(f.job(bucket)))

    assert outcomes(fault_proxy, "PutObject") == [("bad_checksum", 200)] * 2 + [("forwarded", 200)]
    assert stored(s3, bucket, f.job(bucket).key) == f.data
    assert not f.path.exists()
    assert result.attempts == 3
    assert metrics.by_label(RETRIES, "reason") == {"damaged": 2.0}


@pytest.mark.parametrize(
    ("op", "options"), [("PutObject", {}), ("UploadPart", MULTIPART)], ids=["put", "part"]
)
async def test_crc32_on_a_store_without_checksums_fails_at_once_and_keeps_the_file(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
    op: S3Op,
    options: dict[str, Any],
) -> None:
    """No retry can prove what the store will never return: the job fails as "unverified"."""
    f = write_file(tmp_path, "call.wav", PART + 1000 if options else 50_000)
    fault_proxy.set_rule(
        lambda info: Fault.no_checksum() if info.op in (op, "HeadObject") else None
    )
    async with new_uploader(fault_proxy.url, registry, checksum="crc32", **options) as up:
        handle = await up.enqueue(f.job(bucket))
        with pytest.raises(UploadFailedError, match='checksum="md5"') as excinfo:
            await handle

    assert excinfo.value.reason == "unverified"
    assert excinfo.value.attempts == 1
    assert f.intact()
    assert metrics.by_label(FAILED, "reason") == {"unverified": 1.0}
    assert metrics.by_label(RETRIES, "reason") == {}
    if options:
        assert [o for o, _ in outcomes(fault_proxy, "AbortMultipartUpload")] == ["forwarded"]
        assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_crc32_digest_of_parts_matches_zlib() -> None:
    data = os.urandom(3000)
    checksum = checksum_for("crc32", None)
    digests = [checksum.digest(data[:1000]), checksum.digest(data[1000:])]
    assert checksum.expected(digests[0]) == crc32_b64(data[:1000])
    composite = zlib.crc32(b"".join(digests)).to_bytes(4, "big")
    whole = f"{base64.b64encode(composite).decode()}-2"
    assert checksum.expected_whole(digests) == whole
    assert checksum.same(whole, whole)
    assert checksum.same(whole.partition("-")[0], whole)  # the part count left off
    assert not checksum.same(whole.replace("-2", "-3"), whole)
    assert not checksum.same(crc32_b64(data), whole)
