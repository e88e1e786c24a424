"""A request body over bytes already in memory, sent in slices without copying them.

Given `bytes`, aiohttp joins headers and body into one new object and asyncio copies what the
socket did not take at once: two copies of the whole body in one event-loop step, about
10 ms for an 8 MiB part. Given a BytesIO it copies the body out first. This body hands the
socket memoryview slices and yields to the loop after each one: a loopback or fast socket
takes megabytes without ever making the writer wait, so without the yield one step of the
loop would send a whole part (about 7 ms for 8 MiB here).

It is also a readable, seekable file object, which is what botocore validates and, when the
caller asks for flexible checksums, reads.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

SLICE = 256 * 1024


class MemoryBody(Payload):
    """`data` as an aiohttp payload and a read-only file object."""

    _autoclose = True  # nothing to release: the bytes belong to the caller

    def __init__(self, data: bytes) -> None:
        super().__init__(data, content_type="application/octet-stream")
        self._view = memoryview(data)
        self._size = len(data)
        self._position = 0

    def __len__(self) -> int:
        return len(self._view)

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size < 0 else min(len(self._view), self._position + size)
        chunk = self._view[self._position : end].tobytes()
        self._position = max(self._position, end)
        return chunk

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}
        self._position = max(0, base[whence] + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self._view.tobytes().decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: AbstractStreamWriter, content_length: Any) -> None:
        view = self._view if content_length is None else self._view[:content_length]
        for start in range(0, len(view), SLICE):
            await writer.write(view[start : start + SLICE])
            await asyncio.sleep(0)
