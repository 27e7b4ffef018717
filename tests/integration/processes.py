"""Real processes for dispatch tests: the carrier simulator, dispatchers and the API, on loopback.

Each process starts in a process group of its own and `Process.stop` kills everything it started (a
supervisor's children too), so nothing outlives a test, whatever happened in it."""

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port(following: int = 0) -> int:
    """A free port on loopback whose `following` next ports are free too (`fairlane run --port P` puts its
    dispatchers' metrics on P+1, P+2, ...)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + following <= 65535 and all(_bindable(p) for p in range(port + 1, port + following + 1)):
            return port


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _processes():
    """(pid, state, process group) of every process (Linux: read from /proc)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # it exited meanwhile
                continue
            state, _ppid, group = stat[stat.rindex(")") + 2 :].split()[:3]
            yield int(entry.name), state, int(group)


def group_members(pgid: int) -> list[int]:
    """The live processes (zombies aside) of process group `pgid`."""
    return [pid for pid, state, group in _processes() if state != "Z" and group == pgid]


def _holding(pipe: str) -> list[int]:
    """The live processes that have `pipe` ("pipe:[inode]") open."""
    holders = []
    for pid, state, _group in _processes():
        if state != "Z" and pid != os.getpid():
            with contextlib.suppress(OSError):  # exited meanwhile, or not ours to look at
                if any(os.readlink(fd) == pipe for fd in Path(f"/proc/{pid}/fd").iterdir()):
                    holders.append(pid)
    return holders


def wait_until(condition, timeout=30.0, interval=0.05, message="condition"):
    """Poll `condition` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(interval)


class Process:
    """A `fairlane` subcommand with its output lines collected (stdout and stderr merged), leading a process
    group of its own (with everything it starts)."""

    def __init__(self, args, *, env=None, cwd=ROOT):
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), "FAIRLANE_LOG_LEVEL": "INFO", **(env or {})}
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "service.cli", *args],
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: `stop` kills all it started
        )
        self.pid = self.popen.pid
        self.pipe = f"pipe:[{os.fstat(self.popen.stdout.fileno()).st_ino}]"
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.popen.stdout:
            self.lines.put(line)
        self.lines.put(None)  # the end of its output: it and everything it started exited

    def wait_for_line(self, text, timeout=30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line with {text!r} within {timeout} s; saw:\n{''.join(self.seen[-60:])}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.lines.put(None)
                raise AssertionError(f"no line with {text!r}: its output ended; saw:\n{''.join(self.seen[-60:])}")
            self.seen.append(line)
            if text in line:
                return line

    def wait_for_lines(self, text, count, timeout=30.0) -> list[str]:
        """Wait until `count` lines with `text` have come (counting those seen already); return them."""
        deadline = time.monotonic() + timeout
        while sum(text in line for line in self.seen) < count:
            self.wait_for_line(text, timeout=max(deadline - time.monotonic(), 0.01))
        return [line for line in self.seen if text in line]

    def output(self, timeout=30.0) -> str:
        """Everything it printed, once every process holding its output has exited (or `timeout` passed)."""
        self.reader.join(timeout=timeout)
        while not self.lines.empty():
            line = self.lines.get()
            if line is not None:
                self.seen.append(line)
        return "".join(self.seen)

    def signal(self, signum):
        self.popen.send_signal(signum)

    def signal_group(self, signum):
        """Signal every process of its group, as a terminal's Ctrl-C or systemd's stop does."""
        os.killpg(self.pid, signum)

    def wait(self, timeout=60.0) -> int:
        return self.popen.wait(timeout=timeout)

    def remaining(self) -> list[int]:
        """The processes it started that still run, once it has exited: those holding its output pipe. (Its
        process group id could belong to a new process by now, its pid being free again.)"""
        return _holding(self.pipe)

    def stop(self):
        """Kill the process and whatever it started that is still running."""
        if self.popen.poll() is None:  # not reaped: its pid, and so its process group, are still its own
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        for pid in self.remaining():  # orphans, whatever group they are in now
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.popen.stdout.close()
        self.reader.join(timeout=5)


def _toml(data: dict) -> str:
    """TOML for the simulator's configuration: top-level values and tables of tables."""
    lines = [f"{key} = {json.dumps(value)}" for key, value in data.items() if not isinstance(value, dict)]
    for table, entries in ((k, v) for k, v in data.items() if isinstance(v, dict)):
        for name, values in entries.items():
            lines.append(f'[{table}."{name}"]')
            lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


class Simulator(Process):
    def __init__(self, config: dict, tmp_path: Path):
        self.port = free_port()
        path = tmp_path / f"simulator-{self.port}.toml"
        path.write_text(_toml(config))
        super().__init__(["simulator", "--port", str(self.port), "--config", str(path)])
        self.wait_for_line("simulator listening")
        self.url = f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/stats", timeout=10) as response:
            return json.loads(response.read())

    def received(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.url}/received", timeout=30) as response:
            return json.loads(response.read())


def dispatcher(dsn: str, *args: str) -> Process:
    process = Process(["dispatch", "--workers", "1", *args], env={"DATABASE_URL": dsn})
    process.wait_for_line("dispatcher started")
    return process


def call_api(base: str, method: str, path: str, token: str, body=None) -> tuple[int, object]:
    """One JSON request to the API with a bearer token: (status, decoded body), errors included."""
    request = urllib.request.Request(
        base + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
