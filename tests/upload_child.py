"""A child process for the crash tests: records calls and enqueues them until it is killed.

Run as `python tests/upload_child.py --endpoint URL --bucket B --spool DIR --recordings DIR`.
Several concurrent "calls" each record a short WAV with `open_recorder` (now and then one
large enough for a multipart upload), hash the finished file, enqueue it with a spooled
`AsyncUploader`, and once `enqueue` has returned print one line::

    acked <key> <sha256 of the file>

It prints `ready` once the uploader has started. The audio is a known signal (see
`expected_pcm`), so the parent can check what a killed recording kept.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sys
import zlib
from pathlib import Path

import numpy as np
from botocore.config import Config
from prometheus_client import CollectorRegistry

from recording_aio import AsyncUploader, RecordingJob, open_recorder

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms
BIG_FRAME_SAMPLES = 32 * 1024  # 64 KiB writes for the recordings that go up in parts
MIB = 1 << 20
PART_SIZE = 5 * MIB


def expected_pcm(base: str, start: int, count: int) -> bytes:
    """The int16 LE samples [start, start + count) of the recording named `base`."""
    offset = zlib.crc32(base.encode()) & 0xFFFF
    n = np.arange(start, start + count, dtype=np.int64)
    values = ((n * 7919 + offset) % 65536 - 32768).astype("<i2")
    return values.tobytes()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def record_call(recordings: Path, base: str, rng: random.Random, big: bool) -> Path:
    """Records one call of the known signal; returns the finished file."""
    if big:
        frame, frames, pause = BIG_FRAME_SAMPLES, PART_SIZE // (2 * BIG_FRAME_SAMPLES) + 3, 0.002
    else:
        frame, frames, pause = FRAME_SAMPLES, rng.randint(10, 80), 0.004
    async with open_recorder(recordings, base, SAMPLE_RATE, flush_interval=0.1) as rec:
        for i in range(frames):
            await rec.write_samples(expected_pcm(base, i * frame, frame), SAMPLE_RATE)
            await asyncio.sleep(pause)
    assert rec.info is not None
    return rec.info.path


async def call_lane(
    up: AsyncUploader, args: argparse.Namespace, lane: int, rng: random.Random
) -> None:
    calls = 0
    while args.calls is None or calls < args.calls:
        base = f"s{args.seed}-l{lane}-c{calls}"
        calls += 1
        big = args.big_every > 0 and rng.randrange(args.big_every) == 0
        path = await record_call(args.recordings, base, rng, big)
        digest = await asyncio.to_thread(sha256_file, path)
        key = f"{args.prefix}{base}.wav"
        await up.enqueue(RecordingJob(path, args.bucket, key))
        print(f"acked {key} {digest}", flush=True)


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    uploader = AsyncUploader(
        endpoint_url=args.endpoint,
        region_name="us-east-1",
        spool_dir=args.spool,
        workers=2,
        queue_size=8,
        max_retries=2,
        backoff_base=0.05,
        backoff_max=0.5,
        multipart_threshold=PART_SIZE,
        part_size=PART_SIZE,
        part_concurrency=2,
        client_config=Config(connect_timeout=2, read_timeout=3),
        registry=CollectorRegistry(),
        shutdown_timeout=5,
    )
    async with uploader as up:
        print("ready", flush=True)
        lanes = [
            call_lane(up, args, lane, random.Random(rng.random())) for lane in range(args.lanes)
        ]
        await asyncio.gather(*lanes)
    print("done", flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="S3 endpoint URL (the fault proxy)")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--spool", type=Path, required=True)
    parser.add_argument("--recordings", type=Path, required=True)
    parser.add_argument("--prefix", default="crash/", help="key prefix")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lanes", type=int, default=3, help="calls recorded at once")
    parser.add_argument("--calls", type=int, default=None, help="calls per lane (default: ∞)")
    parser.add_argument(
        "--big-every", type=int, default=5, help="about 1 call in N is multipart-sized (0: none)"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args(sys.argv[1:])))
