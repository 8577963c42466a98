"""Waiting in tests: poll a condition until it holds, with a generous limit (never a fixed sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.2, message: str = "") -> T:
    """Poll ``predicate()`` until it returns something truthy, and return that.

    Fails after ``timeout`` seconds with ``message`` and the last value seen.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{message or 'condition not met'} in {timeout} s (last value {last!r})")
