"""Moments for tests of time-driven code: schedules, tags and retention take ``now`` as a parameter."""

from __future__ import annotations

import datetime as dt


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, second: int = 0) -> dt.datetime:
    """That moment in UTC."""
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
