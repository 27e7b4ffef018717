"""Prometheus metrics of one dispatcher process (`fairlane dispatch --metrics-port P`)."""

import logging

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

logger = logging.getLogger(__name__)


def geometric_buckets(first: float, last: float, factor: float = 1.25) -> tuple[float, ...]:
    """Bucket bounds `factor` apart from `first` up to at least `last`: a quantile read from the buckets
    (linearly within one, as histogram_quantile and the soak benchmark do) is off by less than a bucket's width."""
    bounds = [first]
    while bounds[-1] < last:
        bounds.append(round(bounds[-1] * factor, 6))
    return tuple(bounds)


QUEUE_WAIT_BUCKETS = geometric_buckets(0.001, 10.0) + (30, 60, 300, 900, 3600)
CLAIM_BUCKETS = geometric_buckets(0.0005, 1.0) + (2.5, 5, 10)


class DispatchMetrics:
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
            buckets=QUEUE_WAIT_BUCKETS,
        )
        self.claim_seconds = Histogram(
            "fairlane_claim_seconds",
            "Time one claim call takes (fairlane.claim_v2), empty ones included",
            ["destination"],
            registry=self.registry,
            buckets=CLAIM_BUCKETS,
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


def serve(port: int | None) -> DispatchMetrics | None:
    """Metrics served on 127.0.0.1:port/metrics; None without a port, or when the port is taken (metrics are
    an aid: dispatching goes on without them)."""
    if port is None:
        return None
    metrics = DispatchMetrics()
    try:
        metrics.serve(port)
    except OSError as error:
        logger.warning("metrics port unavailable", extra={"port": port, "error": str(error)})
        return None
    return metrics
