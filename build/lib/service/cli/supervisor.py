"""Supervised child processes: `fairlane run` and `fairlane dispatch --workers N` start each part of the
service as its own process and keep it running. A child that exits unexpectedly is logged and started
again (after 1 s, doubling up to 30 s while it keeps failing within a minute of its start). SIGTERM or
SIGINT is passed on to every child; the supervisor waits for them to finish (each drains on its own), kills
what is still running after the grace period, and exits 0 when every child stopped cleanly."""

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    command: Sequence[str]
    env: Mapping[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_delay: float = 1.0
    restart_at: float | None = None
    restarts: int = field(default=0)

    def start(self) -> None:
        self.process = subprocess.Popen(list(self.command), env=dict(self.env))
        self.started_at = time.monotonic()
        self.restart_at = None


class Supervisor:
    def __init__(self, children: Sequence[Child], *, grace_seconds: float = 30.0, poll_seconds: float = 0.2) -> None:
        self.children = list(children)
        self.grace_seconds = grace_seconds
        self.poll_seconds = poll_seconds
        self._stopping = threading.Event()

    def stop(self, *_: object) -> None:
        self._stopping.set()

    def run(self) -> int:
        """Start the children and keep them running until SIGTERM/SIGINT; return the exit status."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for child in self.children:
            child.start()
        while not self._stopping.wait(self.poll_seconds):
            for child in self.children:
                self._look_after(child)
        return self._shut_down()

    def _look_after(self, child: Child) -> None:
        now = time.monotonic()
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restarts += 1
                logger.warning("child restarted", extra={"child": child.name, "restarts": child.restarts})
                child.start()
            return
        assert child.process is not None
        code = child.process.poll()
        if code is None:
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
        running = [c for c in self.children if c.process is not None and c.restart_at is None]
        for child in running:
            assert child.process is not None
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        # a child still starting (no handler yet) dies of the signal itself: that is a clean stop too
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
