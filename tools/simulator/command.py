"""`fairlane simulator`: the carrier simulator as a process (registered through the `fairlane.commands`
entry point)."""

import argparse
import socket
import tomllib
from pathlib import Path

from service.cli.settings import Settings
from service.model.fields import parse


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    command = commands.add_parser("simulator", help="the carrier simulator")
    command.add_argument("--port", type=int, default=8099)
    command.add_argument("--host", default="127.0.0.1")
    command.add_argument(
        "--fd", type=int, help="serve on this inherited listening socket instead of --host/--port (fairlane run)"
    )
    command.add_argument("--config", type=Path)
    command.add_argument("--receipts-url", help="where delivery receipts go (overrides the config's)")
    command.add_argument("--receipts-token", help="bearer token for the receipts (overrides the config's)")
    command.set_defaults(handler=run, serves=True)  # SIGINT/SIGTERM stop it gracefully, status 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    from tools.simulator import app
    from tools.simulator.config import SimulatorConfig

    data = {}
    if args.config is not None:
        with args.config.open("rb") as file:
            data = tomllib.load(file)
    if args.receipts_url is not None:
        data["receipts_url"] = args.receipts_url
    if args.receipts_token is not None:
        data["receipts_token"] = args.receipts_token
    sock = socket.socket(fileno=args.fd) if args.fd is not None else None
    return app.run(args.port, parse(SimulatorConfig, data, "simulator config"), host=args.host, sock=sock)
