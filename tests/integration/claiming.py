"""Driving the claim with an injected clock: deterministic fairness and pacing checks in SQL."""

import datetime as dt
from dataclasses import dataclass

from tests.integration.fixtures import apply_config


@dataclass(frozen=True)
class Sent:
    at: float  # seconds since the start of the run
    queue: str  # "tenant/sender"
    segments: int


def setup(conn, *, rate, burst=10, tenant_sets, tenants, allocations=(), code="X", windows=None, sender_windows=None):
    """A destination `code` routed from +1 for long codes; tenants: (name, set, weight, [(sender, cap)]);
    `windows`: the destination's quota windows (per_day, reset_timezone, ...), `sender_windows` a sender's by
    address."""
    config = {
        "tenant_sets": [{"name": name, "weight": weight} for name, weight in tenant_sets],
        "gateways": [{"name": "g", "kind": "http", "url": "http://127.0.0.1:9/"}],
        "destinations": [
            {
                "code": code,
                "gateway": "g",
                "rate": rate,
                "burst": burst,
                "max_drain_seconds": 36000,
                "allocations": [dict(a) for a in allocations],
                **(windows or {}),
            }
        ],
        "tenants": [
            {
                "name": name,
                "tenant_set": tenant_set,
                "weight": weight,
                "senders": [
                    {
                        "address": address,
                        "type": "long_code",
                        **({"rate_cap": cap} if cap else {}),
                        **(sender_windows or {}).get(address, {}),
                    }
                    for address, cap in senders
                ],
            }
            for name, tenant_set, weight, senders in tenants
        ],
        "routes": [{"prefix": "+1", "sender_type": "long_code", "destination": code}],
    }
    apply_config(conn, config)
    return conn.execute("SELECT id FROM fairlane.destinations WHERE code = %s", (code,)).fetchone()[0]


def backlog(conn, tenant, sender, count, body="x", priority=None):
    conn.execute(
        """INSERT INTO fairlane.outbox (tenant, sender, recipient, body, priority)
           SELECT %s, %s, '+1555' || lpad(i::text, 7, '0'), %s, %s FROM generate_series(1, %s) i""",
        (tenant, sender, body, priority, count),
    )


class Clock:
    """Claims a destination every `step` seconds of simulated time, completing each claim as sent."""

    def __init__(self, conn, destination_id, *, step=0.05, max_messages=100):
        self.conn = conn
        self.destination_id = destination_id
        self.step = step
        self.max_messages = max_messages
        self.start = conn.execute("SELECT clock_timestamp() + interval '1 second'").fetchone()[0]
        self.now = 0.0
        self.sent: list[Sent] = []

    def at(self, seconds: float) -> dt.datetime:
        return self.start + dt.timedelta(seconds=seconds)

    def claim(self):
        rows = self.conn.execute(
            "SELECT message_id, claim_id, tenant, sender, segments FROM fairlane.claim_v2(%s, %s, 30, %s)",
            (self.destination_id, self.max_messages, self.at(self.now)),
        ).fetchall()
        if rows:
            ids = [r[0] for r in rows]
            n = len(ids)
            self.conn.execute(
                "SELECT fairlane.complete_v1(%s, %s, %s, %s, %s, %s, %s, 5, %s)",
                (rows[0][1], ids, ["sent"] * n, [None] * n, [None] * n, [None] * n, [None] * n, self.at(self.now)),
            )
        self.sent.extend(Sent(self.now, f"{r[2]}/{r[3]}", r[4]) for r in rows)
        return rows

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.claim()
            self.now = round(self.now + self.step, 6)

    def segments(self, start: float, end: float) -> dict[str, int]:
        totals: dict[str, int] = {}
        for s in self.sent:
            if start <= s.at < end:
                totals[s.queue] = totals.get(s.queue, 0) + s.segments
        return totals

    def max_in_any_second(self, start: float, end: float) -> int:
        times = sorted((s.at, s.segments) for s in self.sent if start <= s.at < end)
        best = 0
        for i, (t, _) in enumerate(times):
            best = max(best, sum(seg for u, seg in times[i:] if u < t + 1.0 - 1e-9))
        return best
