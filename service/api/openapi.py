"""The OpenAPI 3.1 document of the HTTP API (GET /openapi.json), generated from the route table
(service/api/routes) and the model's shapes: every endpoint, its parameters, its request body and every
answer, errors included (the codes of each status from service/model/errors.py).
tests/integration/test_api_fuzz.py holds the API to it."""

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.api.routing import Route
from service.model.errors import codes_of
from service.model.messages import ErrorResponse

Schema = dict[str, Any]
REF = "#/components/schemas/{model}"
ALWAYS = (405, 500, 503)  # any route: a wrong method, an unexpected failure, the database away
SECURITY = {
    "tenant": {"type": "http", "scheme": "bearer", "description": "a tenant's API key"},
    "admin": {"type": "http", "scheme": "bearer", "description": "FAIRLANE_ADMIN_TOKEN"},
    "receipts": {"type": "http", "scheme": "bearer", "description": "the gateway's receipts_token"},
}


def _ref(model: type[BaseModel]) -> Schema:
    return {"$ref": REF.format(model=model.__name__)}


def _json(schema: Schema) -> Schema:
    return {"content": {"application/json": {"schema": schema}}}


def _error(status: int) -> Schema:
    codes = codes_of(status)
    schema = {
        "allOf": [
            _ref(ErrorResponse),
            {"properties": {"error": {"properties": {"code": {"enum": codes}}}}},
        ]
    }
    return {"description": ", ".join(codes), **_json(schema)}


def _answers(route: Route) -> Schema:
    answers: Schema = {}
    for status, shape in route.answers.items():
        if shape is not None:
            answers[str(status)] = {"description": "OK", **_json(_ref(shape))}
        elif status == 204:
            answers[str(status)] = {"description": "OK"}
        else:
            schema = {"type": "object"} if route.content_type == "application/json" else {"type": "string"}
            answers[str(status)] = {"description": "OK", "content": {route.content_type: {"schema": schema}}}
    for status in sorted({*route.errors, *ALWAYS}):
        answers[str(status)] = _error(status)
    return answers


def _body(route: Route, definitions: Schema) -> Schema:
    assert route.body is not None
    if not route.path_fields:
        return _ref(route.body)
    schema = dict(definitions[route.body.__name__])  # the shape less the fields the path gives
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k not in route.path_fields}
    schema["required"] = [k for k in schema.get("required", []) if k not in route.path_fields]
    return schema


def _operation(route: Route, definitions: Schema) -> Schema:
    operation: Schema = {"summary": route.summary, "responses": _answers(route)}
    if route.credentials == "receipts":
        operation["security"] = [{}, {"receipts": []}]  # only gateways with a receipts token require one
    elif route.credentials != "none":
        operation["security"] = [{route.credentials: []}]
    if route.body is not None:
        operation["requestBody"] = {"required": True, **_json(_body(route, definitions))}
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", route.path)
    ]
    parameters += [
        {"name": p.name, "in": p.where, "required": False, "schema": p.schema}
        | ({"description": p.description} if p.description else {})
        for p in route.parameters
    ]
    if parameters:
        operation["parameters"] = parameters
    return operation


def document(routes: list[Route]) -> Schema:
    shapes: set[type[BaseModel]] = {ErrorResponse}
    for route in routes:
        shapes.update(shape for shape in route.answers.values() if shape is not None)
        shapes.update(route.extra_schemas)
        if route.body is not None:
            shapes.add(route.body)
    ordered = sorted(shapes, key=lambda shape: shape.__name__)
    modes = [(shape, "validation" if _is_request(shape, routes) else "serialization") for shape in ordered]
    definitions = models_json_schema(modes, ref_template=REF)[1].get("$defs", {})
    paths: Schema = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, definitions)
    return {
        "openapi": "3.1.0",
        "info": {"title": "fairlane", "version": "1", "description": "Fair-share messaging dispatcher (SPEC §5)."},
        "paths": paths,
        "components": {"schemas": definitions, "securitySchemes": SECURITY},
    }


def _is_request(shape: type[BaseModel], routes: list[Route]) -> bool:
    return any(route.body is shape or shape in route.extra_schemas for route in routes)
