"""Record a two-party call, upload it to S3 and check what the store holds.

By default an embedded S3 server (moto's, on 127.0.0.1) stands in for the store, so this
runs anywhere with no account:

    python examples/quickstart.py                 # as fast as possible
    python examples/quickstart.py --realtime      # frames paced every 20 ms, like a live call
    python examples/quickstart.py --endpoint-url https://s3.example.com --bucket my-bucket

With --bucket and no --endpoint-url it uses AWS itself, with credentials and region from the
standard AWS chain. Exits 0 only if the object came back byte for byte.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Iterator
from pathlib import Path

import aiobotocore.session
from prometheus_client import CollectorRegistry

from recording_aio import AsyncUploader, RecordingJob, build_s3_key, open_recorder

RATE = 16_000
FRAME = RATE // 50  # 20 ms
TURNS = (  # (speaker, seconds of speech, seconds of pause after)
    ("caller", 1.2, 0.3),
    ("agent", 1.6, 0.4),
    ("caller", 0.8, 0.2),
    ("agent", 1.0, 0.5),
)


def synthesize_call() -> Iterator[bytes]:
    """20 ms stereo frames: the caller on the left (a 220 Hz voice-like buzz with syllables),
    the agent on the right (a 330 Hz one), taking turns with pauses between them."""
    pitch = {"caller": 220.0, "agent": 330.0}
    channel = {"caller": 0, "agent": 1}
    t = 0
    for speaker, talk_s, pause_s in TURNS:
        talk, total = int(talk_s * RATE), int((talk_s + pause_s) * RATE)
        for start in range(0, total, FRAME):
            frame = array("h", bytes(4 * FRAME))
            for i in range(FRAME):
                n = start + i
                if n < talk:
                    syllables = 0.5 + 0.5 * math.sin(2 * math.pi * 4 * n / RATE)
                    tone = sum(
                        math.sin(2 * math.pi * pitch[speaker] * k * (t + n) / RATE) / k
                        for k in (1, 2, 3)
                    )
                    frame[2 * i + channel[speaker]] = int(9000 * syllables * tone)
            yield frame.tobytes()
        t += total


async def record(directory: Path, call_id: str, realtime: bool) -> Path:
    """Records the synthetic call in 20 ms frames and returns the finished WAV."""
    async with open_recorder(directory, call_id, RATE, channels=2) as rec:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n, frame in enumerate(synthesize_call()):
            if realtime:
                await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))
            await rec.write_samples(frame, RATE)
    assert rec.info is not None
    info = rec.info
    print(
        f"recorded  {info.path.name}: {info.duration_s:.2f} s, {info.channels} channels, "
        f"{info.size_bytes} bytes"
    )
    return info.path


async def run(args: argparse.Namespace) -> bool:
    registry = CollectorRegistry()
    session = aiobotocore.session.get_session()
    bucket = args.bucket or f"quickstart-{uuid.uuid4().hex[:8]}"
    async with session.create_client(
        "s3", endpoint_url=args.endpoint_url, region_name=args.region
    ) as s3:
        if not args.bucket:
            await s3.create_bucket(Bucket=bucket)
        with tempfile.TemporaryDirectory() as tmp:
            call_id = f"call-{uuid.uuid4().hex[:12]}"
            path = await record(Path(tmp) / "recordings", call_id, args.realtime)
            local = path.read_bytes()
            key = build_s3_key(args.prefix, call_id)
            started = time.perf_counter()
            async with AsyncUploader(
                endpoint_url=args.endpoint_url,
                region_name=args.region,
                registry=registry,
                spool_dir=Path(tmp) / "spool",
            ) as uploader:
                handle = await uploader.enqueue(RecordingJob(path, bucket, key))
                result = await handle
            elapsed = time.perf_counter() - started
            stored = await (await s3.get_object(Bucket=bucket, Key=key))["Body"].read()
            file_gone = not path.exists()
    same = stored == local
    print(f"uploaded  s3://{bucket}/{key}")
    print(
        f"          {result.size_bytes} bytes in {elapsed * 1000:.0f} ms, "
        f"attempts={result.attempts}, etag={result.etag}"
    )
    print(
        f"verified  downloaded copy {'matches' if same else 'DIFFERS FROM'} the recording "
        f"(sha256 {hashlib.sha256(stored).hexdigest()[:16]}…); local file "
        f"{'deleted' if file_gone else 'STILL PRESENT'}"
    )
    print(
        "metrics   "
        + ", ".join(
            f"{name}={registry.get_sample_value(name, {'uploader': 'default'}):g}"
            for name in (
                "recording_jobs_enqueued_total",
                "recording_jobs_success_total",
                "recording_upload_bytes_total",
                "recording_queue_depth",
            )
        )
    )
    return same and file_gone


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint-url", help="an S3-compatible store (default: embedded)")
    parser.add_argument(
        "--bucket", help="an existing bucket (default: a new one on the embedded store)"
    )
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--prefix", default="recordings", help="key prefix")
    parser.add_argument("--realtime", action="store_true", help="pace frames every 20 ms")
    args = parser.parse_args()
    server = None
    if args.endpoint_url is None and args.bucket is None:
        from embedded_s3 import start_embedded_s3

        server, args.endpoint_url = start_embedded_s3()
        print(f"store     embedded S3 server at {args.endpoint_url}")
    try:
        ok = asyncio.run(run(args))
    finally:
        if server is not None:
            server.stop()
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
