import pytest


@pytest.fixture
def started():
    """Processes a test started, killed at its end whatever happened."""
    processes = []
    yield processes
    for process in processes:
        process.stop()
