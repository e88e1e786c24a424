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
    be freed; the timer stops when no member is left.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop_ref = weakref.ref(loop)  # the loop's entry in _SWEEPERS must not keep it alive
        self._members: weakref.WeakSet[Swept] = weakref.WeakSet()
        self._period = math.inf
        self._timer: asyncio.TimerHandle | None = None

    def add(self, member: Swept, interval: float) -> None:
        self._members.add(member)
        period = interval / SWEEPS_PER_INTERVAL
        if period < self._period:
            self._period = period
            if self._timer is not None:
                self._timer.cancel()
            self._schedule()

    def discard(self, member: Swept) -> None:
        self._members.discard(member)

    def _schedule(self) -> None:
        loop = self._loop_ref()
        if loop is not None:
            self._timer = loop.call_later(self._period, self._sweep)

    def _sweep(self) -> None:
        loop = self._loop_ref()
        if loop is None:
            return
        now, period = loop.time(), self._period
        for member in list(self._members):
            member._on_sweep(now, period)
        if self._members:
            self._schedule()
        else:
            self._timer, self._period = None, math.inf


_SWEEPERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Sweeper] = (
    weakref.WeakKeyDictionary()
)


def sweeper_of(loop: asyncio.AbstractEventLoop) -> Sweeper:
    """The sweeper of `loop`, made on first use."""
    sweeper = _SWEEPERS.get(loop)
    if sweeper is None:
        sweeper = _SWEEPERS[loop] = Sweeper(loop)
    return sweeper
