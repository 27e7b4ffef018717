"""The carrier simulator's configuration (TOML), declared once; errors name the field and the value."""

from typing import Annotated

from pydantic import Field

from service.model.fields import Body


class Limit(Body):
    rate: Annotated[float, Field(gt=0)]
    """Segments per second the carrier takes (rate + burst in any sliding second; 429 beyond)."""
    burst: Annotated[float, Field(ge=0)] = 0.0


Rate = Annotated[float, Field(ge=0, le=1)]
Milliseconds = tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]]


class SmppAccount(Body):
    password: str = ""
    destination: str | None = None
    """The destination its parts count under (rate limit, `GET /stats`); default: the system_id."""


class SmppConfig(Body):
    """The SMPP side (`--smpp-port`; tools/simulator/smpp.py)."""

    accounts: dict[str, SmppAccount] = {}
    """system_id -> account; none: any system_id binds with any password."""
    max_binds: Annotated[int, Field(ge=1)] = 8
    """Binds per account at once (ESME_RBINDFAIL beyond)."""
    window: Annotated[int, Field(ge=1)] = 100
    """Unanswered submit_sm per bind (ESME_RMSGQFUL beyond)."""
    drop_after: Annotated[int, Field(ge=0)] = 0
    """Drop a bind's TCP session, its window full and unanswered, at its Nth submit_sm (0: never)."""
    max_drops: Annotated[int, Field(ge=0)] = 1
    late_receipt_rate: Rate = 0.0
    late_receipt_delay_ms: Milliseconds = (2000.0, 3000.0)
    unknown_receipt_rate: Rate = 0.0
    """Besides a part's receipt, one for an id never given."""
    receipts: bool = True
    """Delivery receipts (deliver_sm) for the parts that ask for them."""
    nack_every: Annotated[int, Field(ge=0)] = 0
    """Answer every Nth submit_sm (counted over all binds) with generic_nack (0: never)."""
    slow_every: Annotated[int, Field(ge=0)] = 0
    """Answer every Nth submit_sm (counted over all binds) `slow_ms` late (0: never); one whose session has
    closed meanwhile is never accepted."""
    slow_ms: Annotated[float, Field(ge=0)] = 5000.0
    answer_enquire_link: bool = True
    """False: enquire_link goes unanswered (a link that looks dead)."""
    unbind_after: Annotated[int, Field(ge=0)] = 0
    """Unbind a bind (the carrier's own unbind) once it has answered its Nth submit_sm, once a run (0: never)."""


class SimulatorConfig(Body):
    seed: int = 1
    latency_ms: Milliseconds = (1.0, 5.0)
    """Uniform between the two."""
    failure_rate: Rate = 0.0
    """500 answers."""
    permanent_failure_rate: Rate = 0.0
    """400 with {"code": "30003"}."""
    throttle_rate: Rate = 0.0
    """Random 429s besides the rate limit."""
    undelivered_rate: Rate = 0.0
    receipts_url: str = ""
    """E.g. http://127.0.0.1:8080/v1/gateways/sim/receipts; empty: no receipts."""
    receipts_token: str = ""
    """Sent as Authorization: Bearer, when the gateway requires one."""
    receipt_delay_ms: Milliseconds = (50.0, 200.0)
    duplicate_receipt_rate: Rate = 0.0
    destinations: dict[str, Limit] = {}
    smpp: SmppConfig = SmppConfig()
