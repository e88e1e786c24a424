"""One timer per event loop that lets every open recording check its flush_interval.

asyncio keeps its timers in a heap ordered by comparisons written in Python, so a timer per
recording, re-armed every flush_interval, would cost the loop about 8 µs per recording a
second: 8 ms of every second at a thousand calls. One sweep over all the recordings of a
loop, a few times per flush_interval, costs a fraction of that.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from typing import Protocol

SWEEPS_PER_INTERVAL = 4


class Swept(Protocol):
    """What the sweeper calls: `now` is the loop's time, `period` the time between sweeps."""

    def _on_sweep(self, now: float, period: float) -> None: ...


class Sweeper:
    """Calls every member's `_on_sweep` a few times per the shortest member's interval.

    Members are held weakly, so a recording that is dropped without being closed can still
    be freed; the timer stops when no member is left. Nothing here refers to the loop (a
    timer handle would), so the loop's entry in `_SWEEPERS` does not keep it alive.
    """

    def __init__(self) -> None:
        self._members: weakref.WeakSet[Swept] = weakref.WeakSet()
        self._period = math.inf
        self._generation = 0  # of the timer in charge; an older one that fires does nothing

    def add(self, member: Swept, interval: float) -> None:
        """Adds `member`; called in its event loop."""
        self._members.add(member)
        period = interval / SWEEPS_PER_INTERVAL
        if period < self._period:
            self._period = period
            self._generation += 1
            self._schedule()

    def discard(self, member: Swept) -> None:
        self._members.discard(member)

    def _schedule(self) -> None:
        asyncio.get_running_loop().call_later(self._period, self._sweep, self._generation)

    def _sweep(self, generation: int) -> None:
        if generation != self._generation:
            return
        now, period = asyncio.get_running_loop().time(), self._period
        for member in list(self._members):
            member._on_sweep(now, period)
        if self._members:
            self._schedule()
        else:
            self._period = math.inf


_SWEEPERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Sweeper] = (
    weakref.WeakKeyDictionary()
)


def sweeper_of(loop: asyncio.AbstractEventLoop) -> Sweeper:
    """The sweeper of `loop`, made on first use."""
    sweeper = _SWEEPERS.get(loop)
    if sweeper is None:
        sweeper = _SWEEPERS[loop] = Sweeper()
    return sweeper
