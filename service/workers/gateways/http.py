"""The `http` gateway protocol (also spoken by the carrier simulator):

    POST <gateway url>   Content-Type: application/json   Idempotency-Key: <message id>
    {"id", "to", "from", "body", "segments", "destination", "tenant", "validity_until"}

2xx (optional JSON {"provider_id"}) -> sent; 429 (optional Retry-After) -> throttled; 408, 5xx, timeout or a
connection error -> retry; any other 4xx (optional JSON {"code", "message"}) -> failed with that code. A 1xx
or 3xx (redirects are not followed) is retried like a 5xx.
"""

import json
import math

import aiohttp

from db.dispatch import Answer, Claimed
from service.workers.gateways.backoff import MAX_BACKOFF_SECONDS, retry_delay


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, min(float(value), MAX_BACKOFF_SECONDS)) if value is not None else 1.0
    except ValueError:
        return 1.0


def payload(message: Claimed) -> dict[str, object]:
    return {
        "id": str(message.message_id),
        "to": message.recipient,
        "from": message.sender,
        "body": message.body,
        "segments": message.segments,
        "destination": message.destination,
        "tenant": message.tenant,
        "validity_until": message.expires_at.isoformat() if message.expires_at else None,
    }


class HttpGateway:
    def __init__(self, session: aiohttp.ClientSession, url: str, timeout_seconds: float) -> None:
        self.session = session
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    async def start(self, dsn: str, pool: object, serving: object) -> bool:
        return True  # nothing to open: each send is a request on the shared client session

    async def close(self) -> None:
        pass

    async def send(self, message: Claimed, send_by: float = math.inf) -> Answer:
        # a request goes at once: nothing to wait for within the send slot
        try:
            async with self.session.post(
                self.url,
                json=payload(message),
                headers={"Idempotency-Key": str(message.message_id)},
                timeout=self.timeout,
                allow_redirects=False,  # a redirect would be followed as a GET without the message
            ) as response:
                text = (await response.read()).decode("utf-8", errors="replace")
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (TimeoutError, aiohttp.ClientError) as error:
            return Answer(
                message.message_id,
                "retry",
                error_code="gateway_unreachable",
                error_message=type(error).__name__,
                delay=retry_delay(message.attempts + 1),
            )
        body = _json(text)
        if 200 <= status < 300:
            provider_id = body.get("provider_id")
            return Answer(message.message_id, "sent", provider_id=str(provider_id) if provider_id else None)
        if status == 429:
            return Answer(message.message_id, "throttled", error_code="throttled", delay=_retry_after(retry_after))
        if status == 408 or status >= 500 or status < 200 or 300 <= status < 400:
            return Answer(
                message.message_id,
                "retry",
                error_code=str(status),
                error_message=str(body.get("message") or text[:200]) or None,
                delay=retry_delay(message.attempts + 1),
            )
        return Answer(
            message.message_id,
            "failed",
            error_code=str(body.get("code") or status),
            error_message=str(body.get("message") or text[:200]) or None,
        )


def _json(text: str) -> dict[str, object]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
