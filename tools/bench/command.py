"""`fairlane bench NAME`: benchmarks that print figures (registered through the `fairlane.commands` entry
point). Each creates its own scratch database next to the one in use."""

import argparse

from service.cli.database import close_database, open_database
from service.cli.main import positive
from service.cli.settings import Settings


def positive_list(value: str) -> tuple[int, ...]:
    try:
        return tuple(positive(part) for part in value.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"a comma-separated list of positive integers, got {value!r}") from error


def positive_number(value: str) -> float:
    try:
        number = float(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"a number, got {value!r}") from error
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"must be above 0, got {value!r}")
    return number


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    bench = commands.add_parser("bench", help="benchmarks that print figures")
    bench.add_argument(
        "name", choices=("outbox", "dispatch", "e2e", "api", "soak", "designs", "scale", "edges", "levels")
    )
    bench.add_argument("--rows", type=int, default=100_000, help="outbox: rows per run")
    bench.add_argument(
        "--seconds",
        type=float,
        help="dispatch, api, designs, scale, edges, levels: seconds per run (default 3, 5, 4, 60, 5, 10)",
    )
    bench.add_argument("--concurrency", type=positive, default=64, help="api: concurrent single POSTs")
    bench.add_argument("--large", type=int, default=1_000_000, help="dispatch: the large backlog")
    bench.add_argument(
        "--processes",
        type=positive_list,
        help="dispatch, scale: dispatcher process counts (default 1,2,4 and 1,2,4,8,16)",
    )
    bench.add_argument("--batches", type=positive_list, default=(10, 100), help="dispatch: batch sizes, e.g. 10,100")
    bench.add_argument("--minutes", type=positive, default=30, help="soak: minutes of sending")
    bench.add_argument("--rate", type=positive_number, default=50.0, help="soak: messages per second")
    bench.add_argument(
        "--gateway", choices=("http", "smpp"), default="http", help="e2e: smpp also runs the throughput over SMPP"
    )
    bench.set_defaults(handler=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    from tools.bench import api, designs, dispatch, e2e, outbox, scale, soak

    database = open_database(settings)
    try:
        if args.name == "outbox":
            outbox.main(database.dsn, rows=args.rows)
        elif args.name == "dispatch":
            dispatch.main(
                database.dsn,
                seconds=3.0 if args.seconds is None else args.seconds,
                large=args.large,
                processes=args.processes or (1, 2, 4),
                batches=args.batches,
            )
        elif args.name == "api":
            api.main(database.dsn, seconds=5.0 if args.seconds is None else args.seconds, concurrency=args.concurrency)
        elif args.name == "soak":
            soak.main(database.dsn, minutes=args.minutes, rate=args.rate)
        elif args.name == "scale":
            scale.main(
                database.dsn,
                processes=args.processes or (1, 2, 4, 8, 16),
                seconds=60.0 if args.seconds is None else args.seconds,
            )
        elif args.name == "edges":
            from tools.bench import edges

            edges.main(database.dsn, seconds=5.0 if args.seconds is None else args.seconds)
        elif args.name == "levels":
            from tools.bench import levels

            levels.main(database.dsn, seconds=10.0 if args.seconds is None else args.seconds)
        elif args.name == "designs":
            designs.main(database.dsn, seconds=4.0 if args.seconds is None else args.seconds)
        else:
            e2e.main(database.dsn, gateway=args.gateway)
    finally:
        close_database(settings, database)
    return 0
