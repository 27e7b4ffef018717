"""How long a message waits before its next attempt after a transient gateway error."""

import random

MAX_BACKOFF_SECONDS = 300.0


def retry_delay(attempts: int) -> float:
    """Exponential backoff with jitter for a message that has used `attempts` attempts."""
    return min(MAX_BACKOFF_SECONDS, 2.0**attempts) * random.uniform(0.5, 1.5)
