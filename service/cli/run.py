"""`fairlane run`: the whole service on one machine. The database (embedded unless DATABASE_URL), migrated
and configured, then the API, N dispatchers, the callback sender and a carrier simulator for each simulator
gateway on this machine, as supervised child processes (service/cli/supervisor.py).

A simulator gets its gateway's port when that is free, else a free port the system picks (another fairlane
on the machine may hold it); then the gateway's URL is changed to match, through the configuration like any
other change, and the banner prints it. `fairlane run` binds the port itself and hands the listening socket
to the simulator, so nothing can take the port between the choice and the simulator's start, or while the
simulator restarts."""

import secrets
import socket
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

import psycopg

from db import admin, configuration, migrate
from service.cli.supervisor import Child, Supervisor
from service.model.configuration import Configuration, Gateway

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


@dataclass(frozen=True)
class LocalSimulator:
    """The simulator `fairlane run` starts for a simulator gateway on this machine."""

    gateway: str
    url: SplitResult
    """The gateway's URL, moved to a free port when its own was taken."""
    listener: socket.socket
    receipts_token: str | None


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
        simulators = [
            simulator
            for gateway in configuration.gateways(connection)
            if (simulator := _simulator(connection, gateway, lines)) is not None
        ]
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
    for simulator in simulators:
        receipts = f"{api_url}/v1/gateways/{simulator.gateway}/receipts"
        command = _fairlane("simulator", "--fd", str(simulator.listener.fileno()), "--receipts-url", receipts)
        if simulator.receipts_token:
            command += ["--receipts-token", simulator.receipts_token]
        children.append(Child(f"simulator-{simulator.gateway}", command, env, listeners=[simulator.listener]))

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
    lines += [f"simulator:  {s.url.scheme}://{s.url.netloc}/stats   (gateway {s.gateway})" for s in simulators]
    lines += [
        f"database:   {options.dsn}",
        f"processes:  api, {options.workers} dispatcher(s), callbacks, {len(simulators)} simulator(s)",
        "fairlane is up; Ctrl-C stops it",
    ]
    return children, lines


def _simulator(
    connection: psycopg.Connection[Any], gateway: configuration.GatewaySummary, lines: list[str]
) -> LocalSimulator | None:
    """The simulator to start for a simulator gateway on this machine, listening on the gateway's port when
    it is free, else on another one the gateway is moved to; None for other gateways."""
    url = urlsplit(gateway.url)
    if gateway.kind != "simulator" or url.hostname not in LOOPBACK or not url.port:
        return None
    listener = _listen(url.hostname, url.port)
    port = listener.getsockname()[1]
    if port != url.port:
        lines.append(f"port {url.port} of gateway {gateway.name}'s simulator is taken: it listens on {port}")
        url = url._replace(netloc=f"{url.hostname}:{port}")
        moved = Gateway.model_validate({**admin.gateway(connection, gateway.name), "url": url.geturl()})
        lines += configuration.apply(connection, {"gateways": [moved.model_dump()]}).changes
    return LocalSimulator(gateway.name, url, listener, gateway.receipts_token)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on `port` when it is free, else on a free port the system picks."""
    for candidate in (port, 0):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does: TIME_WAIT is no owner
        try:
            listener.bind((host, candidate))
        except OSError:
            listener.close()
            if candidate == 0:
                raise
            continue
        listener.listen(128)
        return listener
    raise AssertionError("unreachable")


def run(options: RunOptions) -> int:
    children, lines = prepare(options)
    print("\n".join(lines), flush=True)
    status = Supervisor(children).run()
    print("fairlane stopped", flush=True)
    return status
