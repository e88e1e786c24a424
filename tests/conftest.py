"""Shared fixtures: the S3 ones from s3fixtures.py, and those of the recording tests.

WAV reader helpers for the recording tests live in wavreaders.py.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from functools import partial

import pytest
from prometheus_client import CollectorRegistry
from uploads import Metrics

from recording_aio._writer import WRITER

pytest_plugins = ["s3fixtures"]


@pytest.fixture
def stall_writer() -> Iterator[Callable[[], threading.Event]]:
    """Gives a function that holds the shared writer thread until the event it returns is set.

    It returns once the thread is held, so nothing handed off later can be written.

    Every hold is released at teardown.
    """
    gates: list[threading.Event] = []

    def stall() -> threading.Event:
        gate, holding = threading.Event(), threading.Event()
        gates.append(gate)
        WRITER._put(partial(_hold, holding, gate))
        assert holding.wait(timeout=10), "the writer thread did not reach the stall"
        return gate

    try:
        yield stall
    finally:
        for gate in gates:
            gate.set()


def _hold(holding: threading.Event, gate: threading.Event) -> None:
    holding.set()
    gate.wait(timeout=30)


@pytest.fixture(params=[0o000, 0o077], ids=["umask000", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Runs the test under each umask, restoring the previous one afterwards."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


@pytest.fixture
def registry() -> CollectorRegistry:
    """A registry of the test's own, so metric values start from zero."""
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    """The samples of the uploader named "default" in the test's registry."""
    return Metrics(registry)
