"""`fairlane run`: the whole service on one machine. The database (embedded unless DATABASE_URL), migrated
and configured, then the API, N dispatchers, the callback sender and a carrier simulator for each simulator
gateway on this machine, as supervised child processes (service/cli/supervisor.py).

A simulator gets its gateway's port when that is free, else a free port the system picks (another fairlane
on the machine may hold it); then the gateway's URL is changed to match, through the configuration like any
other change, and the banner prints it. `fairlane run` binds the port itself and hands the listening socket
to the simulator, so nothing can take the port between the choice and the simulator's start, or while the
simulator restarts."""

import dataclasses
import json
import os
import secrets
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

import psycopg

from db import admin, configuration, migrate
from service.cli.supervisor import Child, Supervisor
from service.model import urls
from service.model.configuration import Configuration, Gateway

LOOPBACK = ("127.0.0.1", "localhost")
SIMULATOR_RECEIPTS_TOKEN = "FAIRLANE_SIMULATOR_RECEIPTS_TOKEN"  # tools/simulator/command.py reads it


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
    keys_file: Path | None = None
    """Where the demo tenant's API key is kept between runs (beside the data directory); None: a new key."""


@dataclass(frozen=True)
class LocalSimulator:
    """The simulator `fairlane run` starts for a simulator gateway on this machine."""

    gateway: str
    url: SplitResult
    """The gateway's URL, moved to a free port when its own was taken."""
    listener: socket.socket
    receipts_token: str | None
    smpp: socket.socket | None = None
    """Its SMPP side's listening socket (`--smpp-fd`) for the smpp gateways on this machine, if it has one."""
    smpp_gateways: tuple[str, ...] = ()


def _fairlane(*args: str) -> list[str]:
    return [sys.executable, "-m", "service.cli", *args]


def prepare(options: RunOptions) -> tuple[list[Child], list[str]]:
    """Migrate and configure the database; return the children to start and the lines to print."""
    migrate.upgrade(options.dsn)
    lines: list[str] = []
    created_keys: dict[str, str] = {}
    with psycopg.connect(options.dsn, autocommit=True) as connection:
        wanted = options.config
        if wanted is None and not configuration.is_configured(connection):
            wanted = options.example
            lines.append("applied the example configuration (service/cli/example.toml)")
        if wanted is not None:
            applied = configuration.apply(connection, wanted.model_dump())
            lines += applied.changes
            lines += [
                f"receipts token of gateway {name} (shown once): {token}"
                for name, token in applied.receipts_tokens.items()
            ]
            created_keys = applied.api_keys
        simulators = [
            simulator
            for gateway in configuration.gateways(connection)
            if (simulator := _simulator(connection, gateway, lines)) is not None
        ]
        simulators = _with_smpp(connection, simulators, lines)
        tenants = configuration.tenants(connection)
        demo_key = _demo_key(connection, options, tenants[0], created_keys.get(tenants[0])) if tenants else None

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
        # the receipts token is a secret: in the child's environment, never on its command line
        simulator_env = {**env, SIMULATOR_RECEIPTS_TOKEN: simulator.receipts_token or ""}
        listeners = [simulator.listener]
        if simulator.smpp is not None:
            command += ["--smpp-fd", str(simulator.smpp.fileno())]
            listeners.append(simulator.smpp)
        children.append(Child(f"simulator-{simulator.gateway}", command, simulator_env, listeners=listeners))

    # a made-up admin token is shown (it is new); one the operator gave is theirs already and never printed
    shown_token = admin_token if options.admin_token is None else "<FAIRLANE_ADMIN_TOKEN>"
    lines += [
        "",
        f"API:        {api_url}   (OpenAPI: {api_url}/openapi.json)",
        f"dashboard:  {api_url}/dashboard#token={shown_token}",
        f"admin token: {shown_token}" + ("" if options.admin_token is None else " (as given; not shown)"),
        f"metrics:    {api_url}/metrics (admin token); dispatchers: "
        + ", ".join(f"http://127.0.0.1:{port}/metrics" for port in metrics_ports),
    ]
    if demo_key is not None:
        lines += [
            f"API key of tenant {tenants[0]}: {demo_key}",
            f"try:        curl -X POST {api_url}/v1/messages -H 'Authorization: Bearer {demo_key}' "
            '-H \'Content-Type: application/json\' -d \'{"to": "+15551234567", "body": "hello"}\'',
        ]
    lines += [f"simulator:  {s.url.scheme}://{s.url.netloc}/stats   (gateway {s.gateway})" for s in simulators]
    lines += [
        f"simulator:  smpp://127.0.0.1:{s.smpp.getsockname()[1]}   (gateway {', '.join(s.smpp_gateways)})"
        for s in simulators
        if s.smpp is not None
    ]
    lines += [
        f"database:   {urls.redacted(options.dsn)}",
        f"processes:  api, {options.workers} dispatcher(s), callbacks, {len(simulators)} simulator(s)",
        "fairlane is up; Ctrl-C stops it",
    ]
    return children, lines


def _demo_key(connection: psycopg.Connection[Any], options: RunOptions, tenant: str, created: str | None) -> str:
    """The first tenant's API key for the banner: the one an earlier run made and kept in `options.keys_file`
    while it still works (not revoked, same tenant, same database), else the one the tenant was just created
    with, else a new one; kept there (mode 0600)."""
    database = urls.redacted(options.dsn)
    kept: dict[str, Any] = {}
    if options.keys_file is not None and options.keys_file.exists():
        try:
            kept = json.loads(options.keys_file.read_text())
        except (OSError, ValueError):
            kept = {}
    entry = kept.get(database)
    if isinstance(entry, dict) and entry.get("tenant") == tenant and isinstance(entry.get("api_key"), str):
        if configuration.api_key_works(connection, tenant, entry["api_key"]):
            return str(entry["api_key"])
    api_key = created or str(admin.new_api_key(connection, tenant)["api_key"])
    if options.keys_file is not None:
        kept[database] = {"tenant": tenant, "api_key": api_key}
        options.keys_file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(options.keys_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(kept, file)
    return api_key


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


def _with_smpp(
    connection: psycopg.Connection[Any], simulators: list[LocalSimulator], lines: list[str]
) -> list[LocalSimulator]:
    """The smpp gateways on this machine get the SMPP side of a simulator (the first one, else one of their
    own with its HTTP side on a free port): listening on their port when it is free, else on another one the
    gateways are moved to (those of one port share it; a further port gets a further simulator)."""
    ports: dict[int, list[str]] = {}
    for gateway in configuration.gateways(connection):
        url = urlsplit(gateway.url)
        if gateway.kind == "smpp" and url.hostname in LOOPBACK and url.port:
            ports.setdefault(url.port, []).append(gateway.name)
    result = list(simulators)
    for index, (port, names) in enumerate(sorted(ports.items())):
        listener = _listen("127.0.0.1", port)
        moved = listener.getsockname()[1]
        if moved != port:
            taken = f"port {port} of smpp gateway(s) {', '.join(names)} is taken"
            lines.append(f"{taken}: the simulator listens on {moved}")
            for name in names:
                settings = configuration.smpp_gateway(connection, name) or {}
                entity = {k: v for k, v in admin.gateway(connection, name).items() if v is not None and k != "url"}
                document = Gateway.model_validate({**entity, "password": settings.get("password"), "port": moved})
                lines += configuration.apply(connection, {"gateways": [document.model_dump()]}).changes
        if index < len(result):
            result[index] = dataclasses.replace(result[index], smpp=listener, smpp_gateways=tuple(names))
        else:
            http = _listen("127.0.0.1", 0)
            url = urlsplit(f"http://127.0.0.1:{http.getsockname()[1]}")
            result.append(LocalSimulator(names[0], url, http, None, listener, tuple(names)))
    return result


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
