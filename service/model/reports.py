"""What operators read, as the API shows it: queue scores (rows of fairlane.queue_scores) and the
dashboard's reading (fairlane.destination_load with each destination's queues)."""

import datetime as dt

from pydantic import Field

from service.model.fields import Shape


class QueueScore(Shape):
    destination: str
    tenant_set: str
    tenant: str
    sender: str
    queue_id: int
    depth: int
    oldest_age_seconds: float | None
    portion: float | None = Field(description="r_q in segments per second")
    recent_rate: float = Field(description="segments per second, averaged over about 10 s")
    score: float
    eligible: bool
    rank: int = Field(description="1: what the next claim takes first")
    level: str | None = Field(None, description="the level of service of the queue's next message")
    waiting_for: str | None = Field(None, description="why the claim passes the queue over (None: eligible)")
    binding_limit: str = Field("rate", description="the limit the queue is closest to: a quota window or 'rate'")
    limit_remaining: int | None = Field(None, description="segments left under it")
    limit_resets_at: dt.datetime | None = Field(None, description="when that quota window frees")


class QueueScores(Shape):
    queues: list[QueueScore]


class WindowUse(Shape):
    """One quota window of a destination (fairlane.window_load)."""

    window: str
    kind: str
    reset_timezone: str
    quota: int
    used: int
    remaining: int
    resets_at: dt.datetime | None
    closed: bool


class DestinationLoad(Shape):
    destination: str
    gateway: str
    quota_rate: float = Field(description="segments per second")
    burst: int
    effective_rate: float = Field(description="the quota after throttle back-off")
    current_rate: float = Field(description="segments per second, averaged over about 10 s")
    utilisation: float = Field(description="current_rate / quota_rate")
    backlog_messages: int
    backlog_segments: int
    active_tenants: int
    active_queues: int
    windows: list[WindowUse] | None = Field(None, description="its quota windows' use and reset")
    queues: list[QueueScore]


class Dashboard(Shape):
    at: dt.datetime
    destinations: list[DestinationLoad]
