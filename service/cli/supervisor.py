"""Supervised child processes: `fairlane run` and `fairlane dispatch --workers N` start each part of the
service as its own process and keep it running. A child that exits unexpectedly is logged and started
again (after 1 s, doubling up to 30 s while it keeps failing within a minute of its start). SIGTERM or
SIGINT is passed on to every child; the supervisor waits for them to finish (each drains on its own), kills
what is still running after the grace period, and exits 0 when every child stopped cleanly.

Stop signals (docs/decisions/0015). A terminal's Ctrl-C, `kill -- -PGID` and systemd's default stop signal
every process of the group, so a child gets the signal both directly and again from the supervisor: every
`fairlane` process treats the first SIGINT or SIGTERM as "stop gracefully" and any later one as the same
request, whenever it comes (`handle_stop_signals`, `ignore_stop_signals`). A child starts with both
signals blocked; `fairlane`'s main unblocks them once its handlers are in place, so a signal that arrives
while the child is still importing waits for it instead of killing it half started.

Children never outlive the supervisor: on Linux each asks the kernel for SIGTERM when the supervisor dies
(`PR_SET_PDEATHSIG`, even by SIGKILL), and one whose supervisor died before it could ask does not start.
They then drain and exit like on any other SIGTERM. (The embedded PostgreSQL is not a child: it outlives
`fairlane run` on purpose and the next start reuses it.)"""

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _prctl() -> Any:
    """libc's prctl on Linux (looked up before any fork), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _child_setup(supervisor_pid: int, prctl: Any) -> Callable[[], None]:
    """What runs in a child between fork and exec. The supervisor has no other threads (a preexec_fn needs
    that) and starts its children from its main thread (the parent-death signal follows the thread that
    forked)."""

    def setup() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # until the child's handlers are in place
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != supervisor_pid:  # the supervisor died before prctl could cover it
            os._exit(0)

    return setup


@dataclass
class Child:
    """One supervised `fairlane` subcommand (it must unblock the stop signals: `handle_stop_signals`)."""

    name: str
    command: Sequence[str]
    env: Mapping[str, str]
    listeners: Sequence[socket.socket] = ()
    """Listening sockets the supervisor holds for the child, passed to it under the same descriptor numbers
    (its port stays taken across restarts)."""
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_delay: float = 1.0
    restart_at: float | None = None
    restarts: int = field(default=0)

    def start(self, setup: Callable[[], None] | None = None) -> None:
        self.process = subprocess.Popen(
            list(self.command),
            env=dict(self.env),
            pass_fds=[listener.fileno() for listener in self.listeners],
            preexec_fn=setup,
        )
        self.started_at = time.monotonic()
        self.restart_at = None


class Supervisor:
    def __init__(self, children: Sequence[Child], *, grace_seconds: float = 30.0, poll_seconds: float = 0.2) -> None:
        self.children = list(children)
        self.grace_seconds = grace_seconds
        self.poll_seconds = poll_seconds
        self._stopping = threading.Event()
        self._setup = _child_setup(os.getpid(), _prctl())

    def stop(self, *_: object) -> None:
        self._stopping.set()

    def run(self) -> int:
        """Start the children and keep them running until SIGTERM/SIGINT; return the exit status."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.stop)
        try:
            for child in self.children:
                child.start(self._setup)
            while not self._stopping.wait(self.poll_seconds):
                for child in self.children:
                    self._look_after(child)
            return self._shut_down()
        finally:
            for child in self.children:
                for listener in child.listeners:
                    listener.close()

    def _look_after(self, child: Child) -> None:
        now = time.monotonic()
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restarts += 1
                logger.warning("child restarted", extra={"child": child.name, "restarts": child.restarts})
                child.start(self._setup)
            return
        assert child.process is not None
        code = child.process.poll()
        if code is None or self._stopping.is_set():  # a child that stopped with the rest is not restarted
            return
        # quick repeated failures back off; a child that ran for a minute restarts after a second again
        if now - child.started_at >= 60:
            child.restart_delay = 1.0
        child.restart_at = now + child.restart_delay
        logger.warning(
            "child exited", extra={"child": child.name, "code": code, "restart_in_seconds": child.restart_delay}
        )
        child.restart_delay = min(child.restart_delay * 2, 30.0)

    def _shut_down(self) -> int:
        # a child waiting to be restarted is not running; one that exited since the last look is waited for
        running = [c for c in self.children if c.process is not None and c.restart_at is None]
        for child in running:
            assert child.process is not None
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)  # also when the signal reached it already: same request
        deadline = time.monotonic() + self.grace_seconds
        # children exit 0 after a stop signal; one killed by it before Python ran (no handler yet) stopped too
        clean = (0, -signal.SIGTERM, -signal.SIGINT)
        failures = []
        for child in running:
            assert child.process is not None
            try:
                code = child.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                logger.error("child killed after the grace period", extra={"child": child.name})
                child.process.kill()
                code = child.process.wait()
            if code not in clean:
                logger.error("child failed to stop cleanly", extra={"child": child.name, "code": code})
                failures.append(128 - code if code < 0 else code)
        return failures[0] if failures else 0


def handle_stop_signals(serving: bool) -> None:
    """Called by `fairlane`'s main once its command is known. A command that serves until stopped (run,
    api, dispatch, callbacks, simulator) exits 0 on a stop signal that comes before its own handlers are in
    place (it has nothing to drain yet); any other keeps Python's defaults. Then the stop signals a
    supervisor blocked are let through (a pending one is handled now)."""
    if serving:
        for signum in STOP_SIGNALS:
            signal.signal(signum, _exit_before_serving)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def ignore_stop_signals() -> None:
    """Once a stop is under way, later stop signals ask for nothing new (they must not cut the stop short or
    change the exit status)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _exit_before_serving(signum: int, frame: FrameType | None) -> None:
    ignore_stop_signals()
    raise SystemExit(0)
