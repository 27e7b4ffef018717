"""Real processes for dispatch tests: the carrier simulator, dispatchers and the API, on loopback."""

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    """A `fairlane` subcommand with its output lines collected (stdout and stderr merged)."""

    def __init__(self, args, *, env=None, cwd=ROOT):
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), "FAIRLANE_LOG_LEVEL": "INFO", **(env or {})}
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "service.cli", *args],
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.popen.stdout:
            self.lines.put(line)

    def wait_for_line(self, text, timeout=30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line with {text!r}; saw {self.seen[-20:]}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line

    def signal(self, signum):
        self.popen.send_signal(signum)

    def wait(self, timeout=60.0) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self):
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=10)
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
