"""What the process-level benchmarks share: free loopback ports, `fairlane` subcommands each in its own process
group with its log in a directory, and CPU seconds from /proc (Linux)."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent.parent
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def free_port(taken: Iterable[int] = ()) -> int:
    """A loopback port nothing listens on (and not one of `taken`, chosen for another process already)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in taken:
            return port


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def with_application_name(dsn: str, name: str) -> str:
    """`dsn` whose connections name themselves `name` in pg_stat_activity (asyncpg and libpq both read it)."""
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "application_name"] + [("application_name", name)]
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))  # %20: libpq reads no '+'


def process_cpu(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds of each process still running."""
    seconds = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / TICK
    return seconds


@dataclass
class Services:
    """`fairlane` subcommands (or other `python -m` modules), each in its own process group (a supervisor's
    children too), logging to `logs/NAME.log`."""

    logs: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(
        self,
        name: str,
        args: list[str],
        ready: str | None = None,
        env: dict[str, str] | None = None,
        module: str = "service.cli",
    ) -> subprocess.Popen[bytes]:
        """Start `python -m module *args`; with `ready`, return once its log has that text."""
        log = self.logs / f"{name}.log"
        with log.open("wb") as output:
            process = self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                cwd=ROOT,
                env={**os.environ, **self.env, **(env or {})},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while ready is not None and ready not in log.read_text(errors="replace"):
            self.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {self.tail(name)}")
            time.sleep(0.05)
        return process

    def tail(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]

    def check(self) -> None:
        """Raises when a process exited (one killed on purpose is `forget`-ten first)."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with status {process.returncode}: {self.tail(name)}")

    def kill_one(self, name: str) -> None:
        """SIGKILL to a process's group, as `kill -9` would; it is no longer checked."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> dict[str, int]:
        """SIGTERM to each, the last started first (a supervisor stops its children), SIGKILL to one that has not
        exited a minute later; their exit statuses."""
        statuses = {}
        for name, process in reversed(self.processes.items()):
            process.terminate()
            try:
                statuses[name] = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                statuses[name] = -signal.SIGKILL  # killed below, with anything else in its group
        self.kill()  # anything a process left behind in its group
        return statuses

    def kill(self) -> None:
        for process in self.processes.values():
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()

    def warnings(self) -> list[str]:
        """Per process, how many WARNING and ERROR lines it logged, with the first three of them."""
        report = []
        for name in self.processes:
            lines = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()
            flagged = [line for line in lines if " WARNING " in line or " ERROR " in line]
            errors = sum(" ERROR " in line for line in flagged)
            report.append(f"{name}: {len(flagged) - errors} warnings, {errors} errors")
            report.extend(f"    {line[:200]}" for line in flagged[:3])
        return report
