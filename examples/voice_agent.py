"""Wiring recording_aio into an asyncio voice agent: a frame callback per call.

Each simulated call delivers a 20 ms frame every 20 ms to `on_audio_frame`, which only
awaits `write_samples` (cheap: an append). When the call ends the recording is closed and
handed to the uploader, whose spool keeps the job safe even if the process dies right after.

    python examples/voice_agent.py --calls 20 --seconds 3 --endpoint-url http://127.0.0.1:9000

Without --endpoint-url it starts an embedded S3 server (moto's) like the quickstart.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from array import array
from pathlib import Path

import aiobotocore.session

from recording_aio import (
    AsyncUploader,
    ConversationRecorder,
    RecordingJob,
    UploadHandle,
    build_s3_key,
    open_recorder,
)

RATE = 16_000
FRAME_SAMPLES = RATE // 50


class CallSession:
    """What a voice framework's per-call handler would hold: a recorder and the call id."""

    def __init__(self, call_id: str, recorder: ConversationRecorder) -> None:
        self.call_id = call_id
        self.recorder = recorder

    async def on_audio_frame(self, pcm: bytes) -> None:
        """The framework's audio callback: mixed 16-bit mono PCM for the last 20 ms."""
        await self.recorder.write_samples(pcm, RATE)


async def run_call(
    n: int, seconds: float, directory: Path, uploader: AsyncUploader, bucket: str
) -> UploadHandle:
    call_id = f"agent-call-{n:04d}"
    async with open_recorder(directory, call_id, RATE) as recorder:
        session = CallSession(call_id, recorder)
        loop = asyncio.get_running_loop()
        start = loop.time()
        frame = array("h", [(n * 97 + i) % 2000 - 1000 for i in range(FRAME_SAMPLES)]).tobytes()
        for k in range(int(seconds * 50)):
            await asyncio.sleep(max(0.0, start + k * 0.02 - loop.time()))
            await session.on_audio_frame(frame)
    return await uploader.enqueue(
        RecordingJob(recorder.path, bucket, build_s3_key("agents", call_id))
    )


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        session = aiobotocore.session.get_session()
        async with session.create_client("s3", endpoint_url=args.endpoint_url) as s3:
            await s3.create_bucket(Bucket=args.bucket)
        async with AsyncUploader(
            workers=4, endpoint_url=args.endpoint_url, spool_dir=Path(tmp) / "spool"
        ) as uploader:
            handles = await asyncio.gather(
                *(
                    run_call(n, args.seconds, Path(tmp) / "calls", uploader, args.bucket)
                    for n in range(args.calls)
                )
            )
            results = await asyncio.gather(*handles)
    total = sum(r.size_bytes for r in results)
    print(f"{len(results)} calls recorded and uploaded to s3://{args.bucket} ({total} bytes)")
    return 0


def cli() -> int:
    parser = argparse.ArgumentParser(description="Simulated voice agent recording its calls.")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--endpoint-url")
    parser.add_argument("--bucket", default="voice-agent-calls")
    args = parser.parse_args()
    server = None
    if args.endpoint_url is None:
        from embedded_s3 import start_embedded_s3

        server, args.endpoint_url = start_embedded_s3()
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    try:
        return asyncio.run(main(args))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(cli())
