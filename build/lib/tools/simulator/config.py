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
