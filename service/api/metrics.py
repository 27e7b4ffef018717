"""Prometheus metrics of the API process (GET /metrics). Counters of what this process accepted and
refused; gauges read from the database at scrape time (queue depth, portion and recent rate per
destination and tenant, destination quota and utilisation), so any API process shows the whole system.
Dispatcher processes export their own (service/workers/metrics.py)."""

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from db import reports


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
            queues = await reports.queue_gauges(connection)
            destinations = await reports.destination_gauges(connection)
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
