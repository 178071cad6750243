"""Prometheus metrics of one HTTP service process (names ``refproj_*``), in their own registry
so that several apps in one process (tests) do not collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from refproj.web.events import Refreshed


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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
            registry=r,
        )
        self.as_of = Gauge(
            "refproj_overview_as_of_timestamp_seconds",
            "The overview's as_of, Unix time, as this process last read it",
            registry=r,
        )
        self.coalesced_reads = Gauge(
            "refproj_coalesced_reads",
            "Overview reads this process answered by sharing another read's statement (in flight or"
            " within the reuse window) since it started",
            registry=r,
        )
        self.pool_in_use = Gauge(
            "refproj_pool_connections_in_use", "Database connections checked out of the pool", registry=r
        )
        self.pool_waiting = Gauge(
            "refproj_pool_waiting",
            "Requests waiting for a database connection of their budget (detail reads beyond the"
            " detail budget)",
            registry=r,
        )
        self.errors = Counter(
            "refproj_errors",
            "Requests answered with an error, by error class (http_401: no or a wrong token)",
            ["error_class"],
            registry=r,
        )
        self.subscribers = Gauge(
            "refproj_event_subscribers", "Open GET /_ref/connectors/events streams", registry=r
        )

    def observe_refresh(self, event: Refreshed) -> None:
        self.refreshes.inc()
        self.refresh_duration.observe(event.refresh_ms / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)
