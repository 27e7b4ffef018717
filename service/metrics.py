"""Prometheus metrics of the API process (GET /metrics). Counters of what this process accepted and
refused; gauges read from the database at scrape time (queue depth, portion and recent rate per
destination and tenant, destination quota and utilisation), so any API process shows the whole system.
Dispatcher processes export their own (dispatched segments, gateway latency and outcomes, queue wait)."""

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

from db import health


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter(
            "fairlane_messages_accepted", "Messages accepted", ["tenant", "destination"], registry=self.registry
        )
        self.rejected = Counter(
            "fairlane_messages_rejected", "Messages refused, by error code", ["tenant", "code"], registry=self.registry
        )
        self.requests = Histogram(
            "fairlane_http_request_seconds",
            "API request latency",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.depth = Gauge("fairlane_queue_depth", "Queued messages", ["destination", "tenant"], registry=self.registry)
        self.portion = Gauge(
            "fairlane_portion_segments_per_second",
            "Fair portion of the destination's quota",
            ["destination", "tenant"],
            registry=self.registry,
        )
        self.share = Gauge(
            "fairlane_share_segments_per_second",
            "Recent dispatch rate (ten-second decay), to compare with the portion",
            ["destination", "tenant"],
            registry=self.registry,
        )
        self.destination = Gauge(
            "fairlane_destination",
            "Per destination: quota_rate, effective_rate, current_rate (segments/s), utilisation, backlog_segments",
            ["destination", "measure"],
            registry=self.registry,
        )

    async def render(self, pool: asyncpg.Pool) -> bytes:
        async with pool.acquire() as connection:
            queues = await health.queue_gauges(connection)
            destinations = await health.destination_gauges(connection)
        for gauge in (self.depth, self.portion, self.share, self.destination):
            gauge.clear()  # queues that went idle disappear
        for row in queues:
            labels = {"destination": row["destination"], "tenant": row["tenant"]}
            self.depth.labels(**labels).set(row["depth"] or 0)
            self.portion.labels(**labels).set(row["portion"] or 0)
            self.share.labels(**labels).set(row["recent_rate"] or 0)
        for row in destinations:
            for measure in ("quota_rate", "effective_rate", "current_rate", "utilisation", "backlog_segments"):
                self.destination.labels(destination=row["destination"], measure=measure).set(row[measure] or 0)
        return generate_latest(self.registry)


class DispatchMetrics:
    """Prometheus metrics of one dispatcher process (`fairlane dispatch --metrics-port P`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.dispatched = Counter(
            "fairlane_dispatched_segments",
            "Segments the gateway accepted",
            ["destination", "tenant"],
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "fairlane_queue_wait_seconds",
            "Time from acceptance to claim",
            ["destination"],
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
        )
        self.gateway_seconds = Histogram(
            "fairlane_gateway_seconds",
            "Gateway call latency",
            ["gateway"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.outcomes = Counter(
            "fairlane_gateway_outcomes",
            "Gateway answers: sent, failed, retry, throttled, release",
            ["gateway", "outcome"],
            registry=self.registry,
        )

    def serve(self, port: int) -> None:
        start_http_server(port, addr="127.0.0.1", registry=self.registry)
