"""The Prometheus collectors of the uploader.

Collectors are created once per registry (never at import) and shared by every uploader on
it, each writing its own `uploader` label, so two uploaders on one registry never collide.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True, slots=True)
class _Collectors:
    enqueued: Counter
    success: Counter
    failed: Counter
    retries: Counter
    recovered: Counter
    queue_depth: Gauge
    in_flight: Gauge
    duration: Histogram
    uploaded_bytes: Counter


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, _Collectors] = (
    weakref.WeakKeyDictionary()
)
_LOCK = threading.Lock()


def _collectors(registry: CollectorRegistry) -> _Collectors:
    with _LOCK:
        found = _BY_REGISTRY.get(registry)
        if found is None:
            found = _create(registry)
            _BY_REGISTRY[registry] = found
        return found


def _create(registry: CollectorRegistry) -> _Collectors:
    label = ["uploader"]
    return _Collectors(
        enqueued=Counter(
            "recording_jobs_enqueued", "Upload jobs accepted.", label, registry=registry
        ),
        success=Counter(
            "recording_jobs_success",
            "Jobs uploaded, verified and deleted locally.",
            label,
            registry=registry,
        ),
        failed=Counter(
            "recording_jobs_failed",
            "Jobs that failed for good (their files are kept).",
            [*label, "reason"],
            registry=registry,
        ),
        retries=Counter(
            "recording_upload_retries",
            "Requests to the store that were retried.",
            [*label, "reason"],
            registry=registry,
        ),
        recovered=Counter(
            "recording_jobs_recovered",
            "Jobs found in the spool at start and enqueued again.",
            label,
            registry=registry,
        ),
        queue_depth=Gauge(
            "recording_queue_depth", "Jobs waiting for a worker.", label, registry=registry
        ),
        in_flight=Gauge(
            "recording_jobs_in_flight", "Jobs being uploaded now.", label, registry=registry
        ),
        duration=Histogram(
            "recording_upload_duration_seconds",
            "Time from a worker taking a job to its end.",
            label,
            buckets=_DURATION_BUCKETS,
            registry=registry,
        ),
        uploaded_bytes=Counter(
            "recording_upload_bytes",
            "Bytes of recordings uploaded and verified.",
            label,
            registry=registry,
        ),
    )


class UploaderMetrics:
    """The metric children of one uploader (label `uploader=<name>`)."""

    __slots__ = (
        "_failed",
        "_name",
        "_retries",
        "duration",
        "enqueued",
        "in_flight",
        "queue_depth",
        "recovered",
        "success",
        "uploaded_bytes",
    )

    def __init__(self, name: str, registry: CollectorRegistry | None = None) -> None:
        c = _collectors(REGISTRY if registry is None else registry)
        self._name = name
        self.enqueued = c.enqueued.labels(name)
        self.success = c.success.labels(name)
        self.recovered = c.recovered.labels(name)
        self.queue_depth = c.queue_depth.labels(name)
        self.in_flight = c.in_flight.labels(name)
        self.duration = c.duration.labels(name)
        self.uploaded_bytes = c.uploaded_bytes.labels(name)
        self._failed = c.failed
        self._retries = c.retries

    def failed(self, reason: str) -> None:
        """Counts a job that failed for good."""
        self._failed.labels(self._name, reason).inc()

    def retried(self, reason: str) -> None:
        """Counts a request that is retried."""
        self._retries.labels(self._name, reason).inc()
