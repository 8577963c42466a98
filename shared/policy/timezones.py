"""Time zone names as Azure writes them: Windows names ("W. Europe Standard Time") or IANA names."""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

# CLDR's Windows -> IANA table (windowsZones.xml, territory "001"), as tzlocal ships it; hand-written
# tables go stale when Microsoft adds zones.
from tzlocal.windows_tz import win_tz

_WINDOWS_BY_FOLDED_NAME = {name.casefold(): iana for name, iana in win_tz.items()}

# Names in the tz database that do not name a place: they depend on the machine or mean nothing.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@lru_cache(maxsize=1)
def _iana_names() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_ZONES


@lru_cache(maxsize=256)
def resolve_time_zone(name: str) -> ZoneInfo | None:
    """The zone for a Windows or IANA time zone name, or None when it names no zone.

    Windows names are matched without regard to case (Azure's portal and SDKs differ); an IANA
    name must be spelled as in the tz database. "UTC" resolves to UTC either way.
    """
    iana = win_tz.get(name) or _WINDOWS_BY_FOLDED_NAME.get(name.casefold())
    candidate = iana or name
    if candidate not in _iana_names():
        return None
    try:
        return ZoneInfo(candidate)
    except (ZoneInfoNotFoundError, ValueError, IsADirectoryError, UnicodeError):
        # ValueError: not a valid key (absolute path, ".."); IsADirectoryError: "Europe".
        return None


def windows_zone_names() -> tuple[str, ...]:
    """Every Windows zone name accepted, sorted."""
    return tuple(sorted(win_tz))
