"""Soak: uploads through a proxy that breaks 30% of PUTs lose nothing and corrupt nothing.

The proxy answers 500/503/400-RequestTimeout, resets connections mid-body and flips bits of
bodies the store then keeps with a 200. Every job must end with the store holding exactly the
file's bytes, and no file may be deleted unless the store holds them. Each runs with the MD5
check and with the CRC32 one, for which the proxy checks the sent CRC32 as AWS S3 does. The
short runs are part of the default suite; the 1000-upload runs are marked slow.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from botocore.client import BaseClient
from faultproxy import TRANSIENT_ERRORS, Fault, FaultProxy, random_faults
from prometheus_client import CollectorRegistry
from s3fixtures import stored
from uploads import DURATION_COUNT, RETRIES, SUCCESS, Metrics, new_uploader, write_file

from recording_aio import UploadResult

FAULT_RATE = 0.3
SOAK_FAULTS = [*TRANSIENT_ERRORS, Fault.reset(), Fault.flip_bit()]
MAX_RETRIES = 12  # a request fails for good only after 13 faults in a row: p = 0.3**13 ~ 2e-7


@dataclass
class SoakReport:
    """What a soak run did and what it left behind."""

    uploads: int
    succeeded: int = 0
    failed: int = 0
    lost: int = 0  # neither an exact object nor the intact local file
    corrupt: int = 0  # an object whose bytes differ from the file's
    deleted_unverified: int = 0  # a local file gone without an exact object
    put_attempts: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    retries: dict[str, float] = field(default_factory=dict)
    most_attempts: int = 0
    seconds: float = 0.0

    @property
    def uncounted_attempts(self) -> int:
        """PUTs the store saw that the uploader did not count as attempts or retries."""
        return self.put_attempts - self.uploads - int(sum(self.retries.values()))

    def summary(self) -> str:
        return (
            f"soak: {self.uploads} uploads in {self.seconds:.1f} s: {self.succeeded} ok, "
            f"{self.failed} failed, {self.lost} lost, {self.corrupt} corrupt, "
            f"{self.deleted_unverified} deleted unverified; {self.put_attempts} PUT attempts, "
            f"faults {self.faults}, retries {self.retries}, most attempts for one job "
            f"{self.most_attempts}, attempts not counted by the uploader "
            f"{self.uncounted_attempts}"
        )


async def run_soak(
    count: int,
    seed: int,
    checksum: str,
    directory: Path,
    proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
) -> SoakReport:
    """Uploads `count` random files of 1 to 48 KiB through faults seeded with `seed`."""
    rng = random.Random(seed)
    files = [
        write_file(directory, f"call-{i:04}.wav", rng.randrange(1024, 48 * 1024), rng)
        for i in range(count)
    ]
    proxy.set_rule(random_faults(FAULT_RATE, SOAK_FAULTS, seed, op="PutObject"))
    proxy.checks_crc32 = checksum == "crc32"
    registry = CollectorRegistry()
    report = SoakReport(uploads=count)
    started = time.monotonic()
    async with new_uploader(
        proxy.url, registry, workers=8, queue_size=32, max_retries=MAX_RETRIES, checksum=checksum
    ) as up:
        handles = [await up.enqueue(f.job(bucket)) for f in files]
        outcomes = await asyncio.gather(*handles, return_exceptions=True)
    report.seconds = time.monotonic() - started

    for f, outcome in zip(files, outcomes, strict=True):
        if isinstance(outcome, UploadResult):
            report.succeeded += 1
            report.most_attempts = max(report.most_attempts, outcome.attempts)
        else:
            report.failed += 1
        body = stored(s3, bucket, f.job(bucket).key)
        exact = body == f.data
        report.corrupt += body is not None and not exact
        report.lost += not exact and not f.intact()
        report.deleted_unverified += not f.path.exists() and not exact

    puts = [r for r in proxy.requests if r.info.op == "PutObject"]
    report.put_attempts = len(puts)
    report.faults = dict(
        sorted(
            Counter(
                f"{r.outcome}-{r.status}" if r.outcome == "error" else r.outcome
                for r in puts
                if r.outcome != "forwarded"
            ).items()
        )
    )
    metrics = Metrics(registry)
    report.retries = dict(sorted(metrics.by_label(RETRIES, "reason").items()))
    assert metrics.value(SUCCESS) == report.succeeded
    assert metrics.value(DURATION_COUNT) == report.succeeded
    return report


def check(report: SoakReport) -> None:
    """Nothing lost, nothing corrupt, nothing deleted unverified, and the faults did happen."""
    print(report.summary())  # shown with -s or -rA
    assert report.lost == 0, report.summary()
    assert report.corrupt == 0, report.summary()
    assert report.deleted_unverified == 0, report.summary()
    assert report.succeeded == report.uploads, report.summary()
    assert report.faults, "the proxy injected no fault"
    assert report.retries.get("damaged", 0) > 0, "no flipped bit was caught"


@pytest.mark.parametrize("checksum", ["md5", "crc32"])
@pytest.mark.parametrize(
    ("uploads", "seed"),
    [
        pytest.param(60, 20240601, id="short"),
        pytest.param(1000, 1000, id="thousand", marks=pytest.mark.slow),
    ],
)
async def test_soak(
    uploads: int,
    seed: int,
    checksum: str,
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3: BaseClient,
    bucket: str,
    record_property: Callable[[str, object], None],
) -> None:
    """Uploads through 30% faults: every object exact, every deleted file verified."""
    report = await run_soak(uploads, seed, checksum, tmp_path, fault_proxy, s3, bucket)
    record_property("soak", report.summary())
    check(report)
