"""The `fairlane` command: its subcommands and how each starts. The tools (`fairlane simulator`, `demo`,
`bench`) add their own subcommands through the `fairlane.commands` entry points (tools/*/command.py), so
the service never imports them."""

import argparse
import logging
import os
import secrets
import sys
import tomllib
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

import psycopg

from db import configuration, embedded, migrate, reports
from db.errors import FairlaneError, translate
from service.cli import logs
from service.cli.database import close_database, open_database
from service.cli.settings import Settings, SettingsError
from service.cli.supervisor import Child, Supervisor
from service.model.configuration import Configuration, parse_configuration
from service.model.fields import Invalid

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


def _stats(dsn: str) -> None:
    with psycopg.connect(dsn) as connection, translate():
        for table in reports.tables(connection):
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
        print(database.dsn)
    elif args.action == "psql":
        os.execv(embedded.psql_path(), [str(embedded.psql_path()), database.dsn])
    return 0


def cmd_apply(settings: Settings, args: argparse.Namespace) -> int:
    config = load_config(args.config)
    database = open_database(settings)
    _apply(database.dsn, config)
    return 0


def cmd_stats(settings: Settings, args: argparse.Namespace) -> int:
    _stats(open_database(settings).dsn)
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
    from aiohttp import web

    from service.api.app import create_app
    from service.api.state import ApiSettings

    admin_token = settings.admin_token
    if admin_token is None:
        admin_token = secrets.token_urlsafe(24)
        print(f"admin token (FAIRLANE_ADMIN_TOKEN was unset): {admin_token}", flush=True)
    app = create_app(ApiSettings(open_database(settings).dsn, admin_token, settings.tenant_rate))
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        print=lambda *_: print(f"api listening on http://{args.host}:{args.port}", flush=True),
        access_log=None,
    )
    return 0


def cmd_callbacks(settings: Settings, args: argparse.Namespace) -> int:
    from service.workers import callbacks, loop

    dsn = open_database(settings).dsn
    callback_settings = callbacks.CallbackSettings(
        batch_size=args.batch_size, max_in_flight=args.max_in_flight, grace_seconds=args.grace
    )
    return loop.serve(callbacks.CallbackSender(dsn, callback_settings))  # SIGTERM/SIGINT stop it; exits 0


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
    run.set_defaults(handler=cmd_run)

    db = commands.add_parser("db", help="database: upgrade, downgrade, url, psql, stop")
    db.add_argument("action", choices=("upgrade", "downgrade", "url", "psql", "stop"))
    db.add_argument("revision", nargs="?", help="target revision (upgrade: head, downgrade: base)")
    db.set_defaults(handler=cmd_db)

    apply = commands.add_parser("apply", help="apply a declarative configuration file (TOML)")
    apply.add_argument("config", type=Path)
    apply.set_defaults(handler=cmd_apply)

    stats_command = commands.add_parser("stats", help="print destination and queue tables")
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
    dispatch_command.set_defaults(handler=cmd_dispatch)

    callbacks_command = commands.add_parser("callbacks", help="the status callback sender (reads DATABASE_URL)")
    callbacks_command.add_argument("--batch-size", type=positive, default=100)
    callbacks_command.add_argument("--max-in-flight", type=positive, default=200)
    callbacks_command.add_argument("--grace", type=float, default=10.0, help="seconds in-flight posts get at stop")
    callbacks_command.set_defaults(handler=cmd_callbacks)

    api = commands.add_parser("api", help="the HTTP API (reads DATABASE_URL and FAIRLANE_ADMIN_TOKEN)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8080)
    api.set_defaults(handler=cmd_api)

    for command in entry_points(group="fairlane.commands"):  # the tools' subcommands
        command.load()(commands)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logs.configure(os.environ.get("FAIRLANE_LOG_LEVEL", "WARNING"))
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return int(args.handler(settings, args))
    except (SettingsError, Invalid) as error:
        print(f"fairlane: {error}", file=sys.stderr)
        return 2
    except FairlaneError as error:
        where = f" (field {error.field})" if error.field else ""
        print(f"fairlane: {error.code}: {error.message}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
