"""The durable spool: what enqueue persists, when it is removed, and what start() recovers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Awaitable
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import pytest
from botocore.client import BaseClient
from faultproxy import ACCESS_DENIED, SERVICE_UNAVAILABLE, Fault, FaultProxy, always, fail_first
from prometheus_client import CollectorRegistry
from s3fixtures import REGION, stored
from uploads import make_file, wait_until

from recording_aio import (
    AsyncUploader,
    QueueFullError,
    RecordingError,
    RecordingJob,
    SpoolLockedError,
    UploadFailedError,
    UploadResult,
)
from recording_aio.spool import Spool, SpoolEntry, new_entry

Submit = Literal["enqueue", "enqueue_nowait", "enqueue_threadsafe"]


# -- helpers ---------------------------------------------------------------------------------


def entries(spool_dir: Path) -> dict[Path, dict[str, Any]]:
    """The spool's entries (not those in dead/), keyed by the job's local path."""
    found: dict[Path, dict[str, Any]] = {}
    for path in spool_dir.glob("*.job.json"):
        data = json.loads(path.read_bytes())
        found[Path(data["job"]["local_path"])] = data
    return found


def stray_files(spool_dir: Path) -> list[str]:
    """Files in the spool that are neither entries nor its lock (temp files, for one)."""
    return sorted(
        p.name
        for p in spool_dir.iterdir()
        if p.is_file() and p.name != ".lock" and not p.name.endswith(".job.json")
    )


def make_uploader(
    endpoint: str, spool_dir: Path | None, registry: CollectorRegistry | None = None, **kw: Any
) -> AsyncUploader:
    """An uploader on `endpoint` with quick backoff and a registry of its own."""
    options: dict[str, Any] = {"backoff_base": 0.01, "backoff_max": 0.05, "max_retries": 2}
    options.update(kw)
    return AsyncUploader(
        endpoint_url=endpoint,
        region_name=REGION,
        spool_dir=spool_dir,
        registry=registry or CollectorRegistry(),
        **options,
    )


def metric(registry: CollectorRegistry, name: str, uploader: str = "default") -> float:
    """A sample of the uploader's metrics (0 when never touched)."""
    return registry.get_sample_value(name, {"uploader": uploader}) or 0.0


def write_entry(spool_dir: Path, job: RecordingJob, size: int, **fields: Any) -> SpoolEntry:
    """Spools a job the way a previous run would have left it."""
    spool = Spool.open(spool_dir)
    try:
        entry = replace(new_entry(job, size), **fields)
        spool.save(entry)
    finally:
        spool.close()
    return entry


async def submit(
    up: AsyncUploader, job: RecordingJob, how: Submit, spool_dir: Path
) -> tuple[Awaitable[UploadResult], dict[Path, dict[str, Any]]]:
    """Enqueues `job` the given way; returns what to await for the result and the spool's
    entries as they were the moment the call returned."""
    if how == "enqueue":
        handle = await up.enqueue(job)
        return handle, entries(spool_dir)
    if how == "enqueue_nowait":
        handle = up.enqueue_nowait(job)
        return handle, entries(spool_dir)

    def from_thread() -> tuple[Future[UploadResult], dict[Path, dict[str, Any]]]:
        future = up.enqueue_threadsafe(job)
        return future, entries(spool_dir)

    future, seen = await asyncio.to_thread(from_thread)
    return asyncio.wrap_future(future), seen


# -- what enqueue persists -------------------------------------------------------------------


@pytest.mark.parametrize("how", ["enqueue", "enqueue_nowait", "enqueue_threadsafe"])
async def test_enqueue_persists_entry_before_returning(
    how: Submit,
    tmp_path: Path,
    fault_proxy: FaultProxy,
    bucket: str,
    s3: BaseClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each enqueue method has written a private entry when it returns; it goes only after the
    verified upload and the deletion of the local file."""
    spool_dir = tmp_path / "spool"
    path, data = make_file(tmp_path / "rec", "a.wav")
    job = RecordingJob(path, bucket, "calls/a.wav", metadata={"call": "a"})
    seen_at_removal: list[tuple[bool, bytes | None]] = []
    original_remove = Spool.remove

    def remove(self: Spool, entry: SpoolEntry) -> None:
        seen_at_removal.append((path.exists(), stored(s3, bucket, job.key)))
        original_remove(self, entry)

    monkeypatch.setattr(Spool, "remove", remove)
    fault_proxy.set_rule(always(Fault.stall(0.3, then_forward=True), op="PutObject"))
    async with make_uploader(fault_proxy.url, spool_dir) as up:
        waiter, seen = await submit(up, job, how, spool_dir)
        assert list(seen) == [path], "the entry must exist when the call returns"
        (entry_file,) = spool_dir.glob("*.job.json")
        assert stat.S_IMODE(entry_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(spool_dir.stat().st_mode) == 0o700
        assert stray_files(spool_dir) == []
        record = seen[path]
        assert record["version"] == 1
        assert record["attempts"] == 0
        assert record["last_error"] is None
        assert record["upload_id"] is None
        assert record["size_bytes"] == len(data)
        assert record["job"]["bucket"] == bucket
        assert record["job"]["key"] == "calls/a.wav"
        assert record["job"]["metadata"] == {"call": "a"}
        result = await waiter
    assert result.size_bytes == len(data)
    assert seen_at_removal == [(False, data)], "entry removed before upload or file deletion"
    assert list(spool_dir.glob("*.job.json")) == []
    assert stray_files(spool_dir) == []
    assert not path.exists()
    assert stored(s3, bucket, job.key) == data


# -- failing for good, and the next start ----------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "attempts", "reason", "error_text"),
    [
        (SERVICE_UNAVAILABLE, 3, "retries_exhausted", "ServiceUnavailable"),
        (ACCESS_DENIED, 1, "access_denied", "AccessDenied"),
        (Fault.bad_etag(), 3, "retries_exhausted", "ChecksumMismatchError"),
    ],
    ids=["server-error", "access-denied", "unverified"],
)
async def test_failed_job_keeps_entry_and_succeeds_at_next_start(
    fault: Fault,
    attempts: int,
    reason: str,
    error_text: str,
    tmp_path: Path,
    fault_proxy: FaultProxy,
    s3_endpoint: str,
    bucket: str,
    s3: BaseClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A job that fails for good keeps file and entry (attempts, last_error updated); the next
    start against a healthy store uploads it, and the result counts every attempt."""
    spool_dir = tmp_path / "spool"
    path, data = make_file(tmp_path / "rec", "b.wav")
    job = RecordingJob(path, bucket, "calls/b.wav")
    fault_proxy.set_rule(always(fault, op="PutObject"))
    async with make_uploader(fault_proxy.url, spool_dir, max_retries=2) as up:
        handle = await up.enqueue(job)
        with pytest.raises(UploadFailedError) as failed:
            await handle
    assert failed.value.reason == reason
    assert failed.value.attempts == attempts
    assert fault_proxy.count(op="PutObject") == attempts
    assert path.read_bytes() == data
    record = entries(spool_dir)[path]
    assert record["attempts"] == attempts
    assert error_text in record["last_error"]

    registry = CollectorRegistry()
    async with make_uploader(s3_endpoint, spool_dir, registry) as up:
        assert len(up.recovered) == 1
        result = await up.recovered[0]
    assert result.attempts == attempts + 1
    assert result.size_bytes == len(data)
    assert stored(s3, bucket, job.key) == data
    assert not path.exists()
    assert entries(spool_dir) == {}
    assert metric(registry, "recording_jobs_recovered_total") == 1
    assert metric(registry, "recording_jobs_enqueued_total") == 0
    assert metric(registry, "recording_jobs_success_total") == 1


# -- rejected and cancelled enqueues leave nothing behind --------------------------------------


async def test_queue_full_leaves_no_entry(
    tmp_path: Path, fault_proxy: FaultProxy, bucket: str, s3: BaseClient
) -> None:
    """QueueFullError from enqueue_nowait or enqueue_threadsafe leaves no entry, no temp file,
    and the file in place."""
    spool_dir = tmp_path / "spool"
    files = [make_file(tmp_path / "rec", f"{n}.wav") for n in range(3)]
    jobs = [RecordingJob(p, bucket, f"q/{p.name}") for p, _ in files]
    fault_proxy.set_rule(fail_first(1, Fault.stall(1.0, then_forward=True), op="PutObject"))
    async with make_uploader(fault_proxy.url, spool_dir, workers=1, queue_size=1) as up:
        first = up.enqueue_nowait(jobs[0])
        await wait_until("the first job to be in flight", lambda: up.in_flight == 1)
        second = up.enqueue_nowait(jobs[1])
        assert up.qsize() == 1
        with pytest.raises(QueueFullError):
            up.enqueue_nowait(jobs[2])
        assert set(entries(spool_dir)) == {files[0][0], files[1][0]}
        assert stray_files(spool_dir) == []
        with pytest.raises(QueueFullError):
            await asyncio.to_thread(up.enqueue_threadsafe, jobs[2])
        assert set(entries(spool_dir)) == {files[0][0], files[1][0]}
        assert stray_files(spool_dir) == []
        assert files[2][0].read_bytes() == files[2][1]
        await first
        await second
    assert entries(spool_dir) == {}
    assert stored(s3, bucket, jobs[2].key) is None
    assert files[2][0].read_bytes() == files[2][1]


async def test_enqueue_cancelled_while_waiting_for_room_leaves_no_entry(
    tmp_path: Path, fault_proxy: FaultProxy, bucket: str, s3: BaseClient
) -> None:
    """Cancelling `await enqueue` that waits for room removes the entry it had written."""
    spool_dir = tmp_path / "spool"
    files = [make_file(tmp_path / "rec", f"{n}.wav") for n in range(3)]
    jobs = [RecordingJob(p, bucket, f"c/{p.name}") for p, _ in files]
    fault_proxy.set_rule(fail_first(1, Fault.stall(1.0, then_forward=True), op="PutObject"))
    async with make_uploader(fault_proxy.url, spool_dir, workers=1, queue_size=1) as up:
        first = await up.enqueue(jobs[0])
        await wait_until("the first job to be in flight", lambda: up.in_flight == 1)
        second = await up.enqueue(jobs[1])
        third = asyncio.create_task(up.enqueue(jobs[2]))
        await wait_until("the third job to be spooled", lambda: len(entries(spool_dir)) == 3)
        await asyncio.sleep(0.05)
        assert not third.done(), "enqueue must wait for room in the full queue"
        third.cancel()
        with pytest.raises(asyncio.CancelledError):
            await third
        assert set(entries(spool_dir)) == {files[0][0], files[1][0]}
        assert stray_files(spool_dir) == []
        await first
        await second
    assert entries(spool_dir) == {}
    assert stored(s3, bucket, jobs[2].key) is None
    assert files[2][0].read_bytes() == files[2][1]


async def test_enqueue_cancelled_while_persisting_leaves_no_entry(
    tmp_path: Path,
    s3_endpoint: str,
    bucket: str,
    s3: BaseClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cancelling `await enqueue` during the entry's fsync removes the entry once written."""
    spool_dir = tmp_path / "spool"
    path, data = make_file(tmp_path / "rec", "slow.wav")
    job = RecordingJob(path, bucket, "c/slow.wav")
    saved = threading.Event()
    original_save = Spool.save

    def slow_save(self: Spool, entry: SpoolEntry) -> None:
        if entry.job.local_path == path:
            time.sleep(0.3)
        original_save(self, entry)
        if entry.job.local_path == path:
            saved.set()

    monkeypatch.setattr(Spool, "save", slow_save)
    async with make_uploader(s3_endpoint, spool_dir) as up:
        task = asyncio.create_task(up.enqueue(job))
        await asyncio.sleep(0.1)
        assert not saved.is_set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_until("the entry to be written", saved.is_set)
        await wait_until("the entry to be removed again", lambda: not entries(spool_dir))
        await asyncio.sleep(0.2)
        assert entries(spool_dir) == {}
        assert up.qsize() == 0
        assert up.in_flight == 0
    assert stray_files(spool_dir) == []
    assert stored(s3, bucket, job.key) is None
    assert path.read_bytes() == data


# -- what start() finds in the spool ---------------------------------------------------------


async def test_start_skips_corrupt_and_foreign_files(
    tmp_path: Path,
    s3_endpoint: str,
    bucket: str,
    s3: BaseClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Corrupt JSON, wrong versions and foreign files are logged and skipped, a leftover temp
    file is removed, and the good entry next to them is uploaded."""
    spool_dir = tmp_path / "spool"
    path, data = make_file(tmp_path / "rec", "good.wav")
    good = write_entry(spool_dir, RecordingJob(path, bucket, "s/good.wav"), len(data))
    future_version = {**good.to_json(), "id": "future", "version": 99}
    bad = {
        "corrupt.job.json": b'{"version": 1, "id": ',
        "empty.job.json": b"",
        "binary.job.json": b"\xff\xfe\x00\x81",
        "array.job.json": b"[1, 2, 3]",
        "null.job.json": b"null",
        "string.job.json": b'"a job"',
        "future.job.json": json.dumps(future_version).encode(),
        "missing-fields.job.json": b'{"version": 1, "id": "x"}',
        "bad-job.job.json": json.dumps({**good.to_json(), "job": "nope"}).encode(),
        "bad-size.job.json": json.dumps({**good.to_json(), "size_bytes": "big"}).encode(),
    }
    for name, content in bad.items():
        (spool_dir / name).write_bytes(content)
    (spool_dir / "README.txt").write_text("not a job\n")
    (spool_dir / "folder.job.json").mkdir()
    (spool_dir / ".0123abcd.tmp").write_bytes(b'{"version": 1')

    caplog.set_level(logging.WARNING, logger="recording_aio")
    async with make_uploader(s3_endpoint, spool_dir) as up:
        await asyncio.wait_for(up.join(), 30)
    assert stored(s3, bucket, "s/good.wav") == data
    assert not path.exists()
    assert not (spool_dir / ".0123abcd.tmp").exists()
    assert (spool_dir / "README.txt").read_text() == "not a job\n"
    for name, content in bad.items():
        assert (spool_dir / name).read_bytes() == content, f"{name} must be left for an operator"
        assert any(name in r.getMessage() for r in caplog.records), f"{name} was not logged"
    assert not any(os.path.exists(spool_dir / "dead" / name) for name in bad), (
        "unreadable entries are skipped, not buried"
    )


async def test_second_uploader_on_same_spool_is_refused(
    tmp_path: Path, s3_endpoint: str, bucket: str, s3: BaseClient
) -> None:
    """While an uploader runs, another on its spool_dir gets SpoolLockedError (a RecordingError);
    after it shut down, a new one starts and works."""
    spool_dir = tmp_path / "spool"
    first = make_uploader(s3_endpoint, spool_dir)
    await first.start()
    try:
        second = make_uploader(s3_endpoint, spool_dir)
        with pytest.raises(SpoolLockedError) as locked:
            await second.start()
        assert isinstance(locked.value, RecordingError)
        assert str(spool_dir) in str(locked.value)
    finally:
        await first.shutdown(5)
    path, data = make_file(tmp_path / "rec", "after.wav")
    async with make_uploader(s3_endpoint, spool_dir) as third:
        await (await third.enqueue(RecordingJob(path, bucket, "l/after.wav")))
    assert stored(s3, bucket, "l/after.wav") == data


async def test_spooled_job_without_local_file(
    tmp_path: Path,
    s3_endpoint: str,
    bucket: str,
    s3: BaseClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At start, an entry whose file is gone is dropped if the store holds an object of its
    size (a crash between delete and unspool), and moved to dead/ otherwise; the jobs with
    files are recovered and counted."""
    spool_dir = tmp_path / "spool"
    rec = tmp_path / "rec"
    done_path = rec / "done.wav"
    s3.put_object(Bucket=bucket, Key="m/done.wav", Body=b"x" * 1000)
    done = write_entry(spool_dir, RecordingJob(done_path, bucket, "m/done.wav"), 1000)
    lost = write_entry(spool_dir, RecordingJob(rec / "lost.wav", bucket, "m/lost.wav"), 1000)
    s3.put_object(Bucket=bucket, Key="m/other.wav", Body=b"x" * 999)
    other = write_entry(spool_dir, RecordingJob(rec / "other.wav", bucket, "m/other.wav"), 1000)
    present = []
    for name in ("p1.wav", "p2.wav"):
        path, data = make_file(rec, name)
        write_entry(spool_dir, RecordingJob(path, bucket, f"m/{name}"), len(data))
        present.append((path, data))

    registry = CollectorRegistry()
    async with make_uploader(s3_endpoint, spool_dir, registry) as up:
        results = [await handle for handle in up.recovered]
        await asyncio.wait_for(up.join(), 30)
    assert sorted(r.key for r in results) == ["m/p1.wav", "m/p2.wav"]
    assert metric(registry, "recording_jobs_recovered_total") == 2
    assert metric(registry, "recording_jobs_enqueued_total") == 0
    for path, data in present:
        assert stored(s3, bucket, f"m/{path.name}") == data
        assert not path.exists()
    assert entries(spool_dir) == {}
    dead = spool_dir / "dead"
    assert stat.S_IMODE(dead.stat().st_mode) == 0o700
    buried = {p.name: json.loads(p.read_bytes()) for p in dead.glob("*.job.json")}
    assert set(buried) == {f"{lost.id}.job.json", f"{other.id}.job.json"}
    assert f"{done.id}.job.json" not in buried
    for record in buried.values():
        assert record["last_error"] == "local file missing"
    assert stored(s3, bucket, "m/done.wav") == b"x" * 1000
    assert stored(s3, bucket, "m/other.wav") == b"x" * 999


@pytest.mark.parametrize("fault", ["reset-once", "unavailable"])
async def test_missing_file_check_survives_store_errors(
    fault: str, tmp_path: Path, fault_proxy: FaultProxy, bucket: str, s3: BaseClient
) -> None:
    """The store check of an entry without its file is retried, and when the store cannot
    answer the entry stays in the spool (not in dead/) for the next start; start() never
    fails over it."""
    spool_dir = tmp_path / "spool"
    s3.put_object(Bucket=bucket, Key="m/done.wav", Body=b"y" * 500)
    write_entry(spool_dir, RecordingJob(tmp_path / "rec" / "done.wav", bucket, "m/done.wav"), 500)
    if fault == "reset-once":
        fault_proxy.set_rule(fail_first(1, Fault.reset(), op="HeadObject"))
        async with make_uploader(fault_proxy.url, spool_dir):
            pass
        assert fault_proxy.count(op="HeadObject") == 2
    else:
        fault_proxy.set_rule(always(SERVICE_UNAVAILABLE, op="HeadObject"))
        async with make_uploader(fault_proxy.url, spool_dir, max_retries=1):
            pass
        assert fault_proxy.count(op="HeadObject") == 2
        assert len(list(spool_dir.glob("*.job.json"))) == 1
        assert list(spool_dir.glob("dead/*")) == []
        fault_proxy.set_rule(None)
        async with make_uploader(fault_proxy.url, spool_dir):
            pass
    assert list(spool_dir.glob("*.job.json")) == []
    assert list(spool_dir.glob("dead/*")) == []
