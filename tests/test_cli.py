"""The command line, run as a child process: inspect, repair, upload and recover."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import socket
import subprocess
import sys
import wave
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.client import BaseClient
from faultproxy import FaultProxy
from prometheus_client import CollectorRegistry

from recording_aio import (
    AsyncUploader,
    RecordingJob,
    UploadFailedError,
    build_s3_key,
    read_wav_info,
)
from recording_aio.__main__ import main
from recording_aio.wav import HEADER_SIZE, build_header

MAY_1 = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
OLD = 7200.0  # seconds: older than repair's --min-age


def cli_env(endpoint: str | None = None) -> dict[str, str]:
    """The child's environment: fake credentials and region, no proxy, no AWS config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - moto accepts any key
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env


def run(*args: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Runs `python -m recording_aio ARGS` and captures its output."""
    return subprocess.run(
        [sys.executable, "-m", "recording_aio", *map(str, args)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
        check=False,
        **kwargs,
    )


def assert_clean_errors(stderr: str) -> None:
    """stderr holds only `recording-aio: error: ...` lines, never a traceback."""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert lines
    assert all(line.startswith("recording-aio: error: ") for line in lines), stderr


def pcm(frames: int, channels: int = 1, seed: int = 0) -> bytes:
    """Whole frames of a varied 16-bit signal."""
    return b"".join(
        ((i * 7919 + seed) % 65536 - 32768).to_bytes(2, "little", signed=True)
        for i in range(frames * channels)
    )


def write_final(path: Path, frames: int, rate: int = 16000, channels: int = 1) -> Path:
    """A finished WAV, written by Python's wave module."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm(frames, channels, seed=len(path.name)))
    return path


def write_crashed(path: Path, frames: int, torn: int = 0, channels: int = 1) -> Path:
    """What a crash leaves: placeholder sizes, whole frames, then `torn` bytes of one more."""
    path.write_bytes(build_header(8000, channels) + pcm(frames, channels) + b"\x7f" * torn)
    return path


def age(path: Path, seconds: float) -> None:
    """Sets the file's modification time `seconds` into the past."""
    when = path.stat().st_mtime - seconds
    os.utime(path, (when, when))


def set_mtime(path: Path, when: datetime) -> None:
    """Sets the file's modification time."""
    os.utime(path, (when.timestamp(), when.timestamp()))


def stored(s3: BaseClient, bucket: str, key: str) -> bytes:
    """The bytes of an object."""
    body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


# -- help and usage ------------------------------------------------------------------------


def test_console_script_help() -> None:
    """The installed `recording-aio` script runs main(); its --help lists the commands."""
    script = Path(sys.executable).with_name("recording-aio")
    if not script.exists():
        pytest.skip("the package is not installed with its console script")
    result = subprocess.run(
        [script, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: recording-aio ")
    assert all(c in result.stdout for c in ("inspect", "repair", "upload", "recover"))


@pytest.mark.parametrize("command", ["inspect", "repair", "upload", "recover"])
def test_help_of_each_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`COMMAND --help` returns 0 and prints usage, examples and exit codes."""
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: recording-aio {command} ")
    assert "examples:" in out
    assert "exit status:" in out


@pytest.mark.parametrize(
    "args",
    [[], ["upload", "x.wav"], ["upload", "--bucket", "b", "--workers", "0", "x.wav"]],
    ids=["no-command", "no-bucket", "zero-workers"],
)
def test_usage_errors_return_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A missing command, a missing option or a bad value returns 2 with a usage message."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "error:" in err
    assert "Traceback" not in err


# -- inspect -------------------------------------------------------------------------------


def test_inspect_final_file(tmp_path: Path) -> None:
    """inspect reports format, rate, channels, bits, frames, duration, size and a final header."""
    path = write_final(tmp_path / "call.wav", 24000, rate=16000, channels=2)
    text = run("inspect", path)
    assert text.returncode == 0, text.stderr
    assert "PCM WAV, 16-bit, 2 channels, 16000 Hz" in text.stdout
    assert "24000 (1.500 s)" in text.stdout
    assert "header    final" in text.stdout
    doc = json.loads(run("inspect", "--json", path).stdout)
    assert doc["ok"] is True
    assert doc["files"] == [
        {
            "path": str(path),
            "format": "wav",
            "encoding": "pcm",
            "sample_rate": 16000,
            "channels": 2,
            "bits_per_sample": 16,
            "num_frames": 24000,
            "duration_s": 1.5,
            "size_bytes": HEADER_SIZE + 24000 * 4,
            "data_offset": HEADER_SIZE,
            "data_bytes": 24000 * 4,
            "header_state": "final",
        }
    ]


def test_inspect_crashed_file(tmp_path: Path) -> None:
    """A crashed recording shows a placeholder header and only its whole frames."""
    path = write_crashed(tmp_path / "crashed.wav", 4000, torn=1)
    result = run("inspect", path)
    assert result.returncode == 0
    assert "placeholder" in result.stdout
    assert "4000 (0.500 s)" in result.stdout
    assert "recording-aio repair" in result.stdout


def test_inspect_non_wav_exits_1_and_goes_on(tmp_path: Path) -> None:
    """A file that is not a WAV is reported on one line, the others are still inspected."""
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    good = write_final(tmp_path / "good.wav", 800)
    result = run("inspect", bad, good)
    assert result.returncode == 1
    assert_clean_errors(result.stderr)
    assert len(result.stderr.splitlines()) == 1
    assert str(bad) in result.stderr
    assert str(good) in result.stdout
    doc = json.loads(run("inspect", "--json", bad, good).stdout)
    assert doc["ok"] is False
    assert [e["path"] for e in doc["errors"]] == [str(bad)]
    assert [f["path"] for f in doc["files"]] == [str(good)]


# -- repair --------------------------------------------------------------------------------


def test_repair_file_drops_the_torn_frame(tmp_path: Path) -> None:
    """repair makes the header final, keeps every whole frame and truncates the torn one."""
    path = write_crashed(tmp_path / "crashed.wav", 3000, torn=3, channels=2)
    result = run("repair", "--json", path)
    assert result.returncode == 0, result.stderr
    [report] = json.loads(result.stdout)["files"]
    assert report["action"] == "repaired"
    assert (report["header_before"], report["header_after"]) == ("placeholder", "final")
    assert (report["frames_before"], report["frames_after"]) == (3000, 3000)
    assert report["bytes_truncated"] == 3
    info = read_wav_info(path)
    assert (info.header_state, info.num_frames) == ("final", 3000)
    assert path.stat().st_size == HEADER_SIZE + 3000 * 4
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() == 3000
        assert w.readframes(3000) == pcm(3000, 2)


def test_repair_dry_run_changes_nothing(tmp_path: Path) -> None:
    """--dry-run says what it would do and leaves the file byte for byte as it was."""
    path = write_crashed(tmp_path / "crashed.wav", 1000, torn=1)
    before = path.read_bytes(), path.stat().st_mtime_ns
    result = run("repair", "--dry-run", path)
    assert result.returncode == 0
    assert "would repair" in result.stdout
    assert "1 byte would be truncated" in result.stdout
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_repair_directory_skips_young_and_final_files(tmp_path: Path) -> None:
    """In a directory only old unfinished WAVs are repaired; live, final and non-WAV files stay."""
    old = write_crashed(tmp_path / "old.wav", 2000, torn=1)
    age(old, OLD)
    young = write_crashed(tmp_path / "live.wav", 2000, torn=1)
    done = write_final(tmp_path / "done.wav", 500)
    age(done, OLD)
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio")
    age(junk, OLD)
    untouched = {p: p.read_bytes() for p in (young, done, junk)}
    result = run("repair", "--json", "--min-age", "60", tmp_path)
    assert result.returncode == 0, result.stderr
    assert [f["path"] for f in json.loads(result.stdout)["files"]] == [str(old)]
    assert read_wav_info(old).header_state == "final"
    assert read_wav_info(old).num_frames == 2000
    assert {p: p.read_bytes() for p in untouched} == untouched


def test_repair_non_wav_file_exits_1(tmp_path: Path) -> None:
    """A named file that is not a WAV is reported and left untouched; the others are repaired."""
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00\x00\x00AVI junk")
    crashed = write_crashed(tmp_path / "crashed.wav", 100)
    result = run("repair", junk, crashed)
    assert result.returncode == 1
    assert_clean_errors(result.stderr)
    assert junk.read_bytes() == b"RIFF\x00\x00\x00\x00AVI junk"
    assert read_wav_info(crashed).header_state == "final"


# -- upload --------------------------------------------------------------------------------


def backlog(directory: Path, count: int) -> list[Path]:
    """`count` finished WAVs of different lengths, all last modified on MAY_1."""
    directory.mkdir(exist_ok=True)
    paths = [write_final(directory / f"call-{i}.wav", 1000 * (i + 1)) for i in range(count)]
    for path in paths:
        set_mtime(path, MAY_1)
    return paths


def test_upload_backlog(tmp_path: Path, s3_endpoint: str, s3: BaseClient, bucket: str) -> None:
    """Each file lands at build_s3_key(prefix, stem, suffix, mtime) with its exact bytes."""
    paths = backlog(tmp_path / "rec", 3)
    contents = {p: p.read_bytes() for p in paths}
    result = run(
        "upload", "--json", "--bucket", bucket, "--prefix", "/prod/eu/",
        "--endpoint-url", s3_endpoint, "--workers", "2", *paths,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress line when stderr is not a terminal
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert (doc["total"], doc["uploaded"], doc["failed"], doc["skipped"]) == (3, 3, 0, 0)
    assert doc["bytes_uploaded"] == sum(map(len, contents.values()))
    for path, data in contents.items():
        key = build_s3_key("prod/eu", path.stem, "wav", t=MAY_1)
        assert key == f"prod/eu/2024/05/01/{path.name}"
        assert stored(s3, bucket, key) == data
        assert not path.exists()
    assert {f["key"] for f in doc["files"]} == {f"prod/eu/2024/05/01/{p.name}" for p in paths}


@pytest.mark.parametrize(
    ("mode", "header"), [("md5", "Content-MD5"), ("crc32", "x-amz-checksum-crc32")]
)
def test_upload_checksum_option(
    tmp_path: Path, fault_proxy: FaultProxy, s3: BaseClient, bucket: str, mode: str, header: str
) -> None:
    """--checksum picks what each PutObject carries for the store to check."""
    [path] = backlog(tmp_path / "rec", 1)
    data = path.read_bytes()
    result = run(
        "upload", "--bucket", bucket, "--endpoint-url", fault_proxy.url, "--checksum", mode, path
    )
    assert result.returncode == 0, result.stderr
    [put] = [r for r in fault_proxy.requests if r.info.op == "PutObject"]
    assert header in put.info.headers
    [other] = {"Content-MD5", "x-amz-checksum-crc32"} - {header}
    assert other not in put.info.headers
    assert stored(s3, bucket, f"recordings/2024/05/01/{path.name}") == data


def test_upload_text_report_and_default_prefix(
    tmp_path: Path, s3_endpoint: str, s3: BaseClient, bucket: str
) -> None:
    """Without --prefix keys start with recordings/; each upload and a summary are printed."""
    [path] = backlog(tmp_path / "rec", 1)
    data = path.read_bytes()
    result = run("upload", "--bucket", bucket, "--endpoint-url", s3_endpoint, path)
    assert result.returncode == 0, result.stderr
    key = f"recordings/2024/05/01/{path.name}"
    assert f"uploaded {path} -> s3://{bucket}/{key}" in result.stdout
    assert "1 of 1 file uploaded" in result.stdout
    assert stored(s3, bucket, key) == data


def test_upload_to_missing_bucket_keeps_files(tmp_path: Path, s3_endpoint: str) -> None:
    """A missing bucket fails the uploads: files kept and listed, one-line errors, exit 1."""
    paths = backlog(tmp_path / "rec", 3)
    result = run("upload", "--bucket", "no-such-bucket-cli", "--endpoint-url", s3_endpoint, *paths)
    assert result.returncode == 1
    assert_clean_errors(result.stderr)
    assert "NoSuchBucket" in result.stderr or "does not exist" in result.stderr
    assert all(p.exists() for p in paths)
    assert "kept, not uploaded:" in result.stdout
    assert all(str(p) in result.stdout for p in paths)


def test_upload_keep_going_past_a_bad_file(
    tmp_path: Path, s3_endpoint: str, s3: BaseClient, bucket: str
) -> None:
    """A file that cannot be keyed stops the run, unless --keep-going uploads the others."""
    [good] = backlog(tmp_path / "rec", 1)
    bad = tmp_path / "rec" / "noextension"
    bad.write_bytes(b"x")
    stopped = run("upload", "--json", "--bucket", bucket, "--endpoint-url", s3_endpoint, bad, good)
    assert stopped.returncode == 1
    doc = json.loads(stopped.stdout)
    assert [f["status"] for f in doc["files"]] == ["failed", "skipped"]
    assert good.exists()
    going = run("upload", "-k", "--bucket", bucket, "--endpoint-url", s3_endpoint, bad, good)
    assert going.returncode == 1
    assert_clean_errors(going.stderr)
    assert not good.exists()
    assert bad.exists()
    assert stored(s3, bucket, f"recordings/2024/05/01/{good.name}")


def test_upload_progress_line_on_a_terminal(tmp_path: Path, s3_endpoint: str, bucket: str) -> None:
    """With stderr on a terminal one updating progress line is drawn there."""
    paths = backlog(tmp_path / "rec", 2)
    leader, follower = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "recording_aio", "upload", "--bucket", bucket,
             "--endpoint-url", s3_endpoint, *map(str, paths)],
            stdout=subprocess.PIPE, stderr=follower, env=cli_env(), timeout=60, check=False,
        )  # fmt: skip
        os.close(follower)
        drawn = b""
        while chunk := _read_pty(leader):
            drawn += chunk
    finally:
        os.close(leader)
    assert result.returncode == 0
    assert b"\r\x1b[Kuploading: " in drawn
    assert b"2 total" in drawn
    assert b"Traceback" not in drawn


def _read_pty(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO once the terminal has no writer left
        return b""


# -- recover -------------------------------------------------------------------------------


def unreachable_endpoint() -> str:
    """A local URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def spool_jobs(spool: Path, jobs: list[RecordingJob]) -> None:
    """Enqueues the jobs with a spool to an uploader that cannot reach its store."""
    uploader = AsyncUploader(
        spool_dir=spool,
        endpoint_url=unreachable_endpoint(),
        max_retries=0,
        registry=CollectorRegistry(),
    )
    await uploader.start()
    handles = [await uploader.enqueue(job) for job in jobs]
    await uploader.shutdown(timeout=0.5)
    for handle in handles:
        with pytest.raises(UploadFailedError):
            await handle


def test_recover_uploads_a_spool(
    tmp_path: Path, s3_endpoint: str, s3: BaseClient, bucket: str
) -> None:
    """recover uploads every job an earlier uploader left in its spool, and empties it."""
    paths = backlog(tmp_path / "rec", 3)
    contents = {p: p.read_bytes() for p in paths}
    jobs = [RecordingJob(p, bucket, f"spooled/{p.name}") for p in paths]
    spool = tmp_path / "spool"
    asyncio.run(spool_jobs(spool, jobs))
    assert len(list(spool.glob("*.json"))) == 3
    result = run("recover", "--json", "--spool", spool, "--endpoint-url", s3_endpoint)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["recovered"], doc["uploaded"], doc["pending"]) == (3, 3, 0)
    for path, data in contents.items():
        assert stored(s3, bucket, f"spooled/{path.name}") == data
        assert not path.exists()
    assert list(spool.glob("*.json")) == []


def test_recover_locked_spool_exits_2(tmp_path: Path, s3_endpoint: str) -> None:
    """A spool held by a running uploader is reported in one line, with exit status 2."""
    spool = tmp_path / "spool"

    async def while_held() -> subprocess.CompletedProcess[str]:
        uploader = AsyncUploader(
            spool_dir=spool, endpoint_url=s3_endpoint, registry=CollectorRegistry()
        )
        async with uploader:
            args = ("recover", "--spool", spool, "--endpoint-url", s3_endpoint)
            return await asyncio.to_thread(run, *args)

    result = asyncio.run(while_held())
    assert result.returncode == 2
    assert_clean_errors(result.stderr)
    assert len(result.stderr.splitlines()) == 1
    assert "in use" in result.stderr


def test_recover_missing_spool_exits_2(tmp_path: Path) -> None:
    """A spool directory that does not exist is a usage error; nothing is created."""
    result = run("recover", "--json", "--spool", tmp_path / "nope")
    assert result.returncode == 2
    assert_clean_errors(result.stderr)
    assert json.loads(result.stdout)["ok"] is False
    assert not (tmp_path / "nope").exists()
