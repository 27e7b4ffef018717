"""The fairness oracle (SPEC §2), written independently of the SQL: ideal hierarchical weighted max-min
shares of a destination's quota among backlogged queues, and the fairness error of measured shares."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Queue:
    name: str
    tenant: str
    tenant_set: str
    cap: float | None = None


def water_fill(capacity: float, weights: dict[str, float], caps: dict[str, float | None]) -> dict[str, float]:
    shares: dict[str, float] = {}
    open_ = set(weights)
    remaining = capacity
    while open_:
        total = sum(weights[k] for k in open_)
        capped = {k for k in open_ if caps[k] is not None and remaining * weights[k] / total >= caps[k]}
        if not capped:
            for k in open_:
                shares[k] = remaining * weights[k] / total
            break
        for k in capped:
            shares[k] = caps[k]
            remaining -= caps[k]
        open_ -= capped
    return shares


def _cap(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(values)


def ideal_rates(
    quota: float,
    queues: list[Queue],
    set_weights: dict[str, float],
    tenant_weights: dict[str, float] | None = None,
    set_rates: dict[str, float] | None = None,
) -> dict[str, float]:
    """Segments per second each queue should get while all are backlogged."""
    tenant_weights = tenant_weights or {}
    set_rates = set_rates or {}
    tenants = {q.tenant: q.tenant_set for q in queues}
    tenant_caps = {t: _cap([q.cap for q in queues if q.tenant == t]) for t in tenants}
    sets = set(tenants.values())
    set_caps = {s: _cap([tenant_caps[t] for t in tenants if tenants[t] == s]) for s in sets}
    absolute = {s for s in sets if s in set_rates}
    weighted = sets - absolute
    rates: dict[str, float] = {}
    wanted = sum(min(set_rates[s], set_caps[s] or set_rates[s]) for s in absolute)
    scale = min(1.0, quota / wanted) if wanted else 1.0
    for s in absolute:
        rates[s] = min(set_rates[s], set_caps[s] or set_rates[s]) * scale
    leftover = quota - sum(rates.values())
    rates.update(
        water_fill(leftover, {s: set_weights.get(s, 1.0) for s in weighted}, {s: set_caps[s] for s in weighted})
    )
    leftover = quota - sum(rates.values())
    if leftover > 1e-9 and absolute:
        extra = water_fill(
            leftover,
            {s: set_rates[s] for s in absolute},
            {s: None if set_caps[s] is None else max(set_caps[s] - rates[s], 0) for s in absolute},
        )
        for s, e in extra.items():
            rates[s] += e
    tenant_rates: dict[str, float] = {}
    for s in sets:
        members = [t for t in tenants if tenants[t] == s]
        tenant_rates.update(
            water_fill(rates[s], {t: tenant_weights.get(t, 1.0) for t in members}, {t: tenant_caps[t] for t in members})
        )
    queue_rates: dict[str, float] = {}
    for t in tenants:
        members = [q for q in queues if q.tenant == t]
        queue_rates.update(
            water_fill(tenant_rates[t], {q.name: 1.0 for q in members}, {q.name: q.cap for q in members})
        )
    return queue_rates


def fairness_error(measured: dict[str, float], ideal: dict[str, float]) -> float:
    """max over queues of |m_q - a_q| / a_q, on shares of the total."""
    measured_total = sum(measured.values())
    ideal_total = sum(ideal.values())
    return max(abs(measured.get(q, 0) / measured_total - a / ideal_total) / (a / ideal_total) for q, a in ideal.items())
