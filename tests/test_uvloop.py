"""Recording and uploading on uvloop, the event loop many voice stacks run on."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

import uvloop
from botocore.client import BaseClient
from prometheus_client import CollectorRegistry
from s3fixtures import stored
from uploads import new_uploader
from wavreaders import ALL_READERS, check_wav, pcm

from recording_aio import RecordingJob, UploadResult, open_recorder, read_wav_info
from recording_aio._writer import WRITER
from recording_aio.wav import HEADER_SIZE


def test_a_call_recorded_and_uploaded_on_uvloop(
    tmp_path: Path, s3_endpoint: str, s3: BaseClient, bucket: str, registry: CollectorRegistry
) -> None:
    """Chunks, the sweep of a quiet recording, flush, aclose and the upload all work there."""
    frames = [pcm([(i * 31 + k) % 65536 - 32768 for k in range(160)]) for i in range(120)]
    audio = b"".join(frames)

    async def call() -> tuple[UploadResult, Path, weakref.ref[asyncio.AbstractEventLoop]]:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        async with open_recorder(tmp_path, "call", 8000, flush_interval=0.1) as rec:
            for frame in frames[:-1]:
                await rec.write_samples(frame, 8000)
            await asyncio.sleep(0.2)  # more than flush_interval: the sweep hands off the rest
            await WRITER.barrier()
            assert read_wav_info(rec.path).num_frames * 2 == len(audio) - len(frames[-1])
            await rec.write_samples(frames[-1], 8000)
            await rec.flush()
            check_wav(rec.path, audio, 8000, 1, readers=ALL_READERS)
        assert rec.info is not None
        async with new_uploader(s3_endpoint, registry) as uploader:
            job = RecordingJob(rec.info.path, bucket, "calls/uvloop.wav")
            result = await (await uploader.enqueue(job))
        return result, rec.info.path, weakref.ref(asyncio.get_running_loop())

    result, path, loop = uvloop.run(call())
    assert result.size_bytes == HEADER_SIZE + len(audio)
    body = stored(s3, bucket, "calls/uvloop.wav")
    assert body is not None
    assert body[HEADER_SIZE:] == audio
    assert not path.exists()
    gc.collect()
    assert loop() is None
