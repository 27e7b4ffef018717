"""The demo's third destination, DEMO-LEVELS (docs/decisions/0020): levels of service and a daily cap.

Tenant `mixed` sends a campaign (priority bulk) at t = 0 and passcodes (priority high) all along, beside
tenant `bulk`'s flood (normal); the destination has a daily cap of half the demo's quota, so it runs out
halfway through. The cap resets at a local midnight about twelve hours away (a fixed-offset time zone chosen
at the start), past every message's validity: what the cap cannot take before then is refused at once with
queue_overflow (Retry-After at the reset), the same every time the demo runs. The report shows the passcodes'
wait against the campaign's, the two tenants' shares while the cap lasts, when it ran out and what was refused;
the chart a third column."""

import asyncio
import datetime as dt
import math
import secrets
import time
from typing import Any

from tools.demo.report import Sent, percentile

DESTINATION = "DEMO-LEVELS"
TENANT, SENDER = "mixed", "+15550101010"
STREAMS = ("mixed-high", "mixed-bulk", "bulk")
COLOURS = {"mixed-high": "tab:green", "mixed-bulk": "tab:orange", "bulk": "tab:red"}
CAMPAIGN_BODY = "Our winter catalogue is out: 30% off outdoor gear until Sunday. Reply STOP to opt out."
FLOOD_BODY = "Flash sale tonight only: everything must go. Reply STOP to opt out."
BATCH = 1000


def daily_cap(rate: int, seconds: float) -> int:
    """Half of what the destination's quota sends in the demo: it runs out halfway."""
    return max(1, round(rate * seconds / 2))


def reset_zone(now: dt.datetime) -> str:
    """A fixed-offset time zone where it is now about noon: its midnight is eleven to thirteen hours away."""
    offset = (12 - now.astimezone(dt.UTC).hour) % 24
    offset = offset - 24 if offset > 14 else offset
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-9 is UTC+9


async def configure(client: Any, gateway: str, rate: int, burst: int, seconds: float) -> None:
    """The destination, first without its cap (a fresh count: an earlier run may have spent today's), then
    with it; tenant `mixed` and its sender."""
    quota = {"gateway": gateway, "rate": rate, "burst": burst, "max_drain_seconds": 36000}
    await client.admin("PUT", f"/v1/admin/destinations/{DESTINATION}", quota)
    capped = {**quota, "per_day": daily_cap(rate, seconds), "reset_timezone": reset_zone(dt.datetime.now(dt.UTC))}
    await client.admin("PUT", f"/v1/admin/destinations/{DESTINATION}", capped)


def message(sender: str, index: int, body: str, priority: str) -> dict[str, Any]:
    return {"to": f"+1556{index % 10_000_000:07d}", "from": sender, "body": body, "destination": DESTINATION,
            "validity_seconds": 36000, "priority": priority}  # fmt: skip


async def traffic(
    client: Any, keys: dict[str, str], flood_sender: str, rate: int, seconds: float, otp_rate: float, live: Any
) -> None:
    """At t = 0 the campaign and the flood, each as much as the quota sends in the whole demo, in batches; the
    passcodes at `otp_rate` for `seconds`."""
    started = time.monotonic()
    size = max(1, round(rate * seconds))

    async def batches(tenant: str, sender: str, stream: str, priority: str, body: str) -> None:
        for first in range(0, size, BATCH):
            items = [message(sender, first + i, body, priority) for i in range(min(BATCH, size - first))]
            posted = time.monotonic()
            status, answer = await client.call("POST", "/v1/messages/batch", keys[tenant], {"messages": items})
            if status != 200:
                live.rejected[f"{DESTINATION} HTTP {status}"] += len(items)
                continue
            for result in answer["results"]:
                if "message" in result:
                    live.record("levels", stream, result["message"], time.monotonic() - posted)
                else:
                    live.rejected[f"{DESTINATION} {stream} {result['error']['code']}"] += 1

    async def passcode(index: int) -> None:
        item = message(SENDER, index, f"Your passcode is {secrets.randbelow(10**6):06d}", "high")
        posted = time.monotonic()
        status, answer = await client.call("POST", "/v1/messages", keys[TENANT], item)
        if status == 202:
            live.record("levels", "mixed-high", answer, time.monotonic() - posted)
        else:
            live.rejected[f"{DESTINATION} mixed-high {answer.get('error', {}).get('code', f'HTTP {status}')}"] += 1

    async def passcodes() -> None:
        tasks = []
        for index in range(int(seconds * otp_rate)):
            await asyncio.sleep(max(0.0, started + index / otp_rate - time.monotonic()))
            tasks.append(asyncio.create_task(passcode(index)))
        await asyncio.gather(*tasks)

    await asyncio.gather(
        batches(TENANT, SENDER, "mixed-bulk", "bulk", CAMPAIGN_BODY),
        batches("bulk", flood_sender, "bulk", "normal", FLOOD_BODY),
        passcodes(),
    )


def figures(sent: list[Sent], arrival: dict[str, float], t0: float, end: float, cap: int,
            rejected: dict[str, int], window_start: float) -> dict[str, Any]:  # fmt: skip
    """Per stream: accepted, refused, at the carrier, p50/p99 wait; the shares while the cap lasted; when it ran
    out; what reached the carrier in all (never more than the cap)."""
    mine = [s for s in sent if s.side == "levels"]
    arrivals = sorted(arrival[s.id] for s in mine if s.id in arrival)
    spent_at = arrivals[cap - 1] if len(arrivals) >= cap else None
    until = spent_at if spent_at is not None else end
    rows: dict[str, dict[str, Any]] = {}
    for stream in STREAMS:
        of_stream = [s for s in mine if s.tenant == stream]
        waits = sorted(arrival[s.id] - (s.created - t0) for s in of_stream if s.id in arrival)
        refused = sum(n for key, n in rejected.items() if key.startswith(f"{DESTINATION} {stream} "))
        rows[stream] = {
            "accepted": len(of_stream),
            "refused": refused,
            "at_carrier": len(waits),
            "in_window": sum(1 for s in of_stream if window_start <= arrival.get(s.id, -1.0) < until),
            "p50_wait_ms": round(percentile(waits, 50) * 1000, 1) if waits else None,
            "p99_wait_ms": round(percentile(waits, 99) * 1000, 1) if waits else None,
        }
    mixed = rows["mixed-high"]["in_window"] + rows["mixed-bulk"]["in_window"]
    total = mixed + rows["bulk"]["in_window"]
    return {
        "destination": DESTINATION,
        "daily_cap": cap,
        "cap_spent_seconds": None if spent_at is None else round(spent_at, 2),
        "at_carrier": len(arrivals),
        "streams": rows,
        "mixed_share": round(mixed / total, 4) if total else None,
        "campaign_share_of_mixed": round(rows["mixed-bulk"]["in_window"] / mixed, 4) if mixed else None,
    }


def markdown(levels: dict[str, Any]) -> list[str]:
    rows = levels["streams"]
    spent = levels["cap_spent_seconds"]
    lines = [
        "## Levels of service and a daily cap",
        "",
        f"{levels['destination']}: tenant `mixed` sends a campaign (priority bulk) and passcodes (priority high) "
        f"beside tenant `bulk`'s flood; the destination's daily cap of {levels['daily_cap']:,} segments "
        + (f"ran out at {spent:.1f} s" if spent is not None else "did not run out")
        + f"; {levels['at_carrier']:,} messages reached the carrier in all. What the cap could not take before its "
        "reset (about twelve hours away, past the messages' validity) was refused at once with queue_overflow.",
        "",
        "| stream | accepted | refused | at the carrier | p50 wait | p99 wait |",
        "|---|---|---|---|---|---|",
    ]
    for stream, row in rows.items():
        p50, p99 = (row[k] for k in ("p50_wait_ms", "p99_wait_ms"))
        lines.append(
            f"| {stream} | {row['accepted']:,} | {row['refused']:,} | {row['at_carrier']:,} "
            f"| {'-' if p50 is None else f'{p50:.0f} ms'} | {'-' if p99 is None else f'{p99:.0f} ms'} |"
        )
    share, campaign = levels["mixed_share"], levels["campaign_share_of_mixed"]
    if share is not None and campaign is not None:
        lines += [
            "",
            f"While the cap lasted, `mixed` had {share:.1%} of the carrier's messages (its fair share: 50%), its "
            f"campaign {campaign:.1%} of them: its passcodes went first inside its share without taking any of "
            "`bulk`'s.",
        ]
    return [*lines, ""]


def chart(top: Any, bottom: Any, sent: list[Sent], arrival: dict[str, float], t0: float, end: float,
          rate: int, spent: float | None, per_second: Any) -> None:  # fmt: skip
    """The third column: messages per second at the carrier by stream, and the passcodes' wait."""
    for stream in STREAMS:
        mine = [s for s in sent if s.side == "levels" and s.tenant == stream]
        seconds, counts = per_second((arrival[s.id] for s in mine if s.id in arrival), end)
        top.step(seconds, counts, where="post", label=stream, color=COLOURS[stream], linewidth=1.6)
    top.axhline(rate, color="grey", linestyle="--", linewidth=1, label=f"quota {rate}/s")
    if spent is not None:
        top.axvline(spent, color="black", linestyle=":", linewidth=1.2, label="daily cap spent")
    top.set_title(f"levels of service and a daily cap ({DESTINATION})")
    top.legend(loc="lower right", fontsize=8)
    top.grid(True, which="major", alpha=0.3)
    passcodes = [s for s in sent if s.side == "levels" and s.tenant == "mixed-high" and s.id in arrival]
    if passcodes:
        points = [(s.created - t0, max(arrival[s.id] - (s.created - t0), 1e-3)) for s in passcodes]
        bottom.scatter(*zip(*points, strict=True), s=9, color=COLOURS["mixed-high"], label="passcodes (high)")
        bottom.legend(loc="best", fontsize=7)
    bottom.set_title("mixed's passcodes: queue wait beside its own campaign")
    bottom.set_xlabel("seconds since the start (x: when the API accepted the passcode)")
    bottom.grid(True, which="major", alpha=0.3)
    if math.isfinite(end):
        bottom.set_xlim(0, end)
