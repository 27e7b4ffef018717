"""`fairlane run`: the whole service on one machine. The database (embedded unless DATABASE_URL), migrated
and configured, then the API, N dispatchers, the callback sender and a carrier simulator for each simulator
gateway on this machine, as supervised child processes (service/cli/supervisor.py)."""

import secrets
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg

from db import admin, configuration, migrate
from service.cli.supervisor import Child, Supervisor
from service.model.configuration import Configuration

LOOPBACK = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class RunOptions:
    dsn: str
    config: Configuration | None
    """Applied at start; None applies the example configuration when the database has none."""
    example: Configuration
    workers: int
    host: str
    port: int
    admin_token: str | None
    env: dict[str, str]


def _fairlane(*args: str) -> list[str]:
    return [sys.executable, "-m", "service.cli", *args]


def prepare(options: RunOptions) -> tuple[list[Child], list[str]]:
    """Migrate and configure the database; return the children to start and the lines to print."""
    migrate.upgrade(options.dsn)
    lines: list[str] = []
    with psycopg.connect(options.dsn, autocommit=True) as connection:
        wanted = options.config
        if wanted is None and not configuration.is_configured(connection):
            wanted = options.example
            lines.append("applied the example configuration (service/cli/example.toml)")
        if wanted is not None:
            lines += configuration.apply(connection, wanted.model_dump()).changes
        gateways = configuration.gateways(connection)
        tenants = configuration.tenants(connection)
        demo_key = admin.new_api_key(connection, tenants[0])["api_key"] if tenants else None

    admin_token = options.admin_token or secrets.token_urlsafe(24)
    env = {**options.env, "DATABASE_URL": options.dsn, "FAIRLANE_ADMIN_TOKEN": admin_token}
    api_url = f"http://{options.host}:{options.port}"
    children = [Child("api", _fairlane("api", "--host", options.host, "--port", str(options.port)), env)]
    # each dispatcher serves its Prometheus metrics on the next ports after the API's
    metrics_ports = [options.port + 1 + i for i in range(options.workers)]
    children += [
        Child(f"dispatcher-{i + 1}", _fairlane("dispatch", "--workers", "1", "--metrics-port", str(port)), env)
        for i, port in enumerate(metrics_ports)
    ]
    children.append(Child("callbacks", _fairlane("callbacks"), env))
    simulators = []
    for gateway in gateways:
        url = urlsplit(gateway.url)
        if gateway.kind == "simulator" and url.hostname in LOOPBACK and url.port:
            receipts = f"{api_url}/v1/gateways/{gateway.name}/receipts"
            command = _fairlane(
                "simulator", "--host", url.hostname, "--port", str(url.port), "--receipts-url", receipts
            )
            if gateway.receipts_token:
                command += ["--receipts-token", gateway.receipts_token]
            children.append(Child(f"simulator-{gateway.name}", command, env))
            simulators.append(f"{url.scheme}://{url.netloc}/stats")

    lines += [
        "",
        f"API:        {api_url}   (OpenAPI: {api_url}/openapi.json)",
        f"dashboard:  {api_url}/dashboard#token={admin_token}",
        f"admin token: {admin_token}",
        f"metrics:    {api_url}/metrics (admin token); dispatchers: "
        + ", ".join(f"http://127.0.0.1:{port}/metrics" for port in metrics_ports),
    ]
    if demo_key is not None:
        lines += [
            f"API key of tenant {tenants[0]} (new for this run): {demo_key}",
            f"try:        curl -X POST {api_url}/v1/messages -H 'Authorization: Bearer {demo_key}' "
            '-H \'Content-Type: application/json\' -d \'{"to": "+15551234567", "body": "hello"}\'',
        ]
    lines += [f"simulator:  {url}" for url in simulators]
    lines += [
        f"database:   {options.dsn}",
        f"processes:  api, {options.workers} dispatcher(s), callbacks, {len(simulators)} simulator(s)",
        "fairlane is up; Ctrl-C stops it",
    ]
    return children, lines


def run(options: RunOptions) -> int:
    children, lines = prepare(options)
    print("\n".join(lines), flush=True)
    status = Supervisor(children).run()
    print("fairlane stopped", flush=True)
    return status
