"""`fairlane simulator`: the carrier simulator as a process (registered through the `fairlane.commands`
entry point)."""

import argparse
import os
import socket
import tomllib
from pathlib import Path

from service.cli.settings import Settings
from service.model.fields import parse

RECEIPTS_TOKEN_VARIABLE = "FAIRLANE_SIMULATOR_RECEIPTS_TOKEN"
"""The bearer token for the receipts (overrides the config's), as `fairlane run` passes it."""


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    command = commands.add_parser("simulator", help="the carrier simulator")
    command.add_argument("--port", type=int, default=8099)
    command.add_argument("--host", default="127.0.0.1")
    command.add_argument(
        "--fd", type=int, help="serve on this inherited listening socket instead of --host/--port (fairlane run)"
    )
    command.add_argument("--config", type=Path)
    command.add_argument("--receipts-url", help="where delivery receipts go (overrides the config's)")
    command.add_argument("--smpp-port", type=int, help="also speak SMPP 3.4 on this port (0: a free one)")
    command.add_argument("--smpp-fd", type=int, help="speak SMPP on this inherited listening socket (fairlane run)")
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
    if os.environ.get(RECEIPTS_TOKEN_VARIABLE):  # a secret: from the environment, never the command line
        data["receipts_token"] = os.environ[RECEIPTS_TOKEN_VARIABLE]
    sock = socket.socket(fileno=args.fd) if args.fd is not None else None
    smpp: app.SmppListener | None = None
    if args.smpp_fd is not None:
        smpp = (args.host, 0, socket.socket(fileno=args.smpp_fd))
    elif args.smpp_port is not None:
        smpp = (args.host, args.smpp_port, None)
    config = parse(SimulatorConfig, data, "simulator config")
    return app.run(args.port, config, host=args.host, sock=sock, smpp=smpp)
