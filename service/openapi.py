"""The OpenAPI 3.1 document of the HTTP API (GET /openapi.json): every endpoint, its request body and
every response, errors included. tests/integration/test_api_fuzz.py holds the API to it."""

from typing import Any

from service.api_json import HTTP_STATUS, STATUSES

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: Any) -> Schema:
    return {"type": [kind, "null"], **extra}


def _object(properties: dict[str, Schema], required: tuple[str, ...] = (), extra: bool = False) -> Schema:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": extra}


def _json(schema: Schema) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


# error codes by HTTP status, from the one table the error middleware answers with
ERROR_CODES = {
    status: [code for code, of in HTTP_STATUS.items() if of == status] for status in dict.fromkeys(HTTP_STATUS.values())
}


def _error(status: int) -> dict[str, Any]:
    schema = _object({"error": _ref("ErrorBody")}, ("error",))
    schema["properties"]["error"] = {
        "allOf": [_ref("ErrorBody"), {"properties": {"code": {"enum": ERROR_CODES[status]}}}]
    }
    return {"description": ", ".join(ERROR_CODES[status]), **_json(schema)}


def _responses(ok: dict[int, Schema | None], *errors: int) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, schema in ok.items():
        responses[str(status)] = {"description": "OK"} | (_json(schema) if schema is not None else {})
    for status in sorted({*errors, 405, 500, 503}):
        responses[str(status)] = _error(status)
    return responses


TENANT = [{"tenant": []}]
ADMIN = [{"admin": []}]
NAME = {"type": "string", "minLength": 1, "maxLength": 64}
MESSAGE_REQUEST_FIELDS: dict[str, Schema] = {
    "to": {"type": "string", "description": "E.164 recipient, e.g. +15551234567"},
    "body": {"type": "string", "description": "1 to 1,600 characters"},
    "from": {"type": "string", "description": "a sender registered for the tenant; default: by route"},
    "destination": {"type": "string", "description": "a destination code; default: by route"},
    "send_at": {"type": "string", "format": "date-time", "description": "schedule, at most 35 days ahead"},
    "validity_seconds": {"type": "integer", "minimum": 1, "maximum": 36000},
    "status_callback": {"type": "string", "format": "uri"},
}


def _path_parameter(name: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _operation(
    summary: str,
    responses: dict[str, Any],
    security: list[Any],
    body: Schema | None = None,
    parameters: list[Schema] | None = None,
) -> Schema:
    operation: Schema = {"summary": summary, "responses": responses}
    if security:
        operation["security"] = security
    if body is not None:
        operation["requestBody"] = {"required": True, **_json(body)}
    if parameters:
        operation["parameters"] = parameters
    return operation


def _admin_resource(summary: str, params: list[str], body: Schema, entity: Schema) -> dict[str, Any]:
    parameters = [_path_parameter(p) for p in params]
    return {
        "parameters": parameters,
        "put": _operation(
            f"Create or replace {summary}",
            _responses({200: entity, 201: entity}, 400, 401, 403, 404, 413, 415),
            ADMIN,
            body,
        ),
        "get": _operation(f"Read {summary}", _responses({200: entity}, 400, 401, 403, 404), ADMIN),
        "delete": _operation(f"Delete {summary}", _responses({204: None}, 400, 401, 403, 404, 409), ADMIN),
    }


SCHEMAS: dict[str, Schema] = {
    "ErrorBody": _object(
        {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "retryable": {"type": "boolean"},
            "details": {"type": "object"},
        },
        ("code", "message", "retryable", "details"),
    ),
    "MessageRequest": _object(MESSAGE_REQUEST_FIELDS, ("to", "body")),
    "BatchItem": _object({**MESSAGE_REQUEST_FIELDS, "idempotency_key": {"type": "string"}}, ("to", "body")),
    "Message": _object(
        {
            "id": {"type": "string"},
            "status": {"enum": list(STATUSES)},
            "to": {"type": "string"},
            "from": {"type": "string"},
            "destination": {"type": "string"},
            "body": {"type": "string"},
            "segments": {"type": "integer"},
            "encoding": {"enum": ["GSM-7", "UCS-2"]},
            "attempts": {"type": "integer"},
            "provider_id": _nullable("string"),
            "error_code": _nullable("string"),
            "error_message": _nullable("string"),
            "status_callback": _nullable("string"),
            "created_at": {"type": "string"},
            "updated_at": {"type": "string"},
            "send_at": _nullable("string"),
            "expires_at": {"type": "string"},
        },
        (
            "id",
            "status",
            "to",
            "from",
            "destination",
            "body",
            "segments",
            "encoding",
            "attempts",
            "provider_id",
            "error_code",
            "error_message",
            "status_callback",
            "created_at",
            "updated_at",
            "send_at",
            "expires_at",
        ),
    ),
    "BatchResult": {
        "oneOf": [
            _object(
                {
                    "index": {"type": "integer"},
                    "status": {"const": 202},
                    "replayed": {"type": "boolean"},
                    "message": _ref("Message"),
                },
                ("index", "status", "replayed", "message"),
            ),
            _object(
                {"index": {"type": "integer"}, "status": {"type": "integer"}, "error": _ref("ErrorBody")},
                ("index", "status", "error"),
            ),
        ]
    },
    "Event": _object(
        {
            "id": {"type": "string"},
            "status": {"enum": list(STATUSES)},
            "at": {"type": "string"},
            "detail": _nullable("object"),
        },
        ("id", "status", "at", "detail"),
    ),
    "Queue": _object(
        {
            "queue_id": {"type": "integer"},
            "destination": {"type": "string"},
            "sender": {"type": "string"},
            "depth": {"type": "integer"},
            "queued_segments": {"type": "integer"},
            "oldest_age_seconds": _nullable("number"),
            "portion": _nullable("number"),
            "projected_drain_seconds": _nullable("number"),
            "admission": {"enum": ["open", "closed"]},
        },
        (
            "queue_id",
            "destination",
            "sender",
            "depth",
            "queued_segments",
            "oldest_age_seconds",
            "portion",
            "projected_drain_seconds",
            "admission",
        ),
    ),
    "TenantSet": _object({"name": {"type": "string"}, "weight": {"type": "number"}}, ("name", "weight")),
    "ApiKey": _object(
        {
            "id": {"type": "integer"},
            "created_at": {"type": "string"},
            "revoked_at": _nullable("string"),
            "api_key": {"type": "string", "description": "only when the key is created"},
        },
        ("id", "created_at", "revoked_at"),
    ),
    "Tenant": _object(
        {
            "name": {"type": "string"},
            "tenant_set": {"type": "string"},
            "weight": {"type": "number"},
            "status_callback": _nullable("string"),
            "signing_secret": {"type": "string", "description": "Standard Webhooks secret of status callbacks"},
            "api_keys": {"type": "array", "items": _ref("ApiKey")},
            "api_key": {"type": "string", "description": "only when the tenant is created"},
        },
        ("name", "tenant_set", "weight", "status_callback", "signing_secret", "api_keys"),
    ),
    "Sender": _object(
        {
            "tenant": {"type": "string"},
            "address": {"type": "string"},
            "type": {"type": "string"},
            "rate_cap": _nullable("number"),
        },
        ("tenant", "address", "type", "rate_cap"),
    ),
    "Gateway": _object(
        {
            "name": {"type": "string"},
            "kind": {"type": "string"},
            "url": {"type": "string"},
            "timeout_seconds": {"type": "number"},
            "max_in_flight": {"type": "integer"},
            "receipts_token": _nullable("string"),
        },
        ("name", "kind", "url", "timeout_seconds", "max_in_flight", "receipts_token"),
    ),
    "Allocation": _object(
        {
            "destination": {"type": "string"},
            "tenant_set": {"type": "string"},
            "weight": _nullable("number"),
            "rate": _nullable("number"),
        },
        ("destination", "tenant_set", "weight", "rate"),
    ),
    "Destination": _object(
        {
            "code": {"type": "string"},
            "gateway": {"type": "string"},
            "rate": {"type": "number"},
            "burst": {"type": "integer"},
            "max_drain_seconds": {"type": "integer"},
            "default_validity_seconds": {"type": "integer"},
            "allocations": {"type": "array", "items": _ref("Allocation")},
        },
        ("code", "gateway", "rate", "burst", "max_drain_seconds", "default_validity_seconds", "allocations"),
    ),
    "Route": _object(
        {"prefix": {"type": "string"}, "sender_type": {"type": "string"}, "destination": {"type": "string"}},
        ("prefix", "sender_type", "destination"),
    ),
    "DashboardQueue": _object(
        {
            "destination": {"type": "string"},
            "tenant_set": {"type": "string"},
            "tenant": {"type": "string"},
            "sender": {"type": "string"},
            "queue_id": {"type": "integer"},
            "depth": {"type": "integer"},
            "oldest_age_seconds": _nullable("number"),
            "portion": _nullable("number", description="r_q in segments per second"),
            "recent_rate": {"type": "number", "description": "segments per second, averaged over about 10 s"},
            "score": {"type": "number"},
            "eligible": {"type": "boolean"},
            "rank": {"type": "integer", "description": "1: what the next claim takes first"},
        },
        (
            "destination",
            "tenant_set",
            "tenant",
            "sender",
            "queue_id",
            "depth",
            "oldest_age_seconds",
            "portion",
            "recent_rate",
            "score",
            "eligible",
            "rank",
        ),
    ),
    "DashboardDestination": _object(
        {
            "destination": {"type": "string"},
            "gateway": {"type": "string"},
            "quota_rate": {"type": "number", "description": "segments per second"},
            "burst": {"type": "integer"},
            "effective_rate": {"type": "number", "description": "the quota after throttle back-off"},
            "current_rate": {"type": "number", "description": "segments per second, averaged over about 10 s"},
            "utilisation": {"type": "number", "description": "current_rate / quota_rate"},
            "backlog_messages": {"type": "integer"},
            "backlog_segments": {"type": "integer"},
            "active_tenants": {"type": "integer"},
            "active_queues": {"type": "integer"},
            "queues": {"type": "array", "items": _ref("DashboardQueue")},
        },
        (
            "destination",
            "gateway",
            "quota_rate",
            "burst",
            "effective_rate",
            "current_rate",
            "utilisation",
            "backlog_messages",
            "backlog_segments",
            "active_tenants",
            "active_queues",
            "queues",
        ),
    ),
    "Dashboard": _object(
        {
            "at": {"type": "string", "format": "date-time"},
            "destinations": {"type": "array", "items": _ref("DashboardDestination")},
        },
        ("at", "destinations"),
    ),
}

SENDER_TYPES = {"enum": ["long_code", "short_code", "toll_free", "alphanumeric"]}
POSITIVE = {"type": "number", "exclusiveMinimum": 0}

PATHS: dict[str, Any] = {
    "/v1/messages": {
        "post": {
            **_operation(
                "Send a message",
                _responses({202: _ref("Message")}, 400, 401, 404, 409, 413, 415, 422, 429),
                TENANT,
                _ref("MessageRequest"),
            ),
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                }
            ],
        },
        "get": _operation(
            "List messages, newest first",
            _responses(
                {
                    200: _object(
                        {
                            "messages": {"type": "array", "items": _ref("Message")},
                            "next_page_token": _nullable("string"),
                        },
                        ("messages", "next_page_token"),
                    )
                },
                400,
                401,
                429,
            ),
            TENANT,
            parameters=[
                {"name": "status", "in": "query", "schema": {"type": "string"}},
                {"name": "destination", "in": "query", "schema": {"type": "string"}},
                {"name": "page_size", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                {"name": "page_token", "in": "query", "schema": {"type": "string"}},
            ],
        ),
    },
    "/v1/messages/batch": {
        "post": _operation(
            "Send up to 1,000 messages; one result per item, in order",
            _responses(
                {
                    200: _object(
                        {
                            "accepted": {"type": "integer"},
                            "rejected": {"type": "integer"},
                            "results": {"type": "array", "items": _ref("BatchResult")},
                        },
                        ("accepted", "rejected", "results"),
                    )
                },
                400,
                401,
                409,
                413,
                415,
                429,
            ),
            TENANT,
            _object(
                {"messages": {"type": "array", "items": _ref("BatchItem"), "minItems": 1, "maxItems": 1000}},
                ("messages",),
            ),
        )
    },
    "/v1/messages/{id}": {
        "parameters": [_path_parameter("id")],
        "get": _operation("Read a message", _responses({200: _ref("Message")}, 401, 404, 429), TENANT),
    },
    "/v1/messages/{id}/events": {
        "parameters": [_path_parameter("id")],
        "get": _operation(
            "A message's status history, oldest first",
            _responses(
                {
                    200: _object(
                        {"message_id": {"type": "string"}, "events": {"type": "array", "items": _ref("Event")}},
                        ("message_id", "events"),
                    )
                },
                401,
                404,
                429,
            ),
            TENANT,
        ),
    },
    "/v1/messages/{id}/cancel": {
        "parameters": [_path_parameter("id")],
        "post": _operation(
            "Cancel a queued or scheduled message",
            _responses({200: _ref("Message")}, 401, 404, 409, 429),
            TENANT,
        ),
    },
    "/v1/queues": {
        "get": _operation(
            "The tenant's queues",
            _responses({200: _object({"queues": {"type": "array", "items": _ref("Queue")}}, ("queues",))}, 401, 429),
            TENANT,
        )
    },
    "/v1/admin/tenant-sets/{name}": _admin_resource(
        "a tenant set", ["name"], _object({"weight": POSITIVE}), _ref("TenantSet")
    ),
    "/v1/admin/tenants/{name}": _admin_resource(
        "a tenant",
        ["name"],
        _object({"tenant_set": NAME, "weight": POSITIVE, "status_callback": {"type": "string"}}, ("tenant_set",)),
        _ref("Tenant"),
    ),
    "/v1/admin/tenants/{name}/keys": {
        "parameters": [_path_parameter("name")],
        "post": _operation(
            "Add an API key (earlier keys keep working until revoked)",
            _responses({201: _ref("ApiKey")}, 401, 403, 404),
            ADMIN,
        ),
    },
    "/v1/admin/tenants/{name}/keys/{key_id}/revoke": {
        "parameters": [_path_parameter("name"), _path_parameter("key_id")],
        "post": _operation("Revoke an API key", _responses({200: _ref("ApiKey")}, 400, 401, 403, 404), ADMIN),
    },
    "/v1/admin/tenants/{name}/senders/{sender}": _admin_resource(
        "a sender",
        ["name", "sender"],
        _object({"type": SENDER_TYPES, "rate_cap": POSITIVE}, ("type",)),
        _ref("Sender"),
    ),
    "/v1/admin/gateways/{name}": _admin_resource(
        "a gateway",
        ["name"],
        _object(
            {
                "kind": {"enum": ["http", "simulator", "smpp"]},
                "url": {"type": "string"},
                "timeout_seconds": POSITIVE,
                "max_in_flight": {"type": "integer", "minimum": 1},
                "receipts_token": {
                    "type": "string",
                    "minLength": 16,
                    "maxLength": 256,
                    "description": "when set, receipts must carry Authorization: Bearer <receipts_token>",
                },
            },
            ("kind", "url"),
        ),
        _ref("Gateway"),
    ),
    "/v1/admin/destinations/{code}": _admin_resource(
        "a destination",
        ["code"],
        _object(
            {
                "gateway": NAME,
                "rate": POSITIVE,
                "burst": {"type": "integer", "minimum": 0},
                "max_drain_seconds": {"type": "integer", "minimum": 1},
                "default_validity_seconds": {"type": "integer", "minimum": 1, "maximum": 36000},
            },
            ("gateway", "rate"),
        ),
        _ref("Destination"),
    ),
    "/v1/admin/destinations/{code}/allocations/{tenant_set}": _admin_resource(
        "a tenant set's allocation of a destination (a weight or an absolute rate)",
        ["code", "tenant_set"],
        _object({"weight": POSITIVE, "rate": POSITIVE}),
        _ref("Allocation"),
    ),
    "/v1/admin/routes": {
        "put": _operation(
            "Replace the routing table",
            _responses(
                {200: _object({"routes": {"type": "array", "items": _ref("Route")}}, ("routes",))},
                400,
                401,
                403,
                413,
                415,
            ),
            ADMIN,
            _object({"routes": {"type": "array", "items": _ref("Route")}}, ("routes",)),
        ),
        "get": _operation(
            "The routing table",
            _responses({200: _object({"routes": {"type": "array", "items": _ref("Route")}}, ("routes",))}, 401, 403),
            ADMIN,
        ),
    },
    "/v1/admin/queues": {
        "get": _operation(
            "Queue scores (fairlane.queue_scores), optionally of one destination",
            _responses(
                {200: _object({"queues": {"type": "array", "items": {"type": "object"}}}, ("queues",))}, 400, 401, 403
            ),
            ADMIN,
            parameters=[{"name": "destination", "in": "query", "schema": {"type": "string"}}],
        )
    },
    "/v1/admin/dashboard": {
        "get": _operation(
            "What the dashboard shows: every destination's load (fairlane.destination_load) with its queues' "
            "scores (fairlane.queue_scores), read in one snapshot",
            _responses({200: _ref("Dashboard")}, 401, 403),
            ADMIN,
        )
    },
    "/v1/gateways/{name}/receipts": {
        "parameters": [_path_parameter("name")],
        "post": _operation(
            "A delivery receipt from a gateway (with its receipts token, when it has one)",
            _responses({200: _object({"status": {"type": "string"}}, ("status",))}, 400, 401, 403, 404, 409, 413, 415),
            [{}, {"receipts": []}],
            _object(
                {
                    "id": {"type": "string"},
                    "provider_id": {"type": "string"},
                    "status": {"enum": ["delivered", "undelivered"]},
                    "error_code": {"type": "string"},
                },
                ("status",),
            ),
        ),
    },
    "/healthz": {
        "get": _operation(
            "The process is up",
            {"200": {"description": "up", **_json(_object({"status": {"const": "ok"}}, ("status",)))}},
            [],
        )
    },
    "/readyz": {
        "get": _operation(
            "The database answers and is at the migrations' head",
            _responses(
                {200: _object({"status": {"const": "ready"}, "revision": {"type": "string"}}, ("status", "revision"))}
            ),
            [],
        )
    },
    "/metrics": {
        "get": _operation(
            "Prometheus metrics (admin token)",
            {
                "200": {
                    "description": "text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_responses({}, 401, 403),
            },
            ADMIN,
        )
    },
    "/dashboard": {
        "get": _operation(
            "The live dashboard page; it polls /v1/admin/dashboard with the admin token given as #token=...",
            {
                "200": {"description": "an HTML page", "content": {"text/html": {"schema": {"type": "string"}}}},
                **_responses({}),
            },
            [],
        )
    },
    "/openapi.json": {
        "get": _operation("This document", {"200": {"description": "OpenAPI 3.1", **_json({"type": "object"})}}, [])
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "fairlane", "version": "1", "description": "Fair-share messaging dispatcher (SPEC §5)."},
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "tenant": {"type": "http", "scheme": "bearer", "description": "a tenant's API key"},
            "admin": {"type": "http", "scheme": "bearer", "description": "FAIRLANE_ADMIN_TOKEN"},
            "receipts": {"type": "http", "scheme": "bearer", "description": "the gateway's receipts_token"},
        },
    },
}
