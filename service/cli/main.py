"""The `fairlane` command: its subcommands and how each starts. The tools (`fairlane simulator`, `demo`,
`bench`) add their own subcommands through the `fairlane.commands` entry points (tools/*/command.py), so
the service never imports them."""

import argparse
import asyncio
import logging
import os
import secrets
import sys
import tomllib
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from db import configuration, embedded, migrate, reports
from db.errors import FairlaneError, translate
from service.cli import logs
from service.cli.database import close_database, open_database
from service.cli.settings import Settings, SettingsError
from service.cli.supervisor import STOP_SIGNALS, Child, Supervisor, handle_stop_signals, ignore_stop_signals
from service.model import urls
from service.model.configuration import Configuration, parse_configuration
from service.model.fields import Invalid

if TYPE_CHECKING:
    import socket

    from aiohttp import web

EXAMPLE_CONFIG = Path(__file__).resolve().parent / "example.toml"
logger = logging.getLogger(__name__)


def load_config(path: Path) -> Configuration:
    try:
        with path.open("rb") as file:
            return parse_configuration(tomllib.load(file))
    except FileNotFoundError as error:
        raise Invalid(f"config file {str(path)!r} does not exist") from error
    except tomllib.TOMLDecodeError as error:
        raise Invalid(f"config file {str(path)!r} is not valid TOML: {error}") from error


def _print_table(table: reports.Table) -> None:
    cells = [table.columns] + [tuple("" if value is None else str(value) for value in row) for row in table.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(table.columns))]
    print(f"{table.title} ({len(table.rows)})")
    for index, row in enumerate(cells):
        print("  " + "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print("  " + "  ".join("-" * width for width in widths))
    print()


def _apply(dsn: str, config: Configuration) -> None:
    with psycopg.connect(dsn) as connection:
        result = configuration.apply(connection, config.model_dump())
    for change in result.changes:
        print(change)
    if not result.changes:
        print("no changes")
    for tenant, api_key in result.api_keys.items():
        print(f"API key for tenant {tenant} (shown once): {api_key}")
    for gateway, token in result.receipts_tokens.items():
        print(f"receipts token of gateway {gateway} (shown once): {token}")


def _stats(dsn: str, storage: bool) -> None:
    with psycopg.connect(dsn) as connection, translate():
        for table in [reports.storage(connection)] if storage else reports.tables(connection):
            _print_table(table)


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from service.cli import run

    database = open_database(settings)
    try:
        options = run.RunOptions(
            dsn=database.dsn,
            config=load_config(args.config) if args.config is not None else None,
            example=load_config(EXAMPLE_CONFIG),
            workers=args.workers,
            host=args.host,
            port=args.port,
            admin_token=settings.admin_token,
            env=dict(os.environ),
            keys_file=settings.data_dir.parent / "run-keys.json",
        )
        return run.run(options)
    finally:
        close_database(settings, database)


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "stop":
        if settings.database_url:
            print("DATABASE_URL is set: there is no embedded server to stop", file=sys.stderr)
            return 1
        print("stopped" if embedded.stop(settings.data_dir) else "not running")
        return 0
    database = open_database(settings)
    if database.started_embedded:
        print(
            f"started the embedded PostgreSQL in {settings.data_dir} (stop it with `fairlane db stop`)",
            file=sys.stderr,
        )
    if args.action == "upgrade":
        migrate.upgrade(database.dsn, args.revision or "head")
        print(f"database at revision {args.revision or migrate.head_revision()}")
    elif args.action == "downgrade":
        migrate.downgrade(database.dsn, args.revision or "base")
        print(f"database at revision {args.revision or 'base'}")
    elif args.action == "url":
        # a password stays where it was given (DATABASE_URL) unless asked for
        print(database.dsn if args.with_password else urls.redacted(database.dsn))
    elif args.action == "psql":
        # the password, if any, goes by the environment: a command line is visible to every user of the machine
        dsn, password = urls.without_password(database.dsn)
        env = {**os.environ, **({"PGPASSWORD": password} if password else {})}
        os.execve(embedded.psql_path(), [str(embedded.psql_path()), dsn], env)
    return 0


def cmd_apply(settings: Settings, args: argparse.Namespace) -> int:
    config = load_config(args.config)
    database = open_database(settings)
    _apply(database.dsn, config)
    return 0


def cmd_stats(settings: Settings, args: argparse.Namespace) -> int:
    _stats(open_database(settings).dsn, args.storage)
    return 0


def cmd_dispatch(settings: Settings, args: argparse.Namespace) -> int:
    from service.workers import dispatcher, loop, metrics

    dsn = open_database(settings).dsn
    dispatch_settings = dispatcher.DispatchSettings(
        batch_size=args.batch_size, grace_seconds=args.grace, lease_seconds=args.lease
    )
    if args.workers == 1:
        return loop.serve(dispatcher.Dispatcher(dsn, dispatch_settings, metrics.serve(args.metrics_port)))
    options = ["--batch-size", str(args.batch_size), "--grace", str(args.grace), "--lease", str(args.lease)]
    env = {**os.environ, "DATABASE_URL": dsn}
    children = [
        Child(
            f"dispatcher-{index + 1}",
            [sys.executable, "-m", "service.cli", "dispatch", "--workers", "1", *options]
            + (["--metrics-port", str(args.metrics_port + index)] if args.metrics_port else []),
            env,
        )
        for index in range(args.workers)
    ]
    return Supervisor(children, grace_seconds=args.grace + 5).run()


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    from service.api.app import create_app
    from service.api.state import ApiSettings

    admin_token = settings.admin_token
    if admin_token is None:
        admin_token = secrets.token_urlsafe(24)
        print(f"admin token (FAIRLANE_ADMIN_TOKEN was unset): {admin_token}", flush=True)
    app = create_app(ApiSettings(open_database(settings).dsn, admin_token, settings.tenant_rate))
    return serve_app(app, "api", host=args.host, port=args.port, grace_seconds=args.grace)


def serve_app(
    app: "web.Application",
    name: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    sock: "socket.socket | None" = None,
    grace_seconds: float = 10.0,
) -> int:
    """Serve an aiohttp application (on `sock` when given, else on host:port) until SIGINT or SIGTERM, then
    stop gracefully: no new connections, in-flight requests get `grace_seconds`, the application's cleanup
    runs to its end; return 0. Prints "<name> listening on <url>" once it listens.

    Not `web.run_app`: its handlers raise `GracefulExit` (a `SystemExit` with status 1) on every signal,
    and a second one during the stop (the terminal's SIGINT, then the supervisor's SIGTERM) escapes it,
    cutting the cleanup short and exiting 1 (docs/decisions/0015)."""
    asyncio.run(_serve_app(app, name, host, port, sock, grace_seconds))
    return 0


async def _serve_app(
    app: "web.Application", name: str, host: str, port: int, sock: "socket.socket | None", grace_seconds: float
) -> None:
    from aiohttp import web

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stopping.set)  # the first asks to stop; later ones ask the same
    # the signals are ours; the keep-alive is run_app's
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, keepalive_timeout=75.0, shutdown_timeout=grace_seconds
    )
    try:
        await runner.setup()  # the application's startup (its cleanup_ctx up to their yield)
        if not stopping.is_set():
            site = web.SockSite(runner, sock) if sock is not None else web.TCPSite(runner, host, port)
            await site.start()
            bound_host, bound_port = runner.addresses[0][:2]
            bound_host = f"[{bound_host}]" if ":" in bound_host else bound_host
            print(f"{name} listening on http://{bound_host}:{bound_port}", flush=True)
            await stopping.wait()
    finally:
        await runner.cleanup()
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        ignore_stop_signals()  # until the process exits: the loop's closing would restore the defaults


def cmd_callbacks(settings: Settings, args: argparse.Namespace) -> int:
    from service.workers import callbacks, loop

    dsn = open_database(settings).dsn
    callback_settings = callbacks.CallbackSettings(
        batch_size=args.batch_size,
        max_in_flight=args.max_in_flight,
        per_tenant_in_flight=args.per_tenant,
        grace_seconds=args.grace,
        timeout_seconds=args.timeout,
        lease_seconds=args.lease,
    )
    return loop.serve(callbacks.CallbackSender(dsn, callback_settings))  # SIGTERM/SIGINT stop it; exits 0


def positive_seconds(value: str) -> float:
    seconds = float(value)
    if not 0 < seconds < 1e6:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {value}")
    return seconds


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fairlane", description="Fair-share messaging dispatcher on PostgreSQL")
    commands = p.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="start fairlane (embedded PostgreSQL unless DATABASE_URL is set)")
    run.add_argument("--config", type=Path, help="configuration to apply (default: the example, on an empty database)")
    run.add_argument("--workers", type=positive, default=2, help="dispatcher processes")
    run.add_argument("--host", default="127.0.0.1", help="the API's address")
    run.add_argument("--port", type=int, default=8080, help="the API's port")
    run.set_defaults(handler=cmd_run, serves=True)

    db = commands.add_parser("db", help="database: upgrade, downgrade, url, psql, stop")
    db.add_argument("action", choices=("upgrade", "downgrade", "url", "psql", "stop"))
    db.add_argument("revision", nargs="?", help="target revision (upgrade: head, downgrade: base)")
    db.add_argument(
        "--with-password", action="store_true", help="url: print the DSN as it is, password included (e.g. for psql)"
    )
    db.set_defaults(handler=cmd_db)

    apply = commands.add_parser("apply", help="apply a declarative configuration file (TOML)")
    apply.add_argument("config", type=Path)
    apply.set_defaults(handler=cmd_apply)

    stats_command = commands.add_parser("stats", help="print destination and queue tables")
    stats_command.add_argument(
        "--storage", action="store_true", help="instead: each table's size, index size, live and dead rows, last vacuum"
    )
    stats_command.set_defaults(handler=cmd_stats)

    dispatch_command = commands.add_parser("dispatch", help="dispatcher processes (reads DATABASE_URL)")
    dispatch_command.add_argument("--workers", type=positive, default=1)
    dispatch_command.add_argument(
        "--metrics-port", type=positive, help="serve Prometheus metrics on 127.0.0.1 (worker i: port + i)"
    )
    dispatch_command.add_argument("--batch-size", type=int, default=100)
    dispatch_command.add_argument("--grace", type=float, default=10.0, help="seconds in-flight sends get at stop")
    dispatch_command.add_argument(
        "--lease", type=float, default=60.0, help="seconds a claim is leased beyond the gateway timeout"
    )
    dispatch_command.set_defaults(handler=cmd_dispatch, serves=True)

    callbacks_command = commands.add_parser("callbacks", help="the status callback sender (reads DATABASE_URL)")
    callbacks_command.add_argument("--batch-size", type=positive, default=100)
    callbacks_command.add_argument("--max-in-flight", type=positive, default=200)
    callbacks_command.add_argument(
        "--per-tenant", type=positive, default=20, help="posts in flight per tenant (one tenant's share of the sender)"
    )
    callbacks_command.add_argument("--grace", type=float, default=10.0, help="seconds in-flight posts get at stop")
    callbacks_command.add_argument(
        "--timeout", type=positive_seconds, default=10.0, help="seconds a receiver has to answer a post"
    )
    callbacks_command.add_argument(
        "--lease",
        type=positive_seconds,
        default=30.0,
        help="seconds a claimed callback stays leased beyond the timeout (a killed sender's come due after it)",
    )
    callbacks_command.set_defaults(handler=cmd_callbacks, serves=True)

    api = commands.add_parser("api", help="the HTTP API (reads DATABASE_URL and FAIRLANE_ADMIN_TOKEN)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8080)
    api.add_argument("--grace", type=float, default=10.0, help="seconds in-flight requests get at stop")
    api.set_defaults(handler=cmd_api, serves=True)

    for command in entry_points(group="fairlane.commands"):  # the tools' subcommands
        command.load()(commands)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logs.configure(os.environ.get("FAIRLANE_LOG_LEVEL", "WARNING"))
    args = parser().parse_args(argv)
    # a command that serves until stopped (`serves`) stops gracefully and exits 0 on SIGINT or SIGTERM, from
    # a supervisor, a terminal's Ctrl-C to the whole group or a service manager, however many arrive
    serves = bool(getattr(args, "serves", False))
    handle_stop_signals(serves)
    try:
        settings = Settings.from_env()
        status = int(args.handler(settings, args))
        if serves:
            ignore_stop_signals()  # stopped: a late signal must not turn the status into death by signal
        return status
    except (SettingsError, Invalid) as error:
        print(f"fairlane: {error}", file=sys.stderr)
        return 2
    except FairlaneError as error:
        where = f" (field {error.field})" if error.field else ""
        print(f"fairlane: {error.code}: {error.message}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
