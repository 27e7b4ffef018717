"""`fairlane demo`: the noisy-neighbour scenario end to end (registered through the `fairlane.commands`
entry point)."""

import argparse
import sys
from pathlib import Path

from service.cli.main import positive
from service.cli.settings import Settings


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
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
    demo.add_argument("--rate", type=positive, default=200, help="quota of each destination, segments/s (default 200)")
    demo.add_argument("--burst", type=int, default=20, help="burst of each destination, segments (default 20)")
    demo.add_argument(
        "--flood", type=positive, default=100_000, help="flood messages per side, sent at t = 0 (default 100000)"
    )
    demo.add_argument(
        "--otp-rate", type=float, default=5.0, help="messages/s of each of the 3 passcode streams (default 5)"
    )
    demo.add_argument("--seconds", type=float, default=30.0, help="how long the passcode streams send (default 30)")
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("fairlane-demo"),
        help="report and chart folder (default ./fairlane-demo)",
    )
    demo.add_argument(
        "--workers", type=positive, default=2, help="dispatchers of the fairlane the demo starts (default 2)"
    )
    demo.add_argument("--url", help="a running fairlane's API, e.g. http://127.0.0.1:8080")
    demo.add_argument("--admin-token", help="its admin token (default: FAIRLANE_ADMIN_TOKEN)")
    demo.add_argument("--simulator-url", help="its carrier simulator, e.g. http://127.0.0.1:8099")
    demo.add_argument(
        "--gateway",
        choices=("http", "smpp"),
        default="http",
        help="how the dispatchers reach the carrier simulator: its HTTP protocol (default) or SMPP (a gateway, "
        "an account, per destination)",
    )
    demo.add_argument("--smpp-port", type=int, help="with --url and --gateway smpp: the simulator's SMPP port")
    demo.set_defaults(handler=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    from tools.demo import scenario

    admin_token = args.admin_token or (settings.admin_token if args.url else None)
    remote = (args.url, admin_token, args.simulator_url)
    if any(remote) and not all(remote):
        print(
            "fairlane: demo: --url, --admin-token (or FAIRLANE_ADMIN_TOKEN) and --simulator-url go together",
            file=sys.stderr,
        )
        return 2
    if args.url and args.gateway == "smpp" and args.smpp_port is None:
        print("fairlane: demo: --gateway smpp with --url needs the simulator's --smpp-port", file=sys.stderr)
        return 2
    if not (args.seconds > 0 and args.otp_rate > 0 and args.burst >= 0):
        print("fairlane: demo: --seconds and --otp-rate must be above 0, --burst at least 0", file=sys.stderr)
        return 2
    options = scenario.DemoOptions(
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
        gateway=args.gateway,
        smpp_port=args.smpp_port,
    )
    return scenario.run(options)
