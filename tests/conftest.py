"""Shared fixtures: the S3 ones from s3fixtures.py, and those of the recording tests.

WAV reader helpers for the recording tests live in wavreaders.py.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from recording_aio._writer import WRITER

pytest_plugins = ["s3fixtures"]


@pytest.fixture
def stalled_writer() -> Iterator[threading.Event]:
    """Holds the shared writer thread until the yielded event is set (and at teardown)."""
    gate = threading.Event()

    def hold() -> None:
        gate.wait(timeout=30)

    WRITER._put(hold)
    try:
        yield gate
    finally:
        gate.set()


@pytest.fixture(params=[0o000, 0o077], ids=["umask000", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Runs the test under each umask, restoring the previous one afterwards."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)
