"""The figures of `fairlane demo` (service/demo.py): what the carrier simulator received, turned into per
tenant shares against the fair-share ideal, queue waits and pacing, for the fair side and the FIFO side;
written as report.md, report.json and chart.png.

Times: the simulator stamps each message with seconds since its own start (`at`); the demo measures the
offset to wall-clock time with probe messages, so carrier arrival (wall) = at + offset. Queue wait =
carrier arrival - created_at (the API's acceptance time). A message the carrier had not received by the
end waited at least end - created_at: such waits are lower bounds, and so is any percentile they reach."""

import json
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SIDES = ("fair", "fifo")
SIDE_TITLES = {"fair": "fair (fairlane)", "fifo": "FIFO (fairness off)"}
INFINITE = math.inf


@dataclass(frozen=True)
class Scenario:
    rate: int
    burst: int
    flood: int
    otp_rate: float
    seconds: float
    tenants: tuple[str, ...]
    """The logical tenants; the first is the flood, the others send passcodes."""
    destinations: dict[str, str]
    """Side -> destination code."""
    target: str
    batch: int
    flood_requests: int
    """Flood batch requests in flight per side."""
    daily_cap: int = 0
    """DEMO-LEVELS' daily cap (tools/demo/levels.py); 0: no such side."""


@dataclass(frozen=True)
class Sent:
    side: str
    tenant: str
    id: str
    created: float
    """Wall-clock seconds (epoch) of the API's created_at."""
    submit_seconds: float
    """The HTTP round trip of the request that carried it (a batch for the flood)."""


@dataclass
class Observation:
    scenario: Scenario
    started: float
    """Wall-clock t = 0 of the traffic."""
    ended: float
    """Wall-clock end of the measurement (when /received was read)."""
    offset: float
    """Simulator `at` + offset = wall-clock seconds."""
    sent: list[Sent]
    received: list[dict[str, Any]]
    per_second: dict[str, dict[str, int]]
    portions: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    """Side -> queue tenant -> portions seen in GET /v1/admin/queues during the run."""
    rejected: dict[str, int] = field(default_factory=dict)
    flood_submitted_seconds: dict[str, float] = field(default_factory=dict)
    """Side -> seconds from t = 0 until the whole flood was accepted (absent: not by the end)."""
    flood_accepted: dict[str, int] = field(default_factory=dict)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of values (not empty)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def max_min(capacity: float, offered: dict[str, float]) -> dict[str, float]:
    """Equal-weight max-min shares: tenants asking less than an equal split get what they ask, the rest is
    split equally among the others (water-filling)."""
    share: dict[str, float] = {}
    left = dict(offered)
    remaining = capacity
    while left:
        each = remaining / len(left)
        small = {tenant: rate for tenant, rate in left.items() if rate <= each}
        if not small:
            share.update(dict.fromkeys(left, each))
            break
        for tenant, rate in small.items():
            share[tenant] = rate
            remaining -= rate
            del left[tenant]
    return share


def _wait_figures(waits: list[float], pending: list[float], p: float) -> tuple[float | None, bool]:
    """A percentile of waits, pending ones counted at their lower bound; True when it is only a bound."""
    if not waits and not pending:
        return None, False
    low = percentile(waits + pending, p)
    high = percentile(waits + [INFINITE] * len(pending), p)
    return low, high != low


def _max_window(times: list[float]) -> int:
    """The most arrivals in any 1 s window (sorted times)."""
    best = start = 0
    for end in range(len(times)):
        while times[end] - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def measure(observation: Observation) -> dict[str, Any]:
    """The report's figures (JSON-ready)."""
    scenario = observation.scenario
    t0, offset = observation.started, observation.offset
    end = observation.ended - t0
    window = (min(2.0, scenario.seconds / 4), scenario.seconds)
    span = window[1] - window[0]
    by_id = {sent.id: sent for sent in observation.sent}
    arrival: dict[str, float] = {}
    arrivals: dict[str, list[float]] = defaultdict(list)
    for item in observation.received:
        when = float(item["at"]) + offset - t0
        if 0 <= when <= end:  # (a simulator shared with earlier runs holds theirs too)
            arrivals[str(item.get("destination"))].append(when)
        if str(item.get("id")) in by_id:
            arrival.setdefault(str(item["id"]), when)

    flood_tenant, *otp_tenants = scenario.tenants
    tenants: dict[str, dict[str, dict[str, Any]]] = {}
    for side in SIDES:
        sent = {
            tenant: [s for s in observation.sent if s.side == side and s.tenant == tenant]
            for tenant in scenario.tenants
        }
        rates = {
            tenant: sum(1 for s in mine if window[0] <= arrival.get(s.id, -1.0) < window[1]) / span
            for tenant, mine in sent.items()
        }
        # the ideal split of what the destination did send in the window (pacing is judged on its own): the
        # passcode tenants offer otp_rate; the flood, still queued at the end, offers without limit
        backlogged = observation.flood_accepted.get(side, scenario.flood) > rates[flood_tenant] * window[1]
        offered = {flood_tenant: INFINITE if backlogged else rates[flood_tenant]}
        ideal = max_min(sum(rates.values()), {**offered, **dict.fromkeys(otp_tenants, scenario.otp_rate)})
        rows: dict[str, dict[str, Any]] = {}
        for tenant, mine in sent.items():
            waits = [arrival[s.id] - (s.created - t0) for s in mine if s.id in arrival]
            pending = [end - (s.created - t0) for s in mine if s.id not in arrival]
            rate = rates[tenant]
            p50, p50_bound = _wait_figures(waits, pending, 50)
            p99, p99_bound = _wait_figures(waits, pending, 99)
            queue = tenant if side == "fair" else "fifo"
            seen = observation.portions.get(side, {}).get(queue, [])
            rows[tenant] = {
                "sent": len(mine),
                "delivered": len(waits),
                "not_delivered": len(pending),
                "rate": round(rate, 2),
                "ideal": round(ideal[tenant], 2),
                "fairness_error": round(abs(rate - ideal[tenant]) / ideal[tenant], 4) if ideal[tenant] else None,
                # SPEC §2 with every queue active: one set, equal tenants; the FIFO side has one queue
                "portion": round(scenario.rate / len(scenario.tenants) if side == "fair" else scenario.rate, 2),
                "portion_seen": [min(seen), max(seen)] if seen else None,
                "p50_wait_ms": None if p50 is None else round(p50 * 1000, 1),
                "p50_lower_bound": p50_bound,
                "p99_wait_ms": None if p99 is None else round(p99 * 1000, 1),
                "p99_lower_bound": p99_bound,
            }
        tenants[side] = rows

    pacing: dict[str, dict[str, Any]] = {}
    for side, destination in scenario.destinations.items():
        seconds = {  # the simulator's seconds that overlap the run
            int(s): n for s, n in observation.per_second.get(destination, {}).items() if -1 < int(s) + offset - t0 < end
        }
        steady = [n for s, n in seconds.items() if window[0] <= s + offset - t0 and s + 1 + offset - t0 <= window[1]]
        limit = scenario.rate + scenario.burst
        pacing[side] = {
            "destination": destination,
            "quota": scenario.rate,
            "burst": scenario.burst,
            "mean_rate": round(statistics.fmean(steady), 2) if steady else None,
            "mean_over_quota": round(statistics.fmean(steady) / scenario.rate, 4) if steady else None,
            "max_second": max(seconds.values(), default=0),
            "max_any_window": _max_window(sorted(arrivals.get(destination, []))),
            "seconds_above_limit": sum(1 for n in seconds.values() if n > limit),
            "seconds": len(seconds),
        }

    levels_figures = None
    if any(s.side == "levels" for s in observation.sent):
        from tools.demo import levels  # (it imports this module)

        levels_figures = levels.figures(
            observation.sent, arrival, t0, end, scenario.daily_cap, observation.rejected, window[0]
        )
    figures: dict[str, Any] = {
        "scenario": asdict(scenario),
        "window_seconds": list(window),
        "end_seconds": round(end, 3),
        "tenants": tenants,
        "fairness_error": {side: max(row["fairness_error"] or 0.0 for row in tenants[side].values()) for side in SIDES},
        "pacing": pacing,
        "rejected": observation.rejected,
        "flood_accepted": {side: observation.flood_accepted.get(side, 0) for side in SIDES},
        "flood_submitted_seconds": observation.flood_submitted_seconds,
        "submit_ms": _submit_figures(observation),
        "levels": levels_figures,
    }
    figures["verdict"] = _verdict(figures)
    return figures


def _submit_figures(observation: Observation) -> dict[str, dict[str, list[float] | None]]:
    """p50 and p99 of the HTTP round trip per side: passcodes (single POSTs) and flood batches."""
    figures: dict[str, dict[str, list[float] | None]] = {}
    flood_tenant = observation.scenario.tenants[0]
    for side in SIDES:
        passcodes = [s.submit_seconds for s in observation.sent if s.side == side and s.tenant != flood_tenant]
        # every message of a batch carries its batch's round trip: one value per batch
        batches = list({s.created: s.submit_seconds for s in observation.sent if s.side == side and
                        s.tenant == flood_tenant}.values())  # fmt: skip
        figures[side] = {
            name: [round(percentile(values, p) * 1000, 1) for p in (50, 99)] if values else None
            for name, values in (("passcodes", passcodes), ("flood_batches", batches))
        }
    return figures


def duration(milliseconds: float | None, lower_bound: bool = False) -> str:
    if milliseconds is None:
        return "-"
    text = f"{milliseconds:.0f} ms" if milliseconds < 1000 else f"{milliseconds / 1000:.1f} s"
    return f"≥ {text}" if lower_bound else text


def _otp_rows(figures: dict[str, Any], side: str) -> list[dict[str, Any]]:
    return [row for tenant, row in figures["tenants"][side].items() if tenant != figures["scenario"]["tenants"][0]]


def _worst_p99(rows: list[dict[str, Any]]) -> tuple[float, bool]:
    worst = max(rows, key=lambda row: (row["p99_wait_ms"] or 0, row["p99_lower_bound"]))
    return worst["p99_wait_ms"] or 0.0, worst["p99_lower_bound"]


def _verdict(figures: dict[str, Any]) -> str:
    scenario, flood = figures["scenario"], figures["scenario"]["tenants"][0]
    fair, fifo = _otp_rows(figures, "fair"), _otp_rows(figures, "fifo")
    fair_p99, fifo_p99 = _worst_p99(fair), _worst_p99(fifo)
    bulk, fifo_bulk = figures["tenants"]["fair"][flood], figures["tenants"]["fifo"][flood]
    sent = {side: sum(row["sent"] for row in rows) for side, rows in (("fair", fair), ("fifo", fifo))}
    late = {side: sum(row["not_delivered"] for row in rows) for side, rows in (("fair", fair), ("fifo", fifo))}
    limit = scenario["rate"] + scenario["burst"]
    paced = all(pacing["seconds_above_limit"] == 0 for pacing in figures["pacing"].values())
    accepted = min(figures["flood_accepted"].values())
    flood = (
        f"The API had accepted {accepted:,} of the {scenario['flood']:,} flood messages per side by the end "
        f"(about {accepted / figures['end_seconds']:,.0f}/s per side, {accepted / scenario['rate']:,.0f} s of "
        "quota): still a backlog far beyond what the run could send."
        if accepted < scenario["flood"]
        else ""
    )
    return " ".join(
        (
            f"With fairness, passcodes waited p99 {duration(*fair_p99)} ({sent['fair'] - late['fair']} of "
            f"{sent['fair']} delivered) while the flood ran at {bulk['rate']:.0f}/s of the {scenario['rate']}/s quota,",
            f"its max-min share of {bulk['ideal']:.0f}/s (its {bulk['portion']:g}/s portion while every tenant is",
            "active, plus what the passcode tenants left unused); fairness error",
            f"{figures['fairness_error']['fair']:.1%}. Without it (one FIFO queue for the route), the flood took",
            f"{fifo_bulk['rate']:.0f}/s and passcodes waited p99 {duration(*fifo_p99)} behind it ({late['fifo']} of",
            f"{sent['fifo']} not delivered by the end); fairness error {figures['fairness_error']['fifo']:.1%}.",
            f"On both destinations no second at the carrier exceeded rate + burst ({limit})."
            if paced
            else f"Some second at the carrier exceeded rate + burst ({limit}): see Pacing.",
            flood,
        )
    ).strip()


def tenant_table(figures: dict[str, Any]) -> list[str]:
    lines = [
        "| side | tenant | sent | delivered | rate msg/s | max-min share msg/s | fairness error "
        "| portion msg/s | portion seen | p50 wait | p99 wait |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for side in SIDES:
        for tenant, row in figures["tenants"][side].items():
            portion = f"{row['portion']:g}" + (" (one queue)" if side == "fifo" else "")
            seen = "-" if row["portion_seen"] is None else "–".join(f"{value:g}" for value in row["portion_seen"])
            error = "-" if row["fairness_error"] is None else f"{row['fairness_error']:.1%}"
            lines.append(
                f"| {side} | {tenant} | {row['sent']:,} | {row['delivered']:,} | {row['rate']:.1f} "
                f"| {row['ideal']:.1f} | {error} | {portion} | {seen} "
                f"| {duration(row['p50_wait_ms'], row['p50_lower_bound'])} "
                f"| {duration(row['p99_wait_ms'], row['p99_lower_bound'])} |"
            )
    return lines


def markdown(figures: dict[str, Any]) -> str:
    scenario = figures["scenario"]
    window = figures["window_seconds"]
    lines = [
        "# fairlane demo: a noisy neighbour, fair against FIFO",
        "",
        figures["verdict"],
        "",
        "## Scenario",
        "",
        "| parameter | value |",
        "|---|---|",
        f"| fairlane | {scenario['target']} |",
        f"| destinations | {scenario['destinations']['fair']} (fair) and {scenario['destinations']['fifo']} (FIFO), "
        f"each {scenario['rate']} segments/s, burst {scenario['burst']} |",
        f"| flood | {scenario['flood']:,} messages per side from t = 0, `POST /v1/messages/batch` of "
        f"{scenario['batch']:,}, {scenario['flood_requests']} request(s) in flight per side |",
        f"| passcodes | {len(scenario['tenants']) - 1} streams × {scenario['otp_rate']:g} messages/s for "
        f"{scenario['seconds']:g} s per side, single `POST /v1/messages` |",
        f"| steady window | {window[0]:g}–{window[1]:g} s (rates and pacing) |",
        f"| end of measurement | {figures['end_seconds']:.1f} s |",
        "",
        "The fair side gives each logical tenant its own fairlane tenant (tenant set `demo`); the FIFO side sends "
        "every stream as one tenant `fifo` with one sender: one queue for the route, messages leave in arrival "
        "order, as on a platform without fairlane. Both sides run at the same time through the same API, "
        "dispatchers and carrier simulator.",
        "",
        "## Per tenant",
        "",
        *tenant_table(figures),
        "",
        "rate: messages at the carrier per second in the steady window. max-min share: the fair-share ideal "
        "(SPEC §2, equal weights) of what the destination sent in the window (how close that came to the quota "
        "is under Pacing): passcode tenants ask less than an equal split and get all they ask; the flood gets "
        "the rest. fairness error: |rate − share| / share. portion: fairlane's r_q "
        "(SPEC §2) while every queue of the destination is active; portion seen: the range `GET /v1/admin/queues` "
        "showed once a second while the queue was active (a passcode queue is active only for the moment a "
        "message waits, so the flood's portion is often the whole quota; on the FIFO side all share one). "
        "wait: carrier arrival − created_at; ≥ marks a lower bound (messages not delivered by the end count "
        "with end − created_at).",
        "",
        "## Pacing",
        "",
        "| side | destination | quota/s | mean rate/s (steady) | mean / quota | max second | max any 1 s window "
        "| seconds above rate + burst |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for side, pacing in figures["pacing"].items():
        mean = "-" if pacing["mean_rate"] is None else f"{pacing['mean_rate']:g}"
        ratio = "-" if pacing["mean_over_quota"] is None else f"{pacing['mean_over_quota']:.1%}"
        lines.append(
            f"| {side} | {pacing['destination']} | {pacing['quota']} | {mean} | {ratio} | {pacing['max_second']} "
            f"| {pacing['max_any_window']} | {pacing['seconds_above_limit']} of {pacing['seconds']} |"
        )
    lines += [
        "",
        "## Submissions through the API",
        "",
        "| side | flood accepted | flood fully accepted after | passcode POST p50 / p99 | batch POST p50 / p99 |",
        "|---|---|---|---|---|",
    ]
    for side in SIDES:
        done = figures["flood_submitted_seconds"].get(side)
        submit = figures["submit_ms"][side]
        cells = [
            "-" if submit[name] is None else " / ".join(duration(v) for v in submit[name])
            for name in ("passcodes", "flood_batches")
        ]
        lines.append(
            f"| {side} | {figures['flood_accepted'][side]:,} of {scenario['flood']:,} "
            f"| {'not by the end' if done is None else f'{done:.1f} s'} | {cells[0]} | {cells[1]} |"
        )
    if figures["levels"] is not None:
        from tools.demo import levels

        lines += ["", *levels.markdown(figures["levels"])]
    rejected = ", ".join(f"{code}: {count}" for code, count in figures["rejected"].items()) or "none"
    lines += [
        "",
        f"Rejected submissions: {rejected}. Queue wait starts at created_at, when the API's transaction began: "
        "the POST round trip (time in the API before and after it) is not part of it.",
        "",
        "![per-tenant throughput and passcode wait, fair against FIFO](chart.png)",
        "",
    ]
    return "\n".join(lines)


def _per_second(times: Iterable[float], until: float) -> tuple[list[int], list[int]]:
    """Arrivals per whole second in [0, until), each second's count drawn until the next (a step)."""
    counts = Counter(math.floor(t) for t in times if 0 <= t < until)
    seconds = list(range(math.floor(until) + 1))
    return seconds, [counts.get(s, 0) for s in seconds[:-1]] + [counts.get(seconds[-2], 0) if until >= 1 else 0]


def chart(observation: Observation, figures: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    scenario = observation.scenario
    t0, end = observation.started, observation.ended - observation.started
    arrival = {str(item["id"]): float(item["at"]) + observation.offset - t0 for item in observation.received}
    columns = 3 if figures["levels"] is not None else 2
    figure, axes = pyplot.subplots(
        2, columns, figsize=(6.5 * columns, 8), sharex=True, sharey="row", layout="constrained"
    )
    colours = dict(zip(scenario.tenants, ("tab:red", "tab:blue", "tab:green", "tab:purple"), strict=False))
    for column, side in enumerate(SIDES):
        top, bottom = axes[0][column], axes[1][column]
        for tenant in scenario.tenants:
            mine = [s for s in observation.sent if s.side == side and s.tenant == tenant]
            seconds, counts = _per_second((arrival[s.id] for s in mine if s.id in arrival), end)
            top.step(seconds, counts, where="post", label=tenant, color=colours[tenant], linewidth=1.6)
            if tenant == scenario.tenants[0]:
                continue
            done = [(s.created - t0, arrival[s.id] - (s.created - t0)) for s in mine if s.id in arrival]
            late = [(s.created - t0, end - (s.created - t0)) for s in mine if s.id not in arrival]
            if done:
                bottom.scatter(*zip(*done, strict=True), s=9, color=colours[tenant], label=f"{tenant} delivered")
            if late:
                bottom.scatter(
                    *zip(*late, strict=True), s=14, marker="^", facecolors="none", edgecolors=colours[tenant],
                    label=f"{tenant} not delivered (≥)",
                )  # fmt: skip
        top.axhline(scenario.rate, color="grey", linestyle="--", linewidth=1, label=f"quota {scenario.rate}/s")
        top.set_yscale("symlog", linthresh=1, linscale=0.5)
        top.set_title(f"{SIDE_TITLES[side]}: messages/s at the carrier ({scenario.destinations[side]})")
        top.set_ylabel("messages/s (symlog)")
        if column == 0:  # the same tenants and colours on both sides
            top.legend(loc="lower right", fontsize=8, ncol=5)
        bottom.set_yscale("log")
        bottom.set_title(f"{SIDE_TITLES[side]}: passcode queue wait (carrier arrival − created_at)")
        bottom.set_xlabel("seconds since the flood started (x: when the API accepted the passcode)")
        bottom.set_ylabel("queue wait, s (log)")
        bottom.axhline(1.0, color="grey", linestyle=":", linewidth=1)
        sent_at = [end * i / 200 for i in range(200)]
        bottom.plot(
            sent_at, [end - x for x in sent_at], color="grey", linestyle="--", linewidth=0.8,
            label="end of measurement",
        )  # fmt: skip
        bottom.legend(loc="best", fontsize=7, ncol=2)
        bottom.grid(True, which="major", alpha=0.3)
        top.grid(True, which="major", alpha=0.3)
    if figures["levels"] is not None:
        from tools.demo import levels

        levels.chart(
            axes[0][2], axes[1][2], observation.sent, arrival, t0, end, scenario.rate,
            figures["levels"]["cap_spent_seconds"], _per_second,
        )  # fmt: skip
    axes[1][0].set_xlim(0, end)
    figure.suptitle(
        f"fairlane demo: {scenario.flood:,}-message flood + {len(scenario.tenants) - 1} passcode streams at "
        f"{scenario.otp_rate:g}/s, quota {scenario.rate}/s per destination"
    )
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def write(observation: Observation, out: Path) -> tuple[dict[str, Any], Path, Path]:
    """Write report.md, report.json and chart.png into `out`; return the figures and the two paths."""
    out.mkdir(parents=True, exist_ok=True)
    figures = measure(observation)
    report, picture = out / "report.md", out / "chart.png"
    report.write_text(markdown(figures))
    (out / "report.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    chart(observation, figures, picture)
    return figures, report, picture
