"""Prometheus metrics of the HTTP service (names ``refproj_*``), in their own registry so that
several apps in one process (tests) do not collide.

Under ``refproj serve --workers N`` (N > 1) every worker writes its values to files in
``$PROMETHEUS_MULTIPROC_DIR`` (a temporary directory ``refproj serve`` creates and removes) and
any worker's scrape adds them all up (prometheus_client's multiprocess mode). Every worker
listens to the same refreshes, so only one of them (whichever holds a lock file there) counts
them.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from refproj.web.events import Refreshed

MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.shared_dir = os.environ.get(MULTIPROC) or None
        self._observer_lock: int | None = None  # the lock file's descriptor, once this worker holds it
        r = self.registry
        self.refreshes = Counter(
            "refproj_refreshes",
            "Refreshes of the overview committed (by any process or session) since this process started,"
            " as seen on LISTEN refproj_refreshed",
            registry=r,
        )
        self.refresh_duration = Histogram(
            "refproj_refresh_duration_seconds",
            "Duration of those refreshes, as the refresh measured itself",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
            registry=r,
        )
        self.staleness = Gauge(
            "refproj_overview_staleness_seconds",
            "At the last scrape, from the last status this process read (the watcher reads it after"
            " every source write): seconds since the overview's as_of when a source write is pending"
            " (source_changed), else 0",
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.as_of = Gauge(
            "refproj_overview_as_of_timestamp_seconds",
            "The overview's as_of, Unix time, as this process last read it",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.coalesced_reads = Gauge(
            "refproj_coalesced_reads",
            "Overview reads this process answered by sharing another read's statement (in flight or"
            " within the reuse window) since it started",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.pool_in_use = Gauge(
            "refproj_pool_connections_in_use",
            "Database connections checked out of the pool",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.pool_waiting = Gauge(
            "refproj_pool_waiting",
            "Requests waiting for a database connection of their budget (detail reads beyond the"
            " detail budget)",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.errors = Counter(
            "refproj_errors",
            "Requests answered with an error, by error class (http_401: no or a wrong token)",
            ["error_class"],
            registry=r,
        )
        self.subscribers = Gauge(
            "refproj_event_subscribers",
            "Open GET /_ref/connectors/events streams",
            multiprocess_mode="livesum",
            registry=r,
        )

    def observe_refresh(self, event: Refreshed) -> None:
        if self._counts_refreshes():
            self.refreshes.inc()
            self.refresh_duration.observe(event.refresh_ms / 1000)

    def _counts_refreshes(self) -> bool:
        if self.shared_dir is None:
            return True
        if self._observer_lock is None:
            # Held until this worker exits; then the next refresh elects another one.
            fd = os.open(Path(self.shared_dir) / "refresh-observer.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._observer_lock = fd
        return True

    def render(self) -> bytes:
        if self.shared_dir is None:
            return generate_latest(self.registry)
        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker, path=self.shared_dir)  # type: ignore[no-untyped-call]
        return generate_latest(every_worker)

    def close(self) -> None:
        """At the worker's shutdown: its live gauges leave the sum."""
        if self.shared_dir is not None:
            mark_process_dead(os.getpid(), self.shared_dir)  # type: ignore[no-untyped-call]
