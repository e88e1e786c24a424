"""The fault proxy and the S3 fixtures do what they claim, over real HTTP to moto."""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, suppress
from pathlib import Path

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
from faultproxy import (
    ACCESS_DENIED,
    INTERNAL_ERROR,
    NO_SUCH_BUCKET,
    REQUEST_TIMEOUT,
    SERVICE_UNAVAILABLE,
    SLOW_DOWN,
    TRANSIENT_ERRORS,
    Fault,
    FaultProxy,
    RequestInfo,
    S3Op,
    always,
    crc32_b64,
    fail_first,
    random_faults,
)
from s3fixtures import ACCESS_KEY, REGION, SECRET_KEY, delete_bucket, s3_client

MIB = 1 << 20


def _md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def _info(seq: int, op: S3Op = "PutObject") -> RequestInfo:
    return RequestInfo("PUT", "/bucket/key", "", {}, 10, seq, op)


@pytest.fixture
def client(fault_proxy: FaultProxy) -> Iterator[BaseClient]:
    """A boto3 client that talks to moto through the fault proxy, one attempt per call."""
    with closing(s3_client(fault_proxy.url, Config(read_timeout=5))) as s3:
        yield s3


def test_round_trip_keeps_exact_bytes(
    client: BaseClient, s3: BaseClient, bucket: str, fault_proxy: FaultProxy
) -> None:
    """A 20 MiB object goes through the proxy and comes back byte for byte."""
    data = os.urandom(20 * MIB)
    put = client.put_object(Bucket=bucket, Key="big.wav", Body=data)
    assert put["ETag"] == _md5_etag(data)
    assert client.get_object(Bucket=bucket, Key="big.wav")["Body"].read() == data
    assert s3.get_object(Bucket=bucket, Key="big.wav")["Body"].read() == data
    assert [(r.info.op, r.outcome, r.status) for r in fault_proxy.requests] == [
        ("PutObject", "forwarded", 200),
        ("GetObject", "forwarded", 200),
    ]


def test_path_and_query_reach_the_store_unchanged(
    client: BaseClient, s3: BaseClient, bucket: str
) -> None:
    """Keys needing percent-encoding and query parameters arrive exactly as the client sent them."""
    key = "calls/2024 01/a+b=c&d%e~ü.wav"
    client.put_object(Bucket=bucket, Key=key, Body=b"x")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]
    got = client.get_object(Bucket=bucket, Key=key, ResponseContentType="audio/x-wav")
    assert got["ContentType"] == "audio/x-wav"
    assert got["Body"].read() == b"x"


def test_head_object_reports_real_size(client: BaseClient, bucket: str) -> None:
    """HeadObject through the proxy keeps the store's Content-Length though no body is sent."""
    client.put_object(Bucket=bucket, Key="k", Body=b"a" * 12345)
    assert client.head_object(Bucket=bucket, Key="k")["ContentLength"] == 12345


def test_multipart_upload_round_trip(client: BaseClient, s3: BaseClient, bucket: str) -> None:
    """A two-part multipart upload through the proxy stores the parts joined in order."""
    parts = [os.urandom(5 * MIB), os.urandom(1024)]
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    etags = []
    for n, part in enumerate(parts, start=1):
        answer = client.upload_part(
            Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=n, Body=part
        )
        etags.append(answer["ETag"])
    assert etags == [_md5_etag(part) for part in parts]
    client.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"ETag": e, "PartNumber": n} for n, e in enumerate(etags, 1)]},
    )
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"".join(parts)


def test_operations_are_named_and_numbered(
    client: BaseClient, s3: BaseClient, bucket: str, fault_proxy: FaultProxy
) -> None:
    """Each request is logged in order with its S3 operation name, method and status."""
    other = f"test-{uuid.uuid4().hex}"
    try:
        client.create_bucket(Bucket=other)
        client.put_object(Bucket=bucket, Key="k", Body=b"data")
        client.head_object(Bucket=bucket, Key="k")
        client.get_object(Bucket=bucket, Key="k")["Body"].read()
        upload_id = client.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
        client.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"p")
        client.list_multipart_uploads(Bucket=bucket)
        client.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id)
        client.list_objects_v2(Bucket=bucket)
    finally:
        delete_bucket(s3, other)
    logged = fault_proxy.requests
    assert [(r.info.op, r.info.method, r.status) for r in logged] == [
        ("CreateBucket", "PUT", 200),
        ("PutObject", "PUT", 200),
        ("HeadObject", "HEAD", 200),
        ("GetObject", "GET", 200),
        ("CreateMultipartUpload", "POST", 200),
        ("UploadPart", "PUT", 200),
        ("ListMultipartUploads", "GET", 200),
        ("AbortMultipartUpload", "DELETE", 204),
        ("Other", "GET", 200),
    ]
    assert [r.info.seq for r in logged] == list(range(len(logged)))
    assert logged[1].info.body_length == 4
    assert fault_proxy.count(method="PUT") == 3
    assert fault_proxy.count(op="UploadPart", method="PUT", outcome="forwarded") == 1


@pytest.mark.parametrize(
    "fault",
    [
        INTERNAL_ERROR,
        SLOW_DOWN,
        SERVICE_UNAVAILABLE,
        REQUEST_TIMEOUT,
        ACCESS_DENIED,
        NO_SUCH_BUCKET,
    ],
    ids=lambda fault: fault.code,
)
def test_error_fault_reaches_client_as_s3_error(
    fault: Fault, client: BaseClient, s3: BaseClient, bucket: str, fault_proxy: FaultProxy
) -> None:
    """An error fault gives the client its status, S3 error code and message; nothing is stored."""
    fault_proxy.set_rule(always(fault))
    with pytest.raises(ClientError) as raised:
        client.put_object(Bucket=bucket, Key="k", Body=b"data" * 1000)
    response = raised.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == fault.status
    assert response["Error"]["Code"] == fault.code
    assert response["Error"]["Message"] == fault.message
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert fault_proxy.requests[-1].outcome == "error"
    assert fault_proxy.requests[-1].status == fault.status


def test_reset_mid_body_is_a_connection_error(
    client: BaseClient, s3: BaseClient, bucket: str, fault_proxy: FaultProxy
) -> None:
    """A reset mid-body reaches the client as a closed connection; the next request works."""
    fault_proxy.set_rule(always(Fault.reset(), op="PutObject"))
    with pytest.raises(ConnectionClosedError):
        client.put_object(Bucket=bucket, Key="k", Body=os.urandom(2 * MIB))
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    fault_proxy.set_rule(None)
    client.put_object(Bucket=bucket, Key="k", Body=b"after")
    assert [(r.outcome, r.status) for r in fault_proxy.requests] == [
        ("reset", None),
        ("forwarded", 200),
    ]


def test_stall_beyond_read_timeout_times_out(bucket: str, fault_proxy: FaultProxy) -> None:
    """A stall longer than the read timeout gives ReadTimeoutError, and stop() cuts it short."""
    fault_proxy.set_rule(always(Fault.stall(30)))
    with closing(s3_client(fault_proxy.url, Config(read_timeout=0.5))) as impatient:
        started = time.monotonic()
        with pytest.raises(ReadTimeoutError):
            impatient.put_object(Bucket=bucket, Key="k", Body=b"data")
        assert time.monotonic() - started < 3
    started = time.monotonic()
    fault_proxy.stop()
    assert time.monotonic() - started < 1.5


def test_stall_then_forward_answers_late(
    client: BaseClient, s3: BaseClient, bucket: str, fault_proxy: FaultProxy
) -> None:
    """A stall that then forwards delays the answer by its length; the request still succeeds."""
    fault_proxy.set_rule(always(Fault.stall(0.3, then_forward=True)))
    started = time.monotonic()
    client.put_object(Bucket=bucket, Key="k", Body=b"late")
    assert time.monotonic() - started >= 0.25
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"late"


@pytest.mark.parametrize("bit", [None, 0, 8 * 100_000 + 7])
def test_flip_bit_stores_damaged_bytes(
    bit: int | None, client: BaseClient, s3: BaseClient, bucket: str, fault_proxy: FaultProxy
) -> None:
    """A flipped bit is stored: exactly one bit differs and the ETag is the damaged bytes' MD5."""
    data = os.urandom(256 * 1024)
    fault_proxy.set_rule(always(Fault.flip_bit(bit)))
    put = client.put_object(Bucket=bucket, Key="k", Body=data)
    stored = s3.get_object(Bucket=bucket, Key="k")["Body"].read()
    assert len(stored) == len(data)
    difference = int.from_bytes(stored, "big") ^ int.from_bytes(data, "big")
    assert difference.bit_count() == 1
    if bit is not None:
        assert stored[bit // 8] == data[bit // 8] ^ (1 << bit % 8)
    assert put["ETag"] == _md5_etag(stored) != _md5_etag(data)


def test_bad_etag_changes_only_the_answer(
    client: BaseClient, s3: BaseClient, bucket: str, fault_proxy: FaultProxy
) -> None:
    """A corrupted ETag reaches the client while the store keeps the right bytes and ETag."""
    data = os.urandom(4096)
    fault_proxy.set_rule(always(Fault.bad_etag()))
    put = client.put_object(Bucket=bucket, Key="k", Body=data)
    assert put["ETag"] != _md5_etag(data)
    assert s3.head_object(Bucket=bucket, Key="k")["ETag"] == _md5_etag(data)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data


@pytest.mark.parametrize(
    "fault", [Fault.bad_checksum(), Fault.no_checksum()], ids=["bad_checksum", "no_checksum"]
)
def test_checksum_faults_change_only_the_answer(
    client: BaseClient, s3: BaseClient, bucket: str, fault_proxy: FaultProxy, fault: Fault
) -> None:
    """The CRC32 moto echoes reaches the client wrong, or not at all; the store keeps it."""
    data = os.urandom(4096)
    fault_proxy.set_rule(always(fault))
    put = client.put_object(
        Bucket=bucket, Key="k", Body=data, ChecksumAlgorithm="CRC32", ChecksumCRC32=crc32_b64(data)
    )
    returned = put.get("ChecksumCRC32")
    if fault.kind == "no_checksum":
        assert returned is None
    else:
        assert returned not in (None, crc32_b64(data))
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc32_b64(data)


def test_checks_crc32_rejects_a_body_that_does_not_match(
    client: BaseClient, s3: BaseClient, bucket: str, fault_proxy: FaultProxy
) -> None:
    """Like AWS S3: a damaged body is refused with BadDigest and nothing is stored."""
    data = os.urandom(4096)
    fault_proxy.checks_crc32 = True
    client.put_object(Bucket=bucket, Key="good", Body=data, ChecksumCRC32=crc32_b64(data))
    fault_proxy.set_rule(always(Fault.flip_bit()))
    with pytest.raises(ClientError, match="BadDigest"):
        client.put_object(Bucket=bucket, Key="bad", Body=data, ChecksumCRC32=crc32_b64(data))
    assert s3.get_object(Bucket=bucket, Key="good")["Body"].read() == data
    with pytest.raises(ClientError, match="404"):
        s3.head_object(Bucket=bucket, Key="bad")
    assert [r.status for r in fault_proxy.requests if r.info.op == "PutObject"] == [200, 400]


def test_fail_first_fails_n_matching_then_passes(
    client: BaseClient, bucket: str, fault_proxy: FaultProxy
) -> None:
    """fail_first fails only the first n requests of its operation, then lets all pass."""
    fault_proxy.set_rule(fail_first(2, SLOW_DOWN, op="PutObject"))
    with pytest.raises(ClientError, match="SlowDown"):
        client.put_object(Bucket=bucket, Key="k", Body=b"1")
    with pytest.raises(ClientError, match="404"):
        client.head_object(Bucket=bucket, Key="k")
    with pytest.raises(ClientError, match="SlowDown"):
        client.put_object(Bucket=bucket, Key="k", Body=b"2")
    client.put_object(Bucket=bucket, Key="k", Body=b"3")
    client.put_object(Bucket=bucket, Key="k", Body=b"4")
    assert [r.outcome for r in fault_proxy.requests if r.info.op == "PutObject"] == [
        "error",
        "error",
        "forwarded",
        "forwarded",
    ]
    assert fault_proxy.count(op="PutObject", outcome="error") == 2
    assert fault_proxy.count(op="HeadObject", outcome="forwarded") == 1


def test_random_faults_is_deterministic_per_seed() -> None:
    """random_faults decides the same for the same seed, differently for another, near `rate`."""

    def decisions(seed: int, rate: float = 0.3) -> list[Fault | None]:
        rule = random_faults(rate, TRANSIENT_ERRORS, seed)
        return [rule(_info(n)) for n in range(1000)]

    first = decisions(seed=1)
    assert first == decisions(seed=1)
    assert first != decisions(seed=2)
    assert 230 < sum(d is not None for d in first) < 370
    assert {d for d in first if d is not None} == set(TRANSIENT_ERRORS)
    assert decisions(seed=1, rate=0.0) == [None] * 1000
    assert None not in decisions(seed=1, rate=1.0)
    only_parts = random_faults(1.0, [SLOW_DOWN], seed=1, op="UploadPart")
    assert only_parts(_info(0, op="PutObject")) is None
    assert only_parts(_info(1, op="UploadPart")) == SLOW_DOWN


def test_random_faults_is_thread_safe() -> None:
    """Threads sharing a random_faults rule draw the same number of faults as one thread."""
    sequential = random_faults(0.5, [SLOW_DOWN], seed=3)
    expected = sum(sequential(_info(n)) is not None for n in range(4000))
    shared = random_faults(0.5, [SLOW_DOWN], seed=3)

    def draw(_: int) -> int:
        return sum(shared(_info(n)) is not None for n in range(500))

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(draw, range(8))) == expected


def test_random_faults_replay_over_http(
    client: BaseClient, bucket: str, fault_proxy: FaultProxy
) -> None:
    """The same seed gives the same faults, request for request, when a run is replayed."""

    def run() -> list[str]:
        fault_proxy.reset()
        fault_proxy.set_rule(random_faults(0.5, TRANSIENT_ERRORS, seed=7))
        for n in range(20):
            with suppress(ClientError):
                client.put_object(Bucket=bucket, Key=f"k{n}", Body=b"x")
        return [f"{r.outcome}:{r.status}" for r in fault_proxy.requests]

    first = run()
    assert first == run()
    assert "forwarded:200" in first
    assert any(outcome.startswith("error") for outcome in first)


def test_reset_clears_log_and_rule(
    client: BaseClient, bucket: str, fault_proxy: FaultProxy
) -> None:
    """reset() forgets the logged requests and the rule, while seq keeps counting."""
    fault_proxy.set_rule(always(ACCESS_DENIED))
    with pytest.raises(ClientError):
        client.put_object(Bucket=bucket, Key="k", Body=b"x")
    fault_proxy.reset()
    assert fault_proxy.requests == []
    client.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert [(r.info.seq, r.outcome) for r in fault_proxy.requests] == [(1, "forwarded")]


def test_concurrent_requests_all_arrive(
    client: BaseClient, s3: BaseClient, bucket: str, fault_proxy: FaultProxy
) -> None:
    """Sixteen uploads at once through the proxy all arrive intact."""
    bodies = {f"k{n}": os.urandom(256 * 1024) for n in range(16)}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=bodies[k]), bodies))
    for key, body in bodies.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    assert fault_proxy.count(op="PutObject") == 16


async def test_serves_async_client_on_the_tests_loop(bucket: str, fault_proxy: FaultProxy) -> None:
    """An aiobotocore client on the test's own event loop gets faults and data through the proxy."""
    fault_proxy.set_rule(fail_first(1, SLOW_DOWN))
    async with get_session().create_client(
        "s3",
        endpoint_url=fault_proxy.url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=AioConfig(retries={"total_max_attempts": 1}),
    ) as aio:
        with pytest.raises(ClientError, match="SlowDown"):
            await aio.put_object(Bucket=bucket, Key="k", Body=b"async")
        await aio.put_object(Bucket=bucket, Key="k", Body=b"async")
        got = await aio.get_object(Bucket=bucket, Key="k")
        async with got["Body"] as body:
            assert await body.read() == b"async"


def test_unreachable_upstream_gives_bad_gateway() -> None:
    """When the store cannot be reached the proxy answers 502 BadGateway."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with FaultProxy(f"http://127.0.0.1:{port}") as proxy, closing(s3_client(proxy.url)) as s3:
        with pytest.raises(ClientError) as raised:
            s3.head_bucket(Bucket="anything")
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 502
        assert proxy.requests[-1].status == 502


def test_aws_environment_is_isolated() -> None:
    """Tests see fake credentials, a fixed region and no AWS profile or config file."""
    assert os.environ["AWS_ACCESS_KEY_ID"] == ACCESS_KEY
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == SECRET_KEY
    assert os.environ["AWS_DEFAULT_REGION"] == REGION
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
    assert not Path(os.environ["AWS_CONFIG_FILE"]).exists()
    assert not Path(os.environ["AWS_SHARED_CREDENTIALS_FILE"]).exists()
    assert "AWS_PROFILE" not in os.environ
    assert "AWS_SESSION_TOKEN" not in os.environ


def test_delete_bucket_removes_objects_and_uploads(s3: BaseClient) -> None:
    """delete_bucket aborts unfinished uploads, deletes objects and the bucket; twice is fine."""
    name = f"test-{uuid.uuid4().hex}"
    s3.create_bucket(Bucket=name)
    for n in range(3):
        s3.put_object(Bucket=name, Key=f"k{n}", Body=b"x")
    s3.create_multipart_upload(Bucket=name, Key="unfinished")
    delete_bucket(s3, name)
    with pytest.raises(ClientError, match="404"):
        s3.head_bucket(Bucket=name)
    delete_bucket(s3, name)
