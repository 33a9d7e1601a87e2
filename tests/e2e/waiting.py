"""Waiting in the browser tests: poll a condition while the page keeps running."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# How long any one thing may take: generous, for a two-core machine that someone else is also using.
# Every wait polls, so a fast machine never waits this long.
WAIT_S = 60.0


def wait_until(page, condition: Callable[[], T], what: str, timeout_s: float = WAIT_S) -> T:
    """Poll ``condition`` while the page keeps running; its first truthy value, or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        page.wait_for_timeout(100)
    return value
