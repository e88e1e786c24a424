"""Nothing acknowledged is lost: SIGKILLed recorders and uploaders, store outages, shutdowns.

The crash tests run `upload_child.py`, which records calls and enqueues them through a fault
proxy, kill it at random moments, repair what it was recording, recover its spool with a new
uploader against a healthy store, and check every acknowledged job against the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from botocore.client import BaseClient
from faultproxy import (
    SERVICE_UNAVAILABLE,
    SLOW_DOWN,
    Fault,
    FaultProxy,
    RequestInfo,
    Rule,
    always,
    random_faults,
)
from prometheus_client import CollectorRegistry
from s3fixtures import REGION, delete_bucket, open_uploads, s3_client, stored
from upload_child import expected_pcm
from uploads import make_file, wait_until
from wavreaders import IN_PROCESS, check_wav

from recording_aio import (
    AsyncUploader,
    RecordingJob,
    UploadFailedError,
    find_unfinished,
    read_wav_info,
    repair_wav,
)
from recording_aio.wav import HEADER_SIZE

CHILD = Path(__file__).with_name("upload_child.py")
ACKED = re.compile(r"acked (\S+) ([0-9a-f]{64})")
MIB = 1 << 20
STALL = 0.3  # seconds the proxy holds a request before forwarding it


# -- helpers ---------------------------------------------------------------------------------


def object_keys(s3: BaseClient, bucket: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return keys


def spool_entries(spool_dir: Path) -> list[Path]:
    """Entries waiting in the spool and entries moved to dead/."""
    if not spool_dir.exists():
        return []
    return sorted(spool_dir.glob("*.job.json")) + sorted(spool_dir.glob("dead/*.job.json"))


def new_uploader(endpoint: str, spool_dir: Path, **kw: Any) -> AsyncUploader:
    options: dict[str, Any] = {
        "region_name": REGION,
        "registry": CollectorRegistry(),
        "workers": 4,
        "multipart_threshold": 5 * MIB,
        "part_size": 5 * MIB,
        "part_concurrency": 2,
        "backoff_base": 0.01,
        "backoff_max": 0.1,
    }
    options.update(kw)
    return AsyncUploader(endpoint_url=endpoint, spool_dir=spool_dir, **options)


async def drain_spool(endpoint: str, spool_dir: Path, timeout: float = 60.0) -> float:
    """Starts an uploader on the spool, waits until it has nothing left to do, shuts it down;
    returns how many jobs it recovered from the spool."""
    registry = CollectorRegistry()
    async with new_uploader(endpoint, spool_dir, registry=registry) as up:
        await asyncio.wait_for(up.join(), timeout)
    return registry.get_sample_value("recording_jobs_recovered_total", {"uploader": "default"}) or 0


# -- the crash rounds ------------------------------------------------------------------------


@dataclass
class CrashReport:
    """What one round (children killed, then a check) found."""

    kills: int = 0
    acked: int = 0
    recovered: int = 0
    repaired: int = 0
    empty: int = 0
    losses: list[str] = field(default_factory=list)

    def add(self, other: CrashReport) -> None:
        self.kills += other.kills
        self.acked += other.acked
        self.recovered += other.recovered
        self.repaired += other.repaired
        self.empty += other.empty
        self.losses.extend(other.losses)


def child_faults(seed: int) -> Rule:
    """Slow and flaky uploads: 503s, SlowDown, resets mid-body and stalls before forwarding."""
    faults = [SERVICE_UNAVAILABLE, SLOW_DOWN, Fault.reset(), Fault.stall(STALL, then_forward=True)]
    return random_faults(0.3, faults, seed)


def run_child(
    proxy_url: str, bucket: str, workdir: Path, seed: int, kill_after: float
) -> list[tuple[str, str]]:
    """Runs a child until `kill_after` seconds after it is ready, SIGKILLs it and returns the
    (key, sha256) of every job it acknowledged."""
    out_path = workdir / f"child-{seed}.out"
    err_path = workdir / f"child-{seed}.err"
    command = [
        sys.executable,
        str(CHILD),
        "--endpoint",
        proxy_url,
        "--bucket",
        bucket,
        "--spool",
        str(workdir / "spool"),
        "--recordings",
        str(workdir / "rec"),
        "--seed",
        str(seed),
    ]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while b"ready\n" not in out_path.read_bytes():
            if child.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"child {seed} did not start (exit {child.returncode}):\n"
                    + err_path.read_text(errors="replace")[-3000:]
                )
            time.sleep(0.02)
        time.sleep(kill_after)
        assert child.poll() is None, "child ended before the kill:\n" + err_path.read_text()[-3000:]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    acked = []
    for line in out_path.read_text().splitlines(keepends=True):
        match = ACKED.fullmatch(line.rstrip("\n"))
        if match and line.endswith("\n"):
            acked.append((match[1], match[2]))
    return acked


def check_unfinished(recordings: Path, report: CrashReport) -> None:
    """Every WAV left open by a kill is readable as it is and after repair_wav(), and holds
    a prefix of the signal the child recorded."""
    if not recordings.exists():
        return
    for info in find_unfinished(recordings, min_age_s=0):
        base = info.path.stem
        expected = expected_pcm(base, 0, info.num_frames)
        check_wav(info.path, expected, info.sample_rate, info.channels, IN_PROCESS)
        repaired = repair_wav(info.path)
        assert repaired.header_state == "final"
        assert repaired.num_frames == info.num_frames
        assert repaired.file_size == HEADER_SIZE + 2 * info.num_frames
        check_wav(info.path, expected, repaired.sample_rate, repaired.channels, IN_PROCESS)
        report.repaired += 1
    for path in recordings.glob("*.wav"):
        if path.stat().st_size:
            assert read_wav_info(path).header_state == "final", f"{path.name} was not repaired"


def crash_round(
    proxy: FaultProxy,
    moto_url: str,
    s3: BaseClient,
    bucket: str,
    workdir: Path,
    seeds: list[int],
    kill_window: tuple[float, float],
) -> CrashReport:
    """Kills one child per seed in a row on the same spool and recordings (each new child
    recovers what the last one left, under faults), then recovers against the healthy store
    and checks every acknowledged job."""
    report = CrashReport()
    acked: list[tuple[str, str]] = []
    recordings = workdir / "rec"
    for seed in seeds:
        proxy.set_rule(child_faults(seed))
        kill_after = random.Random(seed).uniform(*kill_window)
        acked += run_child(proxy.url, bucket, workdir, seed, kill_after)
        report.kills += 1
        # Requests the proxy was holding reach the store now; let them land before recovery.
        time.sleep(STALL + 0.2)
        check_unfinished(recordings, report)
    report.acked = len(acked)
    # A child killed between creating a file and writing its header leaves it empty: no audio.
    report.empty = sum(1 for p in recordings.glob("*.wav") if not p.stat().st_size)
    report.recovered = int(asyncio.run(drain_spool(moto_url, workdir / "spool")))

    for key, digest in acked:
        body = stored(s3, bucket, key)
        if body is None:
            report.losses.append(f"{key}: acknowledged but not in the store")
        elif hashlib.sha256(body).hexdigest() != digest:
            report.losses.append(f"{key}: the store holds other bytes than were acknowledged")
        if (recordings / key.rsplit("/", 1)[1]).exists():
            report.losses.append(f"{key}: uploaded but its local file remains")
    for key in object_keys(s3, bucket):
        if (recordings / key.rsplit("/", 1)[1]).exists():
            report.losses.append(f"{key}: in the store and still on disk")
    for upload in open_uploads(s3, bucket):
        report.losses.append(
            f"{upload['Key']}: multipart upload {upload['UploadId']} left open; requests: "
            + history(proxy, upload["Key"])
        )
    for entry in spool_entries(workdir / "spool"):
        report.losses.append(f"spool entry {entry.relative_to(workdir)} left behind")
    return report


def history(proxy: FaultProxy, key: str) -> str:
    """What the proxy saw for `key`: operation, what it did, status, upload id (shortened)."""
    steps = []
    for logged in proxy.requests:
        if logged.info.path.endswith("/" + key):
            upload = parse_qs(logged.info.query).get("uploadId", [""])[0][:6]
            steps.append(f"{logged.info.op}:{logged.outcome}:{logged.status}:{upload}")
    return " ".join(steps)


@pytest.mark.parametrize("seed", [101, 202, 303])
def test_sigkill_loses_nothing_acknowledged(
    seed: int,
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3_endpoint: str,
    s3: BaseClient,
    bucket: str,
    record_property: Callable[[str, object], None],
) -> None:
    """A child recording and uploading under faults is SIGKILLed at a random moment: every job
    it acknowledged ends up in the store byte for byte, nothing is left open or spooled, and
    its unfinished WAVs are readable after repair."""
    report = crash_round(fault_proxy, s3_endpoint, s3, bucket, tmp_path, [seed], (1.0, 3.0))
    record_property("crash", report)
    print(f"\ncrash seed={seed}: {report}")
    assert report.kills == 1
    assert report.losses == [], "\n".join(report.losses)


@pytest.mark.slow
def test_sigkill_soak(
    tmp_path: Path,
    moto_server: str,
    record_property: Callable[[str, object], None],
) -> None:
    """Hundreds of SIGKILLs (several children at once, up to three killed in a row on one
    spool before each check) lose no acknowledged job and leave nothing behind."""
    lanes, budget_s, target_kills = 4, 480.0, 300
    deadline = time.monotonic() + budget_s
    total = CrashReport()
    lock = threading.Lock()

    def lane(number: int) -> None:
        rng = random.Random(number)
        with FaultProxy(moto_server) as proxy, closing(s3_client(moto_server)) as s3:
            round_number = 0
            while time.monotonic() < deadline:
                with lock:
                    if total.kills >= target_kills:
                        return
                round_number += 1
                bucket = f"soak-{uuid.uuid4().hex}"
                s3.create_bucket(Bucket=bucket)
                workdir = tmp_path / f"lane{number}" / f"round{round_number}"
                workdir.mkdir(parents=True)
                seeds = [number * 100_000 + round_number * 10 + i for i in range(rng.randint(1, 3))]
                try:
                    report = crash_round(
                        proxy, moto_server, s3, bucket, workdir, seeds, (0.05, 2.5)
                    )
                finally:
                    proxy.reset()
                    delete_bucket(s3, bucket)
                with lock:
                    total.add(report)

    with ThreadPoolExecutor(lanes) as pool:
        for done in [pool.submit(lane, n) for n in range(lanes)]:
            done.result()
    record_property("crash", total)
    print(f"\ncrash soak: {total}")
    assert total.kills >= 100
    assert total.losses == [], "\n".join(total.losses)


# -- store outage ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["outlive", "fail-then-recover"])
async def test_outage_loses_nothing(
    mode: str,
    tmp_path: Path,
    fault_proxy: FaultProxy,
    bucket: str,
    s3: BaseClient,
) -> None:
    """The store answers 503 to everything for 2 s: no local file is deleted meanwhile, and in
    the end every job is uploaded, by retries that outlive the outage or by the next start."""
    spool_dir = tmp_path / "spool"
    files = [make_file(tmp_path / "rec", f"o{n}.wav", 2048) for n in range(8)]
    outage_ends = time.monotonic() + 2.0

    def outage(info: RequestInfo) -> Fault | None:
        return SERVICE_UNAVAILABLE if time.monotonic() < outage_ends else None

    fault_proxy.set_rule(outage)
    retries = {"max_retries": 40, "backoff_max": 0.3} if mode == "outlive" else {"max_retries": 1}
    up = new_uploader(fault_proxy.url, spool_dir, workers=2, **retries)
    await up.start()
    try:
        handles = [await up.enqueue(RecordingJob(p, bucket, f"out/{p.name}")) for p, _ in files]
        checks = 0
        while time.monotonic() < outage_ends - 0.05:
            missing = [p.name for p, _ in files if not p.exists()]
            assert missing == [], f"deleted during the outage: {missing}"
            assert object_keys(s3, bucket) == []
            checks += 1
            await asyncio.sleep(0.05)
        assert checks >= 10
        outcomes = await asyncio.gather(*handles, return_exceptions=True)
    finally:
        await up.shutdown(10)
    assert fault_proxy.count(outcome="error") > len(files)
    if mode == "outlive":
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        assert failures == [], "retries were set to outlive the outage"
    else:
        assert all(isinstance(o, UploadFailedError) for o in outcomes), outcomes
        assert {o.reason for o in outcomes if isinstance(o, UploadFailedError)} == {
            "retries_exhausted"
        }
        assert all(p.read_bytes() == data for p, data in files)
        assert len(spool_entries(spool_dir)) == len(files)
        assert await drain_spool(fault_proxy.url, spool_dir) == len(files)
    for path, data in files:
        assert stored(s3, bucket, f"out/{path.name}") == data
        assert not path.exists()
    assert spool_entries(spool_dir) == []


# -- shutdown with a backlog -----------------------------------------------------------------


async def test_shutdown_with_backlog_keeps_everything_for_next_start(
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3_endpoint: str,
    bucket: str,
    s3: BaseClient,
) -> None:
    """Fifty jobs queued behind stalled uploads: shutdown(timeout=2) returns in time, keeps
    every file and spool entry, and the next start uploads them all."""
    spool_dir = tmp_path / "spool"
    files = [make_file(tmp_path / "rec", f"b{n:02}.wav", 2048) for n in range(50)]
    fault_proxy.set_rule(always(Fault.stall(30), op="PutObject"))
    up = new_uploader(fault_proxy.url, spool_dir, workers=2, queue_size=64)
    await up.start()
    handles = [await up.enqueue(RecordingJob(p, bucket, f"bl/{p.name}")) for p, _ in files]
    await wait_until(
        "both workers to be stuck", lambda: fault_proxy.count(op="PutObject") == 2, timeout=30.0
    )
    started = time.monotonic()
    await up.shutdown(timeout=2)
    elapsed = time.monotonic() - started
    assert elapsed < 2 + 3, f"shutdown(timeout=2) took {elapsed:.1f}s"
    outcomes = await asyncio.gather(*handles, return_exceptions=True)
    assert all(isinstance(o, UploadFailedError) and o.reason == "shutdown" for o in outcomes)
    assert all(p.read_bytes() == data for p, data in files)
    assert len(spool_entries(spool_dir)) == 50
    assert object_keys(s3, bucket) == []

    fault_proxy.set_rule(None)
    async with new_uploader(s3_endpoint, spool_dir) as up:
        assert len(up.recovered) == 50
        results = await asyncio.gather(*up.recovered)
    assert sorted(r.key for r in results) == sorted(f"bl/{p.name}" for p, _ in files)
    for path, data in files:
        assert stored(s3, bucket, f"bl/{path.name}") == data
        assert not path.exists()
    assert spool_entries(spool_dir) == []
