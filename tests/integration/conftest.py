import contextlib

import pytest


@pytest.fixture
def started():
    """Processes a test started, killed at its end whatever happened (each with everything it started)."""
    processes = []
    yield processes
    with contextlib.ExitStack() as stack:  # every one is stopped even when stopping one fails
        for process in processes:
            stack.callback(process.stop)
