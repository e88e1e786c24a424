"""The checksum modes over real HTTP: what each sends, what proves an upload, what is retried.

moto echoes an `x-amz-checksum-crc32` without checking it, so where a test needs a store that
checks it, as AWS S3 does, the fault proxy in front of moto does the check (`checks_crc32`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import zlib
from pathlib import Path
from typing import Any

import pytest
from botocore.client import BaseClient
from faultproxy import (
    ACCESS_DENIED,
    SLOW_DOWN,
    Fault,
    FaultProxy,
    S3Op,
    always,
    crc32_b64,
    fail_first,
)
from prometheus_client import CollectorRegistry
from s3fixtures import open_uploads, stored
from uploads import FAILED, RETRIES, SUCCESS, LocalFile, Metrics, new_uploader, write_file

from recording_aio import ConfigurationError, UploadFailedError
from recording_aio.checksums import ChecksumChoice, checksum_for

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
    """moto takes any CRC32 without checking it, so "auto", having asked, is "md5" there."""
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
        assert open_uploads(s3, bucket) == []


# -- "auto" asks a store that is not AWS S3 whether it checks CRC32 ---------------------------

PROBE_OPS: tuple[S3Op, ...] = ("CreateMultipartUpload", "UploadPart", "AbortMultipartUpload")
MINIO_MISMATCH = Fault.error(
    400,
    "XAmzContentChecksumMismatch",
    "The provided 'x-amz-checksum' header does not match what was computed.",
)


def probe_requests(proxy: FaultProxy) -> list[tuple[S3Op, int | None]]:
    """The probe's requests the proxy saw, with the status each got."""
    return [(r.info.op, r.status) for r in proxy.requests if r.info.op in PROBE_OPS]


async def upload_one_by_one(proxy: FaultProxy, bucket: str, files: list[LocalFile]) -> None:
    async with new_uploader(proxy.url, CollectorRegistry(), checksum="auto") as up:
        for f in files:
            await (await up.enqueue(f.job(bucket)))


@pytest.mark.parametrize(
    ("checks_crc32", "rule", "expected_mode"),
    [
        pytest.param(False, None, "md5", id="moto-takes-any-crc32"),
        pytest.param(True, None, "crc32", id="store-refuses-wrong-crc32-like-aws"),
        pytest.param(
            False, fail_first(1, MINIO_MISMATCH, op="UploadPart"), "crc32", id="like-minio"
        ),
        pytest.param(
            True,
            always(Fault.no_checksum(), op="UploadPart"),
            "md5",
            id="store-checks-but-returns-no-crc32",
        ),
    ],
)
async def test_auto_asks_the_store_once_and_uses_crc32_only_where_the_store_checks_it(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    caplog: pytest.LogCaptureFixture,
    checks_crc32: bool,
    rule: Any,
    expected_mode: str,
) -> None:
    """Four jobs at once over four workers: one probe (a multipart upload, aborted) before any
    upload, then every PUT carries the checksum the answer chose."""
    fault_proxy.checks_crc32 = checks_crc32
    fault_proxy.set_rule(rule)
    files = [write_file(tmp_path, f"call{i}.wav", 30_000) for i in range(4)]
    with caplog.at_level(logging.INFO, logger="recording_aio"):
        async with new_uploader(
            fault_proxy.url, CollectorRegistry(), checksum="auto", workers=4
        ) as up:
            handles = [await up.enqueue(f.job(bucket)) for f in files]
            results = await asyncio.gather(*handles)

    refused = checks_crc32 or rule is not None
    assert probe_requests(fault_proxy) == [
        ("CreateMultipartUpload", 200),
        *([("UploadPart", 400)] if refused else []),
        ("UploadPart", 200),
        ("AbortMultipartUpload", 204),
    ]
    first_put = next(i for i, r in enumerate(fault_proxy.requests) if r.info.op == "PutObject")
    assert first_put == len(probe_requests(fault_proxy)), "a job went up before the answer"
    crc32 = expected_mode == "crc32"
    assert sorted(s or "" for s in sent(fault_proxy, "PutObject", "x-amz-checksum-crc32")) == (
        sorted(crc32_b64(f.data) if crc32 else "" for f in files)
    )
    assert sorted(s or "" for s in sent(fault_proxy, "PutObject", "Content-MD5")) == (
        sorted("" if crc32 else md5_b64(f.data) for f in files)
    )
    for f in files:
        assert stored(s3, bucket, f.job(bucket).key) == f.data
        assert not f.path.exists()
    assert [r.attempts for r in results] == [1, 1, 1, 1]
    assert open_uploads(s3, bucket) == []
    said = [r.getMessage() for r in caplog.records if "uploads are verified" in r.getMessage()]
    assert said == [
        f"the store at {fault_proxy.url} "
        + ("checks CRC32 checksums" if crc32 else "does not check CRC32 checksums")
        + f"; uploads are verified with {expected_mode.upper()}"
    ]


@pytest.mark.parametrize(
    ("fault", "probes"),
    [
        pytest.param(SLOW_DOWN, 3, id="503-asked-again-up-to-three-times"),
        pytest.param(ACCESS_DENIED, 3, id="403-asked-again-up-to-three-times"),
        pytest.param(
            Fault.error(
                400,
                "InvalidArgument",
                "Unsupported header 'x-amz-checksum-algorithm' received for this API call.",
            ),
            1,
            id="checksum-header-refused-once-for-all",
        ),
        pytest.param(Fault.error(501, "NotImplemented", "Not implemented"), 1, id="501-once"),
    ],
)
async def test_auto_uses_md5_where_the_store_refuses_the_probe_or_cannot_answer(
    tmp_path: Path, fault_proxy: FaultProxy, s3: BaseClient, bucket: str, fault: Fault, probes: int
) -> None:
    """A refusal of the checksum header decides for good; a failure to answer is not retried
    within the probe, and is asked again with the next jobs, three times at most."""
    fault_proxy.checks_crc32 = True
    fault_proxy.set_rule(always(fault, op="CreateMultipartUpload"))
    files = [write_file(tmp_path, f"call{i}.wav", 30_000) for i in range(5)]
    await upload_one_by_one(fault_proxy, bucket, files)

    assert probe_requests(fault_proxy) == [("CreateMultipartUpload", fault.status)] * probes
    assert sent(fault_proxy, "PutObject", "Content-MD5") == [md5_b64(f.data) for f in files]
    assert sent(fault_proxy, "PutObject", "x-amz-checksum-crc32") == [None] * len(files)
    for f in files:
        assert stored(s3, bucket, f.job(bucket).key) == f.data


async def test_auto_switches_to_md5_when_the_store_returns_no_crc32_for_an_object(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    registry: CollectorRegistry,
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A store that returned the part's CRC32 when asked but none for the whole object: the
    job goes up again at once with MD5, and so do the next ones, instead of failing."""
    fault_proxy.checks_crc32 = True
    fault_proxy.set_rule(
        lambda info: Fault.no_checksum() if info.op in ("PutObject", "HeadObject") else None
    )
    first, second = (write_file(tmp_path, f"call{i}.wav", 30_000) for i in range(2))
    async with new_uploader(fault_proxy.url, registry, checksum="auto") as up:
        results = [await (await up.enqueue(f.job(bucket))) for f in (first, second)]

    assert sent(fault_proxy, "PutObject", "x-amz-checksum-crc32") == [
        crc32_b64(first.data),
        None,
        None,
    ]
    assert sent(fault_proxy, "PutObject", "Content-MD5") == [
        None,
        md5_b64(first.data),
        md5_b64(second.data),
    ]
    assert [r.attempts for r in results] == [2, 1]
    for f in (first, second):
        assert stored(s3, bucket, f.job(bucket).key) == f.data
        assert not f.path.exists()
    assert metrics.by_label(RETRIES, "reason") == {"unverified": 1.0}
    assert metrics.value(SUCCESS) == 2.0
    assert metrics.by_label(FAILED, "reason") == {}
    assert any("verified with MD5 from now on" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("mode", ["crc32", "auto-on-aws"])
async def test_crc32_chosen_by_the_caller_or_for_aws_does_not_switch_to_md5(
    mode: str,
) -> None:
    """Only a CRC32 the store's own answer chose is given up: "crc32" stands as asked (a job
    fails as "unverified", see above), and so does AWS S3's."""
    choice = ChecksumChoice(
        "crc32" if mode == "crc32" else "auto", "https://s3.eu-west-1.amazonaws.com"
    )

    async def never_asked() -> bool | None:
        raise AssertionError("the store was asked")

    crc32 = await choice.checksum(never_asked)
    assert crc32.mode == "crc32"
    assert choice.md5_instead_of(crc32) is None
    assert (await choice.checksum(never_asked)).mode == "crc32"


async def test_auto_asks_again_after_a_probe_that_could_not_answer(
    tmp_path: Path, fault_proxy: FaultProxy, s3: BaseClient, bucket: str
) -> None:
    """The first job goes up with MD5 while the store cannot answer; the next one asks again."""
    fault_proxy.checks_crc32 = True
    fault_proxy.set_rule(fail_first(1, Fault.reset(), op="UploadPart"))
    first, second = (write_file(tmp_path, f"call{i}.wav", 30_000) for i in range(2))
    await upload_one_by_one(fault_proxy, bucket, [first, second])

    assert probe_requests(fault_proxy) == [
        ("CreateMultipartUpload", 200),
        ("UploadPart", None),
        ("AbortMultipartUpload", 204),
        ("CreateMultipartUpload", 200),
        ("UploadPart", 400),
        ("UploadPart", 200),
        ("AbortMultipartUpload", 204),
    ]
    assert sent(fault_proxy, "PutObject", "Content-MD5") == [md5_b64(first.data), None]
    assert sent(fault_proxy, "PutObject", "x-amz-checksum-crc32") == [None, crc32_b64(second.data)]
    assert open_uploads(s3, bucket) == []


async def test_shutdown_during_the_probe_aborts_its_upload_and_keeps_the_file(
    tmp_path: Path, fault_proxy: FaultProxy, s3: BaseClient, bucket: str
) -> None:
    f = write_file(tmp_path, "call.wav", 30_000)
    fault_proxy.set_rule(always(Fault.stall(30.0), op="UploadPart"))
    up = new_uploader(fault_proxy.url, CollectorRegistry(), checksum="auto", read_timeout=60)
    await up.start()
    handle = await up.enqueue(f.job(bucket))
    while not fault_proxy.count(op="UploadPart"):
        await asyncio.sleep(0.01)
    await up.shutdown(timeout=0.1)

    with pytest.raises(UploadFailedError) as failed:
        await handle
    assert failed.value.reason == "shutdown"
    assert f.intact()
    assert fault_proxy.count(op="AbortMultipartUpload", outcome="forwarded") == 1
    assert fault_proxy.count(op="PutObject") == 0
    assert open_uploads(s3, bucket) == []


async def test_a_probe_upload_left_open_is_aborted_when_the_spooled_job_is_taken_up_again(
    tmp_path: Path, fault_proxy: FaultProxy, s3: BaseClient, bucket: str
) -> None:
    """The probe's upload id is spooled like any upload of the job, so one that could not be
    aborted (a crash; here the store refuses the abort) is aborted at the next start."""
    f = write_file(tmp_path, "call.wav", 30_000)
    spool = tmp_path / "spool"
    faults = {"UploadPart": Fault.stall(30.0), "AbortMultipartUpload": ACCESS_DENIED}
    fault_proxy.set_rule(lambda info: faults.get(info.op))
    up = new_uploader(fault_proxy.url, CollectorRegistry(), checksum="auto", spool_dir=spool)
    await up.start()
    await up.enqueue(f.job(bucket))
    while not fault_proxy.count(op="UploadPart"):
        await asyncio.sleep(0.01)
    await up.shutdown(timeout=0.1)
    [left_open] = open_uploads(s3, bucket)

    fault_proxy.set_rule(None)
    async with new_uploader(
        fault_proxy.url, CollectorRegistry(), checksum="auto", spool_dir=spool
    ) as again:
        [handle] = again.recovered
        await handle

    aborted = [r.info.query for r in fault_proxy.requests if r.info.op == "AbortMultipartUpload"]
    assert any(left_open["UploadId"] in query for query in aborted[1:])
    assert open_uploads(s3, bucket) == []
    assert stored(s3, bucket, f.job(bucket).key) == f.data
    assert not f.path.exists()


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
