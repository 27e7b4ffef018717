"""The `fairlane` command."""

import argparse
import logging
import os
import secrets
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

import psycopg

from db import configuration, embedded, migrate, stats
from db.errors import FairlaneError, translate
from service import logs
from service.database import close_database, open_database
from service.settings import Settings, SettingsError
from service.supervisor import Child, Supervisor

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "fairlane.toml"
logger = logging.getLogger(__name__)


def _load_config(path: Path) -> configuration.Configuration:
    try:
        with path.open("rb") as file:
            return configuration.parse(tomllib.load(file))
    except FileNotFoundError as error:
        raise configuration.ConfigError(f"config file {str(path)!r} does not exist") from error
    except tomllib.TOMLDecodeError as error:
        raise configuration.ConfigError(f"config file {str(path)!r} is not valid TOML: {error}") from error


def _print_table(table: stats.Table) -> None:
    cells = [table.columns] + [tuple("" if value is None else str(value) for value in row) for row in table.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(table.columns))]
    print(f"{table.title} ({len(table.rows)})")
    for index, row in enumerate(cells):
        print("  " + "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print("  " + "  ".join("-" * width for width in widths))
    print()


def _apply(dsn: str, config: configuration.Configuration) -> None:
    with psycopg.connect(dsn) as connection:
        result = configuration.apply(connection, config)
    for change in result.changes:
        print(change)
    if not result.changes:
        print("no changes")
    for tenant, api_key in result.api_keys.items():
        print(f"API key for tenant {tenant} (shown once): {api_key}")


def _stats(dsn: str) -> None:
    with psycopg.connect(dsn) as connection, translate():
        for table in stats.read(connection):
            _print_table(table)


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from service import run

    database = open_database(settings)
    try:
        options = run.RunOptions(
            dsn=database.dsn,
            config=_load_config(args.config) if args.config is not None else None,
            example=_load_config(EXAMPLE_CONFIG),
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
    config = _load_config(args.config)
    database = open_database(settings)
    _apply(database.dsn, config)
    return 0


def cmd_stats(settings: Settings, args: argparse.Namespace) -> int:
    _stats(open_database(settings).dsn)
    return 0


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from bench import api, dispatch, e2e, outbox

    database = open_database(settings)
    try:
        if args.name == "outbox":
            outbox.main(database.dsn, rows=args.rows)
        elif args.name == "dispatch":
            dispatch.main(
                database.dsn,
                seconds=3.0 if args.seconds is None else args.seconds,
                large=args.large,
                processes=args.processes,
                batches=args.batches,
            )
        elif args.name == "api":
            api.main(database.dsn, seconds=5.0 if args.seconds is None else args.seconds, concurrency=args.concurrency)
        else:
            e2e.main(database.dsn)
    finally:
        close_database(settings, database)
    return 0


def cmd_dispatch(settings: Settings, args: argparse.Namespace) -> int:
    from service import dispatcher

    dsn = open_database(settings).dsn
    dispatch_settings = dispatcher.DispatchSettings(
        batch_size=args.batch_size, grace_seconds=args.grace, lease_seconds=args.lease
    )
    if args.workers == 1:
        return dispatcher.run_process(dsn, dispatch_settings, args.metrics_port)
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


def cmd_simulator(settings: Settings, args: argparse.Namespace) -> int:
    from service import simulator

    data = {}
    if args.config is not None:
        with args.config.open("rb") as file:
            data = tomllib.load(file)
    try:
        if args.receipts_url is not None:
            data["receipts_url"] = args.receipts_url
        if args.receipts_token is not None:
            data["receipts_token"] = args.receipts_token
        config = simulator.SimulatorConfig.from_dict(data)
    except (TypeError, ValueError) as error:
        raise configuration.ConfigError(str(error)) from error
    simulator.run(args.port, config, host=args.host)
    return 0


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    from aiohttp import web

    from service.api import create_app
    from service.state import ApiSettings

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
    from service import callbacks

    dsn = open_database(settings).dsn
    callback_settings = callbacks.CallbackSettings(
        batch_size=args.batch_size, max_in_flight=args.max_in_flight, grace_seconds=args.grace
    )
    return callbacks.run_process(dsn, callback_settings)  # SIGTERM/SIGINT stop it; exits 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from service import demo

    admin_token = args.admin_token or (settings.admin_token if args.url else None)
    remote = (args.url, admin_token, args.simulator_url)
    if any(remote) and not all(remote):
        print(
            "fairlane: demo: --url, --admin-token (or FAIRLANE_ADMIN_TOKEN) and --simulator-url go together",
            file=sys.stderr,
        )
        return 2
    if not (args.seconds > 0 and args.otp_rate > 0 and args.burst >= 0):
        print("fairlane: demo: --seconds and --otp-rate must be above 0, --burst at least 0", file=sys.stderr)
        return 2
    options = demo.DemoOptions(
        rate=args.rate,
        burst=args.burst,
        flood=args.flood,
        otp_rate=args.otp_rate,
        seconds=args.seconds,
        out=args.out,
        workers=args.workers,
        url=args.url,
        admin_token=admin_token,
        simulator_url=args.simulator_url,
    )
    return demo.run(options)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _positive_list(value: str) -> tuple[int, ...]:
    try:
        return tuple(_positive(part) for part in value.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"a comma-separated list of positive integers, got {value!r}") from error


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fairlane", description="Fair-share messaging dispatcher on PostgreSQL")
    commands = p.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="start fairlane (embedded PostgreSQL unless DATABASE_URL is set)")
    run.add_argument("--config", type=Path, help="configuration to apply (default: the example, on an empty database)")
    run.add_argument("--workers", type=_positive, default=2, help="dispatcher processes")
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
    dispatch_command.add_argument("--workers", type=_positive, default=1)
    dispatch_command.add_argument(
        "--metrics-port", type=_positive, help="serve Prometheus metrics on 127.0.0.1 (worker i: port + i)"
    )
    dispatch_command.add_argument("--batch-size", type=int, default=100)
    dispatch_command.add_argument("--grace", type=float, default=10.0, help="seconds in-flight sends get at stop")
    dispatch_command.add_argument(
        "--lease", type=float, default=60.0, help="seconds a claim is leased beyond the gateway timeout"
    )
    dispatch_command.set_defaults(handler=cmd_dispatch)

    simulator_command = commands.add_parser("simulator", help="the carrier simulator")
    simulator_command.add_argument("--port", type=int, default=8099)
    simulator_command.add_argument("--host", default="127.0.0.1")
    simulator_command.add_argument("--config", type=Path)
    simulator_command.add_argument("--receipts-url", help="where delivery receipts go (overrides the config's)")
    simulator_command.add_argument("--receipts-token", help="bearer token for the receipts (overrides the config's)")
    simulator_command.set_defaults(handler=cmd_simulator)

    callbacks_command = commands.add_parser("callbacks", help="the status callback sender (reads DATABASE_URL)")
    callbacks_command.add_argument("--batch-size", type=_positive, default=100)
    callbacks_command.add_argument("--max-in-flight", type=_positive, default=200)
    callbacks_command.add_argument("--grace", type=float, default=10.0, help="seconds in-flight posts get at stop")
    callbacks_command.set_defaults(handler=cmd_callbacks)

    api = commands.add_parser("api", help="the HTTP API (reads DATABASE_URL and FAIRLANE_ADMIN_TOKEN)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8080)
    api.set_defaults(handler=cmd_api)

    demo = commands.add_parser(
        "demo",
        help="a noisy-neighbour scenario end to end, fair against FIFO, with a report and a chart",
        description="A flood of batches and steady passcode traffic through the HTTP API, on a fair destination "
        "(a tenant per stream) and a FIFO one (every stream as one tenant: one queue), side by side; a live view, "
        "then report.md, report.json and chart.png in --out. By default it starts its own fairlane (`fairlane "
        "run`, embedded PostgreSQL, a carrier simulator) in a temporary directory and stops it at the end. With "
        "--url, --admin-token and --simulator-url it uses a running fairlane whose gateway simulator is at "
        "--simulator-url: it creates (or reuses) the gateway demo-carrier, the destinations DEMO-FAIR and "
        "DEMO-FIFO, the tenant sets demo and demo-fifo and the tenants bulk, otp-1..3 and fifo through the admin "
        "API; that instance keeps dispatching the flood backlog the demo leaves behind after it ends (at the quota: "
        "100,000 messages at 200/s take over 8 minutes per destination), and a later demo against it starts "
        "behind what is left.",
    )
    demo.add_argument("--rate", type=_positive, default=200, help="quota of each destination, segments/s (default 200)")
    demo.add_argument("--burst", type=int, default=20, help="burst of each destination, segments (default 20)")
    demo.add_argument(
        "--flood", type=_positive, default=100_000, help="flood messages per side, sent at t = 0 (default 100000)"
    )
    demo.add_argument(
        "--otp-rate", type=float, default=5.0, help="messages/s of each of the 3 passcode streams (default 5)"
    )
    demo.add_argument("--seconds", type=float, default=30.0, help="how long the passcode streams send (default 30)")
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("fairlane-demo"),
        help="where the report and chart go (default ./fairlane-demo)",
    )
    demo.add_argument(
        "--workers", type=_positive, default=2, help="dispatchers of the fairlane the demo starts (default 2)"
    )
    demo.add_argument("--url", help="a running fairlane's API, e.g. http://127.0.0.1:8080")
    demo.add_argument("--admin-token", help="its admin token (default: FAIRLANE_ADMIN_TOKEN)")
    demo.add_argument("--simulator-url", help="its carrier simulator, e.g. http://127.0.0.1:8099")
    demo.set_defaults(handler=cmd_demo)

    bench = commands.add_parser("bench", help="benchmarks that print figures")
    bench.add_argument("name", choices=("outbox", "dispatch", "e2e", "api"))
    bench.add_argument("--rows", type=int, default=100_000, help="outbox: rows per run")
    bench.add_argument("--seconds", type=float, help="dispatch, api: seconds per run (default 3 and 5)")
    bench.add_argument("--concurrency", type=_positive, default=64, help="api: concurrent single POSTs")
    bench.add_argument("--large", type=int, default=1_000_000, help="dispatch: the large backlog")
    bench.add_argument(
        "--processes", type=_positive_list, default=(1, 2, 4), help="dispatch: process counts, e.g. 1,4,8"
    )
    bench.add_argument("--batches", type=_positive_list, default=(10, 100), help="dispatch: batch sizes, e.g. 10,100")
    bench.set_defaults(handler=cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logs.configure(os.environ.get("FAIRLANE_LOG_LEVEL", "WARNING"))
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return int(args.handler(settings, args))
    except (SettingsError, configuration.ConfigError) as error:
        print(f"fairlane: {error}", file=sys.stderr)
        return 2
    except FairlaneError as error:
        where = f" (field {error.field})" if error.field else ""
        print(f"fairlane: {error.code}: {error.message}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
