"""A child process for the crash tests: records a known signal in real time until killed.

Usage: python crash_child.py DIRECTORY BASE SAMPLE_RATE CHANNELS FLUSH_INTERVAL

Every 20 ms it writes one frame of `signal(start, count)` and, once `write_samples` has
returned, prints the number of frames acknowledged so far on its own line (flushed), so the
parent knows exactly what the recorder had accepted when it sent SIGKILL.
"""

from __future__ import annotations

import asyncio
import sys
from array import array

from recording_aio import open_recorder

FRAME_S = 0.02


def signal(start: int, count: int) -> bytes:
    """int16 LE samples start..start+count-1 of the test signal: sample i = f(i)."""
    values = array(
        "h", [(((i * 2654435761) >> 11) & 0xFFFF) - 32768 for i in range(start, start + count)]
    )
    if sys.byteorder != "little":
        values.byteswap()
    return values.tobytes()


async def record(directory: str, base: str, rate: int, channels: int, interval: float) -> None:
    """Writes 20 ms frames at real-time pace and acknowledges each one on stdout."""
    loop = asyncio.get_running_loop()
    frame = round(rate * FRAME_S)
    rec = await open_recorder(directory, base, rate, channels=channels, flush_interval=interval)
    frames = 0
    deadline = loop.time()
    while True:
        await rec.write_samples(signal(frames * channels, frame * channels), rate)
        frames += frame
        sys.stdout.write(f"{frames}\n")
        sys.stdout.flush()
        deadline += FRAME_S
        await asyncio.sleep(max(0.0, deadline - loop.time()))


def main() -> None:
    directory, base, rate, channels, interval = sys.argv[1:6]
    asyncio.run(record(directory, base, int(rate), int(channels), float(interval)))


if __name__ == "__main__":
    main()
