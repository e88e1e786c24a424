"""Shared fixtures: the S3 ones from s3fixtures.py, and those of the recording tests.

WAV reader helpers for the recording tests live in wavreaders.py.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from functools import partial

import pytest

from recording_aio._writer import WRITER

pytest_plugins = ["s3fixtures"]


@pytest.fixture
def stall_writer() -> Iterator[Callable[[], threading.Event]]:
    """Gives a function that holds the shared writer thread until the event it returns is set.

    Every hold is released at teardown.
    """
    gates: list[threading.Event] = []

    def stall() -> threading.Event:
        gate = threading.Event()
        gates.append(gate)
        WRITER._put(partial(gate.wait, timeout=30))
        return gate

    try:
        yield stall
    finally:
        for gate in gates:
            gate.set()


@pytest.fixture(params=[0o000, 0o077], ids=["umask000", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Runs the test under each umask, restoring the previous one afterwards."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)
