"""Multipart uploads over real HTTP to moto: parts, checksums, bounded concurrency, retries of
single parts, aborts; and the store options (encryption, storage class, tags, metadata)."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from faultproxy import (
    ACCESS_DENIED,
    INTERNAL_ERROR,
    SERVICE_UNAVAILABLE,
    SLOW_DOWN,
    Fault,
    FaultProxy,
    RequestInfo,
    S3Op,
    always,
    fail_first,
)
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from s3fixtures import ACCESS_KEY, REGION, SECRET_KEY, open_uploads, stored
from uploads import make_file, wait_until

from recording_aio import AsyncUploader, RecordingJob, UploadFailedError
from recording_aio.spool import Spool, SpoolEntry, new_entry
from recording_aio.transfer import MAX_PARTS, MIN_PART_SIZE, _part_size

MIB = 1 << 20
PART = 5 * MIB
SIZE = 12 * MIB + 777  # three parts: 5 MiB, 5 MiB, 2 MiB + 777 bytes


# -- helpers ---------------------------------------------------------------------------------


def make_uploader(endpoint: str, spool_dir: Path | None = None, **kw: Any) -> AsyncUploader:
    """A multipart-happy uploader: 5 MiB threshold and parts, quick backoff."""
    options: dict[str, Any] = {
        "multipart_threshold": PART,
        "part_size": PART,
        "part_concurrency": 2,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "max_retries": 3,
        "registry": CollectorRegistry(),
        "checksum": "md5",  # no probe of the store (test_checksums.py): these tests count parts
    }
    options.update(kw)
    return AsyncUploader(endpoint_url=endpoint, region_name=REGION, spool_dir=spool_dir, **options)


def multipart_etag(data: bytes, part_size: int = PART) -> str:
    """S3's ETag of an object uploaded in parts of `part_size`: MD5 of the parts' MD5s, -N."""
    digests = [
        hashlib.md5(data[i : i + part_size]).digest() for i in range(0, len(data), part_size)
    ]
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


def part_numbers(proxy: FaultProxy, outcome: str | None = None) -> list[int]:
    """The part numbers of the UploadPart requests the proxy saw, in order."""
    return [
        int(parse_qs(r.info.query)["partNumber"][0])
        for r in proxy.requests
        if r.info.op == "UploadPart" and (outcome is None or r.outcome == outcome)
    ]


def spool_records(spool_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_bytes()) for p in spool_dir.glob("*.job.json")]


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, {"uploader": "default", **labels}) or 0.0


# -- parts, checksums, concurrency -----------------------------------------------------------


async def test_large_file_goes_up_in_parts(
    tmp_path: Path, fault_proxy: FaultProxy, bucket: str, s3: BaseClient
) -> None:
    """A file above the threshold goes up in ceil(size/part_size) parts; the object is exact and
    its ETag is the MD5 of the parts' MD5s."""
    path, data = make_file(tmp_path, "big.wav", SIZE)
    async with make_uploader(fault_proxy.url) as up:
        result = await (await up.enqueue(RecordingJob(path, bucket, "mp/big.wav")))
    expected_parts = math.ceil(SIZE / PART)
    assert expected_parts == 3
    assert result.parts == expected_parts
    assert result.size_bytes == SIZE
    assert result.attempts == 1
    assert result.etag == multipart_etag(data)
    assert sorted(part_numbers(fault_proxy)) == [1, 2, 3]
    assert fault_proxy.count(op="CreateMultipartUpload") == 1
    assert fault_proxy.count(op="CompleteMultipartUpload") == 1
    assert fault_proxy.count(op="PutObject") == 0
    assert stored(s3, bucket, "mp/big.wav") == data
    head = s3.head_object(Bucket=bucket, Key="mp/big.wav")
    assert head["ETag"] == f'"{multipart_etag(data)}"'
    assert head["ContentLength"] == SIZE
    assert head["ContentType"] == "audio/wav"
    assert not path.exists()
    assert open_uploads(s3, bucket) == []


async def test_file_below_threshold_is_a_single_put(
    tmp_path: Path, fault_proxy: FaultProxy, bucket: str, s3: BaseClient
) -> None:
    """One byte under the threshold is a single PUT whose ETag is the file's MD5."""
    path, data = make_file(tmp_path, "small.wav", PART - 1)
    async with make_uploader(fault_proxy.url) as up:
        result = await (await up.enqueue(RecordingJob(path, bucket, "mp/small.wav")))
    assert result.parts == 0
    assert result.etag == hashlib.md5(data).hexdigest()
    assert fault_proxy.count(op="PutObject") == 1
    assert fault_proxy.count(op="UploadPart") == 0
    assert stored(s3, bucket, "mp/small.wav") == data


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_parts_in_flight_are_bounded(
    concurrency: int, tmp_path: Path, fault_proxy: FaultProxy, bucket: str, s3: BaseClient
) -> None:
    """At most part_concurrency parts are in flight at once (seen at the proxy, each part held
    there a moment), and with enough parts exactly that many."""
    size = 5 * PART + 1
    path, data = make_file(tmp_path, "six.wav", size)
    peak = 0

    def rule(info: RequestInfo) -> Fault | None:
        nonlocal peak
        if info.op != "UploadPart":
            return None
        running = sum(
            1 for r in fault_proxy.requests if r.info.op == "UploadPart" and r.status is None
        )
        peak = max(peak, running + 1)
        return Fault.stall(0.15, then_forward=True)

    fault_proxy.set_rule(rule)
    async with make_uploader(fault_proxy.url, part_concurrency=concurrency) as up:
        result = await (await up.enqueue(RecordingJob(path, bucket, "mp/six.wav")))
    assert result.parts == 6
    assert sorted(part_numbers(fault_proxy)) == [1, 2, 3, 4, 5, 6]
    assert peak == concurrency
    assert stored(s3, bucket, "mp/six.wav") == data


@pytest.mark.parametrize(
    "fault",
    [SLOW_DOWN, INTERNAL_ERROR, Fault.reset()],
    ids=["slow-down", "internal-error", "reset-mid-body"],
)
async def test_failed_part_is_retried_alone(
    fault: Fault, tmp_path: Path, fault_proxy: FaultProxy, bucket: str, s3: BaseClient
) -> None:
    """A part that fails is sent again on its own: the upload is not restarted, and UploadPart
    requests number the parts plus the failures."""
    path, data = make_file(tmp_path, "retry.wav", SIZE)
    fault_proxy.set_rule(fail_first(2, fault, op="UploadPart"))
    async with make_uploader(fault_proxy.url) as up:
        result = await (await up.enqueue(RecordingJob(path, bucket, "mp/retry.wav")))
    assert fault_proxy.count(op="UploadPart") == 3 + 2
    assert fault_proxy.count(op="UploadPart", outcome=fault.kind) == 2
    assert sorted(part_numbers(fault_proxy, "forwarded")) == [1, 2, 3]
    failed = part_numbers(fault_proxy, fault.kind)
    assert sorted(part_numbers(fault_proxy)) == sorted([1, 2, 3, *failed])
    assert fault_proxy.count(op="CreateMultipartUpload") == 1
    assert fault_proxy.count(op="CompleteMultipartUpload") == 1
    assert fault_proxy.count(op="AbortMultipartUpload") == 0
    failed_requests = fault_proxy.count(op="UploadPart") - 3
    assert result.attempts - 1 == failed_requests, (
        f"the store saw {failed_requests} failed UploadPart requests but the uploader counted "
        f"{result.attempts - 1} retries: a layer below it re-sent requests on its own (aiohttp "
        "re-sends an idempotent request once when a reused connection drops), so max_retries "
        "does not bound the HTTP attempts per request"
    )
    assert result.etag == multipart_etag(data)
    assert stored(s3, bucket, "mp/retry.wav") == data
    assert open_uploads(s3, bucket) == []


async def test_flipped_bit_in_a_part_is_detected_and_resent(
    tmp_path: Path, fault_proxy: FaultProxy, bucket: str, s3: BaseClient
) -> None:
    """A part damaged on the way (one bit) is caught by its checksum and only it is re-sent."""
    path, data = make_file(tmp_path, "flip.wav", SIZE)
    flipped = False

    def rule(info: RequestInfo) -> Fault | None:
        nonlocal flipped
        if info.op == "UploadPart" and parse_qs(info.query)["partNumber"] == ["2"] and not flipped:
            flipped = True
            return Fault.flip_bit()
        return None

    fault_proxy.set_rule(rule)
    registry = CollectorRegistry()
    async with make_uploader(fault_proxy.url, registry=registry) as up:
        result = await (await up.enqueue(RecordingJob(path, bucket, "mp/flip.wav")))
    assert flipped
    assert sorted(part_numbers(fault_proxy)) == [1, 2, 2, 3]
    assert part_numbers(fault_proxy, "flip_bit") == [2]
    assert metric(registry, "recording_upload_retries_total", reason="damaged") == 1
    assert result.etag == multipart_etag(data)
    assert stored(s3, bucket, "mp/flip.wav") == data


# -- aborts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "fault", "reason"),
    [
        ("UploadPart", ACCESS_DENIED, "access_denied"),
        ("UploadPart", SERVICE_UNAVAILABLE, "retries_exhausted"),
        ("UploadPart", Fault.flip_bit(), "retries_exhausted"),
        ("CompleteMultipartUpload", INTERNAL_ERROR, "retries_exhausted"),
    ],
    ids=["part-access-denied", "part-retries-exhausted", "part-always-damaged", "complete-fails"],
)
async def test_multipart_failing_for_good_is_aborted(
    op: S3Op,
    fault: Fault,
    reason: str,
    tmp_path: Path,
    fault_proxy: FaultProxy,
    bucket: str,
    s3: BaseClient,
) -> None:
    """A multipart upload that fails for good is aborted (nothing left in the bucket's list of
    uploads); the local file and its spool entry stay, without the dead upload id."""
    spool_dir = tmp_path / "spool"
    path, data = make_file(tmp_path / "rec", "fail.wav", SIZE)
    fault_proxy.set_rule(always(fault, op=op))
    async with make_uploader(fault_proxy.url, spool_dir, max_retries=1) as up:
        handle = await up.enqueue(RecordingJob(path, bucket, "mp/fail.wav"))
        with pytest.raises(UploadFailedError) as failed:
            await handle
    assert failed.value.reason == reason
    assert fault_proxy.count(op="AbortMultipartUpload") == 1
    assert open_uploads(s3, bucket) == []
    assert stored(s3, bucket, "mp/fail.wav") is None
    assert path.read_bytes() == data
    (record,) = spool_records(spool_dir)
    assert record["upload_id"] is None
    assert record["last_error"]


async def test_shutdown_timeout_mid_multipart_aborts(
    tmp_path: Path, fault_proxy: FaultProxy, bucket: str, s3: BaseClient
) -> None:
    """A shutdown deadline that cuts a multipart upload short aborts it; the file and the entry
    stay for the next start."""
    spool_dir = tmp_path / "spool"
    path, data = make_file(tmp_path / "rec", "cut.wav", SIZE)
    fault_proxy.set_rule(always(Fault.stall(30), op="UploadPart"))
    up = make_uploader(fault_proxy.url, spool_dir)
    await up.start()
    handle = await up.enqueue(RecordingJob(path, bucket, "mp/cut.wav"))
    await wait_until("parts to be in flight", lambda: fault_proxy.count(op="UploadPart") == 2)
    (upload,) = open_uploads(s3, bucket)
    (record,) = spool_records(spool_dir)
    assert record["upload_id"] == upload["UploadId"], "the spool must know the open upload"
    started = time.monotonic()
    await up.shutdown(timeout=0.5)
    elapsed = time.monotonic() - started
    assert elapsed < 0.5 + 3
    with pytest.raises(UploadFailedError) as failed:
        await handle
    assert failed.value.reason == "shutdown"
    assert fault_proxy.count(op="AbortMultipartUpload") == 1
    assert open_uploads(s3, bucket) == []
    assert path.read_bytes() == data
    (record,) = spool_records(spool_dir)
    assert record["upload_id"] is None


@pytest.mark.parametrize("upload_id", ["real", "unknown"])
async def test_upload_left_by_a_crash_is_aborted_at_start(
    upload_id: str,
    tmp_path: Path,
    fault_proxy: FaultProxy,
    bucket: str,
    s3: BaseClient,
) -> None:
    """A spool entry holding the id of an upload a crash left open: start() aborts that upload
    (an id the store no longer knows is fine) and uploads the job again."""
    spool_dir = tmp_path / "spool"
    path, data = make_file(tmp_path / "rec", "crash.wav", SIZE)
    job = RecordingJob(path, bucket, "mp/crash.wav")
    if upload_id == "real":
        created = s3.create_multipart_upload(Bucket=bucket, Key=job.key)
        upload_id = created["UploadId"]
        s3.upload_part(
            Bucket=bucket, Key=job.key, UploadId=upload_id, PartNumber=1, Body=data[:PART]
        )
        assert len(open_uploads(s3, bucket)) == 1
    spool = Spool.open(spool_dir)
    try:
        entry = new_entry(job, SIZE)
        spool.save(SpoolEntry(entry.id, job, SIZE, entry.enqueued_at, 1, "killed", upload_id))
    finally:
        spool.close()

    async with make_uploader(fault_proxy.url, spool_dir) as up:
        assert len(up.recovered) == 1
        result = await up.recovered[0]
    aborts = [r for r in fault_proxy.requests if r.info.op == "AbortMultipartUpload"]
    assert len(aborts) == 1
    assert parse_qs(aborts[0].info.query)["uploadId"] == [upload_id]
    assert result.parts == 3
    assert result.attempts == 2
    assert result.etag == multipart_etag(data)
    assert stored(s3, bucket, job.key) == data
    assert open_uploads(s3, bucket) == []
    assert spool_records(spool_dir) == []
    assert not path.exists()


@pytest.mark.parametrize("listing", ["allowed", "denied"])
async def test_unrecorded_upload_of_a_recovered_job_is_aborted(
    listing: str,
    tmp_path: Path,
    fault_proxy: FaultProxy,
    bucket: str,
    s3: BaseClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An upload created by a request in flight at a crash never reached the spool: before a
    recovered job goes up again, and once more after (a late request may land meanwhile), its
    key's open uploads are listed and aborted (another key's are left alone); without
    permission to list, the job still uploads, with a warning."""
    spool_dir = tmp_path / "spool"
    path, data = make_file(tmp_path / "rec", "lost-id.wav", SIZE)
    job = RecordingJob(path, bucket, "mp/lost-id.wav")
    orphan = s3.create_multipart_upload(Bucket=bucket, Key=job.key)["UploadId"]
    other = s3.create_multipart_upload(Bucket=bucket, Key=job.key + ".other")["UploadId"]
    spool = Spool.open(spool_dir)
    try:
        spool.save(new_entry(job, SIZE))
    finally:
        spool.close()
    if listing == "denied":
        fault_proxy.set_rule(always(ACCESS_DENIED, op="ListMultipartUploads"))
    async with make_uploader(fault_proxy.url, spool_dir) as up:
        result = await up.recovered[0]
    assert result.parts == 3
    assert stored(s3, bucket, job.key) == data
    assert fault_proxy.count(op="ListMultipartUploads") == 2
    left = sorted(u["UploadId"] for u in open_uploads(s3, bucket))
    if listing == "allowed":
        assert left == [other]
        aborts = [r for r in fault_proxy.requests if r.info.op == "AbortMultipartUpload"]
        assert [parse_qs(r.info.query)["uploadId"] for r in aborts] == [[orphan]]
    else:
        assert left == sorted([orphan, other])
        assert any("could not clean up open multipart" in r.getMessage() for r in caplog.records)


async def test_create_that_timed_out_but_succeeded_leaves_no_upload(
    tmp_path: Path, fault_proxy: FaultProxy, bucket: str, s3: BaseClient
) -> None:
    """A CreateMultipartUpload that times out on the client but still reaches the store opens
    an upload nobody knows; once the retried create succeeds, that one is found and aborted
    (and the key is swept once more after the upload completes)."""
    path, data = make_file(tmp_path, "slow-create.wav", SIZE)
    creates = 0

    def rule(info: RequestInfo) -> Fault | None:
        nonlocal creates
        if info.op != "CreateMultipartUpload":
            return None
        creates += 1
        # The first lands at 2.6 s, after the client gave up at 2 s; the retry lands at about
        # 3.2 s, within its own timeout, so the first upload exists when the retry returns.
        return Fault.stall(2.6 if creates == 1 else 1.2, then_forward=True)

    fault_proxy.set_rule(rule)
    async with make_uploader(fault_proxy.url, client_config=Config(read_timeout=2)) as up:
        result = await (await up.enqueue(RecordingJob(path, bucket, "mp/slow-create.wav")))
    assert creates == 2
    assert fault_proxy.count(op="ListMultipartUploads") == 2
    assert fault_proxy.count(op="AbortMultipartUpload") == 1
    assert result.etag == multipart_etag(data)
    assert stored(s3, bucket, "mp/slow-create.wav") == data
    assert open_uploads(s3, bucket) == []


async def test_fresh_job_does_not_list_uploads(
    tmp_path: Path, fault_proxy: FaultProxy, bucket: str
) -> None:
    """A job enqueued in this run has no earlier upload to look for: no listing is made."""
    path, _ = make_file(tmp_path, "fresh.wav", SIZE)
    async with make_uploader(fault_proxy.url, tmp_path / "spool") as up:
        await (await up.enqueue(RecordingJob(path, bucket, "mp/fresh.wav")))
    assert fault_proxy.count(op="ListMultipartUploads") == 0
    assert fault_proxy.count(op="AbortMultipartUpload") == 0


@pytest.mark.parametrize("fault", ["reset-once", "unavailable"])
async def test_stale_upload_abort_failing_at_start(
    fault: str, tmp_path: Path, fault_proxy: FaultProxy, bucket: str, s3: BaseClient
) -> None:
    """When aborting a crashed run's upload fails, start() still works: the abort is retried;
    if it fails for good the job keeps its file and the upload id for the next start, which
    aborts the upload and uploads the job, leaving nothing open."""
    spool_dir = tmp_path / "spool"
    path, data = make_file(tmp_path / "rec", "stale.wav", SIZE)
    job = RecordingJob(path, bucket, "mp/stale.wav")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=job.key)["UploadId"]
    spool = Spool.open(spool_dir)
    try:
        entry = new_entry(job, SIZE)
        spool.save(SpoolEntry(entry.id, job, SIZE, entry.enqueued_at, 1, "killed", upload_id))
    finally:
        spool.close()

    if fault == "reset-once":
        fault_proxy.set_rule(fail_first(1, Fault.reset(), op="AbortMultipartUpload"))
        async with make_uploader(fault_proxy.url, spool_dir) as up:
            result = await up.recovered[0]
        assert fault_proxy.count(op="AbortMultipartUpload") == 2
        assert result.parts == 3
    else:
        fault_proxy.set_rule(always(SERVICE_UNAVAILABLE, op="AbortMultipartUpload"))
        async with make_uploader(fault_proxy.url, spool_dir, max_retries=1) as up:
            with pytest.raises(UploadFailedError) as failed:
                await up.recovered[0]
        assert failed.value.reason == "retries_exhausted"
        assert fault_proxy.count(op="AbortMultipartUpload") == 2
        assert fault_proxy.count(op="CreateMultipartUpload") == 0
        (record,) = spool_records(spool_dir)
        assert record["upload_id"] == upload_id, "the open upload must stay known"
        assert [u["UploadId"] for u in open_uploads(s3, bucket)] == [upload_id]
        assert path.read_bytes() == data
        fault_proxy.set_rule(None)
        async with make_uploader(fault_proxy.url, spool_dir) as up:
            await up.recovered[0]
    assert open_uploads(s3, bucket) == []
    assert stored(s3, bucket, job.key) == data
    assert spool_records(spool_dir) == []
    assert not path.exists()


# -- part size -------------------------------------------------------------------------------


TIB = 1 << 40


@given(
    size=st.one_of(
        st.integers(1, 5 * TIB),
        st.sampled_from([MAX_PARTS * PART, MAX_PARTS * PART + 1, 5 * TIB]),
    ),
    wanted=st.sampled_from([5 * MIB, 8 * MIB, 16 * MIB, 64 * MIB]),
)
def test_part_size_keeps_parts_within_s3_limits(size: int, wanted: int) -> None:
    """The part size is at least the wanted size and 5 MiB, makes at most 10,000 parts, and is
    no bigger than needed (one MiB less would make too many parts)."""
    part = _part_size(size, wanted)
    assert part >= MIN_PART_SIZE
    assert part >= wanted
    assert math.ceil(size / part) <= MAX_PARTS
    assert part % MIB == 0
    if part > wanted:
        assert math.ceil(size / (part - MIB)) > MAX_PARTS


def test_part_size_examples() -> None:
    """Exact values at the 10,000-part boundary and for the largest S3 object."""
    assert _part_size(MAX_PARTS * PART, PART) == PART
    assert _part_size(MAX_PARTS * PART + 1, PART) == 6 * MIB
    assert _part_size(5 * TIB, PART) == 525 * MIB
    assert _part_size(1, PART) == PART


# -- store options ---------------------------------------------------------------------------

SIZES = {"single": 64 * 1024, "multipart": PART + 3}


def tags_of(s3: BaseClient, bucket: str, key: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}


@pytest.mark.parametrize("kind", list(SIZES))
async def test_store_options_defaults_and_job_overrides(
    kind: str, tmp_path: Path, fault_proxy: FaultProxy, bucket: str, s3: BaseClient
) -> None:
    """Uploader defaults (SSE-S3, storage class, tags) apply to every job; a job's own storage
    class and tags win, tags merged key by key; metadata and content type go with the object."""
    size = SIZES[kind]
    plain_path, plain = make_file(tmp_path, "plain.wav", size)
    own_path, own = make_file(tmp_path, "own.wav", size)
    defaults = {"team": "voice", "env": "test", "note": "a b+c=d/e:f@g"}
    async with make_uploader(
        fault_proxy.url, sse="AES256", storage_class="STANDARD_IA", tags=defaults
    ) as up:
        first = await up.enqueue(
            RecordingJob(plain_path, bucket, "opt/plain.wav", metadata={"call-id": "c1"})
        )
        second = await up.enqueue(
            RecordingJob(
                own_path,
                bucket,
                "opt/own.wav",
                content_type="audio/x-wav",
                metadata={"agent": "bot-7"},
                storage_class="ONEZONE_IA",
                tags={"env": "prod", "call": "c2"},
            )
        )
        results = [await first, await second]
    assert [r.parts for r in results] == ([0, 0] if kind == "single" else [2, 2])
    head = s3.head_object(Bucket=bucket, Key="opt/plain.wav")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["Metadata"] == {"call-id": "c1"}
    assert head["ContentType"] == "audio/wav"
    assert tags_of(s3, bucket, "opt/plain.wav") == defaults
    head = s3.head_object(Bucket=bucket, Key="opt/own.wav")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "ONEZONE_IA"
    assert head["Metadata"] == {"agent": "bot-7"}
    assert head["ContentType"] == "audio/x-wav"
    assert tags_of(s3, bucket, "opt/own.wav") == {**defaults, "env": "prod", "call": "c2"}
    assert stored(s3, bucket, "opt/plain.wav") == plain
    assert stored(s3, bucket, "opt/own.wav") == own


@pytest.mark.parametrize("kind", list(SIZES))
async def test_store_options_per_job_only(
    kind: str, tmp_path: Path, fault_proxy: FaultProxy, bucket: str, s3: BaseClient
) -> None:
    """Without uploader defaults a job's own options apply to it alone; a plain job gets none."""
    size = SIZES[kind]
    plain_path, _ = make_file(tmp_path, "plain.wav", size)
    own_path, own = make_file(tmp_path, "own.wav", size)
    async with make_uploader(fault_proxy.url) as up:
        first = await up.enqueue(RecordingJob(plain_path, bucket, "job/plain.wav"))
        second = await up.enqueue(
            RecordingJob(
                own_path,
                bucket,
                "job/own.wav",
                sse="AES256",
                storage_class="STANDARD_IA",
                tags={"retention": "90d"},
            )
        )
        await first
        await second
    head = s3.head_object(Bucket=bucket, Key="job/plain.wav")
    assert "ServerSideEncryption" not in head
    assert head.get("StorageClass", "STANDARD") == "STANDARD"
    assert tags_of(s3, bucket, "job/plain.wav") == {}
    head = s3.head_object(Bucket=bucket, Key="job/own.wav")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "STANDARD_IA"
    assert tags_of(s3, bucket, "job/own.wav") == {"retention": "90d"}
    assert stored(s3, bucket, "job/own.wav") == own


@pytest.fixture
def kms_key(s3_endpoint: str) -> Iterator[str]:
    """A KMS key on moto's server (the S3 side of moto encrypts with it)."""
    kms = boto3.client(
        "kms",
        endpoint_url=s3_endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    with closing(kms):
        key_id: str = kms.create_key(Description="recording tests")["KeyMetadata"]["KeyId"]
        yield key_id
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)


@pytest.mark.parametrize("where", ["uploader", "job"])
@pytest.mark.parametrize("kind", list(SIZES))
async def test_sse_kms_verifies_by_size(
    kind: str,
    where: str,
    kms_key: str,
    tmp_path: Path,
    fault_proxy: FaultProxy,
    bucket: str,
    s3: BaseClient,
) -> None:
    """With SSE-KMS the ETag is no MD5 on S3 (moto keeps the MD5, so the proxy garbles it): the
    upload is confirmed by a HEAD of the object's size instead, and succeeds."""
    path, data = make_file(tmp_path, "kms.wav", SIZES[kind])
    kms: dict[str, Any] = {"sse": "aws:kms", "sse_kms_key_id": kms_key}
    final_op: S3Op = "PutObject" if kind == "single" else "CompleteMultipartUpload"
    fault_proxy.set_rule(always(Fault.bad_etag(), op=final_op))
    async with make_uploader(fault_proxy.url, **(kms if where == "uploader" else {})) as up:
        job = RecordingJob(path, bucket, "kms/a.wav", **(kms if where == "job" else {}))
        result = await (await up.enqueue(job))
    assert result.size_bytes == len(data)
    assert fault_proxy.count(op=final_op, outcome="bad_etag") == 1
    assert fault_proxy.count(op="HeadObject") >= 1
    head = s3.head_object(Bucket=bucket, Key="kms/a.wav")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"].endswith(kms_key)
    assert stored(s3, bucket, "kms/a.wav") == data
    assert not path.exists()
