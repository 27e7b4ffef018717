"""Property-based fuzz of the running API against its own /openapi.json (schemathesis): generated
requests for every operation, valid and invalid, must never get a 5xx, and every response must be one
the document declares (status code, content type, body schema)."""

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from service.api import openapi
from service.api.routes import ROUTES
from tests.integration.api import ADMIN_TOKEN
from tests.integration.fixtures import apply_basic
from tests.integration.processes import Process, free_port

DOCUMENT = openapi.document(ROUTES)
schema = schemathesis.openapi.from_dict(DOCUMENT)
# valid requests and invalid ones (wrong types, missing fields, out-of-range values), NUL bytes included
schema.config.generation.update(modes=list(GenerationMode), allow_x00=True, deterministic=True)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def running_api(fairlane_template, embedded_server):
    """One API process for the module, on its own database cloned from the migrated template."""
    name = "fuzz_api"
    with psycopg.connect(embedded_server.dsn("postgres"), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name} TEMPLATE {fairlane_template.template_dbname}")
    dsn = embedded_server.dsn(name)
    with psycopg.connect(dsn, autocommit=True) as connection:
        keys = apply_basic(connection).api_keys
        # a message of acme's so that reads, events and cancel find something now and then
        connection.execute("SELECT fairlane.submit(tenant => 'acme', recipient => '+15551234567', body => 'x')")
    port = free_port()
    process = Process(
        ["api", "--port", str(port)],
        env={"DATABASE_URL": dsn, "FAIRLANE_ADMIN_TOKEN": ADMIN_TOKEN, "FAIRLANE_TENANT_RATE": "0"},
    )
    process.wait_for_line("api listening")
    yield f"http://127.0.0.1:{port}", keys["acme"]
    process.stop()
    with psycopg.connect(embedded_server.dsn("postgres"), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_answers_within_its_document(case, running_api):
    base_url, tenant_key = running_api
    token = ADMIN_TOKEN if case.path.startswith("/v1/admin") else tenant_key
    case.call_and_validate(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)


def test_document_covers_every_route():
    from aiohttp import web

    from service.api.app import create_app
    from service.api.state import ApiSettings

    app: web.Application = create_app(ApiSettings("postgresql://unused@/x"))
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {
        (method.upper(), path)
        for path, operations in DOCUMENT["paths"].items()
        for method in operations
        if method != "parameters"
    }
    assert served == documented
