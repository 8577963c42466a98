"""The storage service's clock, and how far a host's own clock may be from it.

Ages that decide something irreversible (a lock abandoned, a recovery point expired) are judged by
the storage service's time, the one clock every host shares. A host whose clock is further off
than ``MAX_CLOCK_SKEW`` does nothing irreversible at all: it says why and waits to be fixed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.errors import ErrorCode, UserError
from shared.storage.tables import StateStore

# What "more than a minute off" means (issue 13); NTP keeps hosts within milliseconds of it.
MAX_CLOCK_SKEW = timedelta(minutes=1)


class ClockSkewed(UserError):
    """The host's clock disagrees with the storage service's by more than ``MAX_CLOCK_SKEW``."""

    def __init__(self, host: datetime, service: datetime) -> None:
        super().__init__(
            ErrorCode.CLOCK_SKEW,
            f"this host's clock says {host.isoformat()}, the storage service's {service.isoformat()} "
            f"({(host - service).total_seconds():+.0f} s; at most {MAX_CLOCK_SKEW.total_seconds():.0f} s allowed)",
        )
        self.host, self.service = host, service


def service_now(state: StateStore, host_now: datetime) -> datetime:
    """The storage service's current time; ``ClockSkewed`` when ``host_now`` is too far from it."""
    service = state.service_time()
    if abs(host_now - service) > MAX_CLOCK_SKEW:
        raise ClockSkewed(host_now, service)
    return service
