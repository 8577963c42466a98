"""Parse and validate Azure Data Protection BackupPolicy JSON for PostgreSQL databases.

Every refusal is ``UserError(ErrorCode.INVALID_POLICY)`` whose ``target`` is the JSON path of
the field as the user sent it (``properties.`` first only when they sent the wrapper) and whose
message starts with that path and says the allowed form or range.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from functools import lru_cache
from typing import NoReturn, TypeVar
from zoneinfo import ZoneInfo

import isodate

from shared.errors import ErrorCode, UserError
from shared.policy.model import (
    DEFAULT_RULE_NAME,
    DEFAULT_TAGGING_PRIORITY,
    SUPPORTED_DATASOURCE_TYPES,
    AbsoluteMarker,
    BackupCriterion,
    BackupRule,
    CopyOption,
    CopySetting,
    DataStore,
    DayOfMonth,
    Month,
    Policy,
    RepeatingInterval,
    RetentionDuration,
    RetentionRule,
    Schedule,
    SourceLifecycle,
    TaggingCriterion,
    Weekday,
    WeekOfMonth,
)
from shared.policy.timezones import resolve_time_zone
from shared.request_body import ANY, ListOf, OneOf, Shape, check_fields

UTC = dt.UTC

# docs/rules.md C1, after Azure Backup for PostgreSQL: vault-standard 7 days .. 10 years,
# vault-archive 6 months .. 10 years.
RETENTION_RANGES: dict[DataStore, tuple[str, str, str]] = {
    DataStore.VAULT_STORE: ("P7D", "P10Y", "7 days to 10 years"),
    DataStore.ARCHIVE_STORE: ("P6M", "P10Y", "6 months to 10 years"),
}
IMPLICIT_DEFAULT_DURATION = "P3M"
WEEKLY_PERIOD = "P1W"
DEFAULT_TIME_ZONE = "UTC"

_DURATION_FORM = re.compile(r"P(?=\d)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?")
_INTERVAL_FORM = re.compile(r"R/(?P<start>[^/]+)/(?P<period>[^/]+)")
_TIME_ONLY = re.compile(r"T?\d{1,2}(:\d{2}(:\d{2}(\.\d+)?)?)?([+-]\d{2}(:?\d{2})?|Z)?")
# A schedule's first start: any real one is in this range, and the arithmetic around it (time
# zones, weeks, retention) stays inside datetime's years 1..9999.
_EARLIEST_START = dt.datetime(1900, 1, 1)
_LATEST_START = dt.datetime(9000, 1, 1)
_WRAPPER_HELP = '{"properties": {...}} or the bare properties'
_INTERVAL_HELP = "R/<start date and time with UTC offset>/P1W, e.g. R/2025-03-02T03:30:00+01:00/P1W"

_E = TypeVar("_E", bound=StrEnum)

# The fields of Azure's BackupPolicy (Microsoft.DataProtection, API 2025-01-01) that apply to
# PostgreSQL; any other field is refused, so a misspelling ("timezone") never goes unnoticed.
_DATASTORE: Shape = {"objectType": ANY, "dataStoreType": ANY}
_TAGGING_CRITERION: Shape = {
    "isDefault": ANY,
    "taggingPriority": ANY,
    "tagInfo": {"tagName": ANY, "eTag": ANY, "id": ANY},
    "criteria": ListOf(
        {
            "objectType": ANY,
            "absoluteCriteria": ANY,
            "daysOfMonth": ListOf({"date": ANY, "isLast": ANY}),
            "daysOfTheWeek": ANY,
            "weeksOfTheMonth": ANY,
            "monthsOfYear": ANY,
            "scheduleTimes": ANY,
        }
    ),
}
# CustomCopyOption (refused by the parser, which says why) is the one option with a duration.
_COPY_AFTER = OneOf(
    "objectType",
    {
        "CopyOnExpiryOption": {"objectType": ANY},
        "ImmediateCopyOption": {"objectType": ANY},
        "CustomCopyOption": {"objectType": ANY, "duration": ANY},
    },
)
_BACKUP_RULE: dict[str, Shape] = {
    "name": ANY,
    "objectType": ANY,
    "backupParameters": {"objectType": ANY, "backupType": ANY},
    "dataStore": _DATASTORE,
    "trigger": {
        "objectType": ANY,
        "schedule": {"timeZone": ANY, "repeatingTimeIntervals": ANY},
        "taggingCriteria": ListOf(_TAGGING_CRITERION),
    },
}
_RETENTION_RULE: dict[str, Shape] = {
    "name": ANY,
    "objectType": ANY,
    "isDefault": ANY,
    "lifecycles": ListOf(
        {
            "sourceDataStore": _DATASTORE,
            "deleteAfter": {"objectType": ANY, "duration": ANY},
            "targetDataStoreCopySettings": ListOf({"copyAfter": _COPY_AFTER, "dataStore": _DATASTORE}),
        }
    ),
}
POLICY_PROPERTIES: Shape = {
    "objectType": ANY,
    "datasourceTypes": ANY,
    "policyRules": ListOf(
        OneOf("objectType", {"AzureBackupRule": _BACKUP_RULE, "AzureRetentionRule": _RETENTION_RULE})
    ),
}
POLICY_RESOURCE: Shape = {
    "properties": POLICY_PROPERTIES,
    "id": ANY,
    "name": ANY,
    "type": ANY,
    "eTag": ANY,
    "systemData": ANY,
}


def _fail(path: str, message: str) -> NoReturn:
    raise UserError(ErrorCode.INVALID_POLICY, f"{path}: {message}" if path else message, target=path or None)


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _object(value: object, path: str, what: str = "a JSON object") -> dict[str, object]:
    if not isinstance(value, dict):
        _fail(path, f"must be {what}, got {_json_type(value)}.")
    return value


def _json_type(value: object) -> str:
    names = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return names.get(type(value), type(value).__name__)


def _required(obj: dict[str, object], key: str, path: str) -> object:
    if key not in obj or obj[key] is None:
        _fail(_key(path, key), "is required.")
    return obj[key]


def _string(value: object, path: str, what: str = "a non-empty string") -> str:
    if not isinstance(value, str) or not value.strip():
        _fail(path, f"must be {what}, got {_json_type(value) if not isinstance(value, str) else repr(value)}.")
    return value


def _boolean(obj: dict[str, object], key: str, path: str, default: bool) -> bool:
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        _fail(_key(path, key), f"must be true or false, got {_json_type(value)}.")
    return value


def _array(value: object, path: str, *, allow_empty: bool = False) -> list[object]:
    if not isinstance(value, list):
        _fail(path, f"must be an array, got {_json_type(value)}.")
    if not value and not allow_empty:
        _fail(path, "must not be empty.")
    return value


def _enum(kind: type[_E], value: object, path: str) -> _E:
    allowed = ", ".join(m.value for m in kind)
    if isinstance(value, str):
        for member in kind:
            if member.value == value:
                return member
    _fail(path, f"{value!r} is not allowed; use one of: {allowed}.")


def _expect_object_type(obj: dict[str, object], path: str, *expected: str) -> None:
    # objectType is Azure's discriminator; when given, it must be the one this field takes.
    value = obj.get("objectType")
    if value is not None and value not in expected:
        _fail(_key(path, "objectType"), f"{value!r} is not allowed here; use {' or '.join(expected)}.")


def _enum_list(kind: type[_E], obj: dict[str, object], key: str, path: str) -> tuple[_E, ...]:
    raw = obj.get(key)
    if raw is None:
        return ()
    items = _array(raw, _key(path, key), allow_empty=True)
    members = [_enum(kind, item, f"{_key(path, key)}[{i}]") for i, item in enumerate(items)]
    return tuple(dict.fromkeys(members))  # duplicates add nothing; keep the user's order


# ---------------------------------------------------------------------------------------------
# Durations


def _reference_starts() -> tuple[dt.datetime, ...]:
    # Month ends and leap days over a whole leap cycle: where calendar durations differ in length.
    starts = []
    for year in range(2024, 2028):
        for month in range(1, 13):
            for day in (1, 15, 28, 29, 30, 31):
                try:
                    starts.append(dt.datetime(year, month, day, tzinfo=UTC))
                except ValueError:
                    continue
    return tuple(starts)


_REFERENCE_STARTS = _reference_starts()


# Far above the longest retention (10 years): a duration beyond it is "too long" without being
# computed, so no count of days can overflow the calendar.
_LONGEST_COUNTED = {"Y": 100, "M": 1200, "W": 5300, "D": 37000}


@lru_cache(maxsize=1024)
def _never_shorter(value: RetentionDuration, bound: RetentionDuration) -> bool:
    return all(value.after(s) >= bound.after(s) for s in _REFERENCE_STARTS)


def _too_long_to_count(text: str) -> bool:
    return any(
        len(n.lstrip("0")) > 6 or int(n) > _LONGEST_COUNTED[unit] for n, unit in re.findall(r"(\d+)([YMWD])", text)
    )


def _duration_value(text: str) -> RetentionDuration | None:
    """The duration ``text`` names, or None when it is not P<n>Y<n>M<n>W<n>D (at least one part)."""
    if not _DURATION_FORM.fullmatch(text):
        return None
    try:
        parsed = isodate.parse_duration(text)
    except (isodate.ISO8601Error, ValueError, OverflowError):
        return None
    if isinstance(parsed, dt.timedelta):
        return RetentionDuration(text=text, days=parsed.days)
    return RetentionDuration(text=text, years=int(parsed.years), months=int(parsed.months), days=parsed.tdelta.days)


def parse_retention_duration(value: object, path: str, store: DataStore) -> RetentionDuration:
    """A retention duration for ``store``, checked against its range; refusals name ``path``.

    A duration is in range when, counted from any date, it reaches at least the minimum and
    at most the maximum (so P3652D is within P10Y, P3653D is not; P180D is below P6M).
    """
    low_text, high_text, words = RETENTION_RANGES[store]
    allowed = f"for {store.value} it must be between {low_text} and {high_text} ({words})"
    if not isinstance(value, str):
        _fail(path, f"must be an ISO 8601 duration string such as P7D, P12W, P6M or P1Y; {allowed}.")
    if _DURATION_FORM.fullmatch(value) and _too_long_to_count(value):
        _fail(path, f"{value!r} is too long: {allowed}.")
    duration = _duration_value(value)
    if duration is None:
        _fail(
            path,
            f"{value!r} is not an ISO 8601 duration in whole days, weeks, months or years "
            f"(P<n>D, P<n>W, P<n>M, P<n>Y, e.g. P3M); {allowed}.",
        )
    low, high = _duration_value(low_text), _duration_value(high_text)
    assert low is not None and high is not None
    if not _never_shorter(duration, low):
        _fail(path, f"{value!r} is too short: {allowed}.")
    if not _never_shorter(high, duration):
        _fail(path, f"{value!r} is too long: {allowed}.")
    return duration


# ---------------------------------------------------------------------------------------------
# Schedule


def _parse_interval(text: object, path: str, zone: ZoneInfo) -> RepeatingInterval:
    if not isinstance(text, str):
        _fail(path, f"must be a string of the form {_INTERVAL_HELP}; got {_json_type(text)}.")
    match = _INTERVAL_FORM.fullmatch(text.strip())
    if match is None:
        _fail(path, f"{text!r} is not a repeating interval of the form {_INTERVAL_HELP}.")
    start_text, period = match["start"], match["period"]
    if period != WEEKLY_PERIOD:
        try:
            isodate.parse_duration(period)
        except (isodate.ISO8601Error, ValueError):
            _fail(
                path, f"{period!r} in {text!r} is not an ISO 8601 duration; the period must be P1W ({_INTERVAL_HELP})."
            )
        _fail(
            path,
            f"{text!r} repeats every {period}; only weekly backups are supported: the period must be P1W "
            f"({_INTERVAL_HELP}). For several backups a week, give one interval per weekday.",
        )
    if _TIME_ONLY.fullmatch(start_text):
        _fail(
            path,
            f"the start {start_text!r} is a time without a date; give a date, time and UTC offset ({_INTERVAL_HELP}).",
        )
    if "T" not in start_text:
        _fail(
            path, f"the start {start_text!r} has no time of day; give a date, time and UTC offset ({_INTERVAL_HELP})."
        )
    try:
        start = isodate.parse_datetime(start_text)
    except (isodate.ISO8601Error, ValueError):
        _fail(path, f"the start {start_text!r} is not an ISO 8601 date and time ({_INTERVAL_HELP}).")
    if start.tzinfo is None or start.utcoffset() is None:
        _fail(path, f"the start {start_text!r} has no UTC offset; add one, e.g. +01:00 or Z ({_INTERVAL_HELP}).")
    if not _EARLIEST_START <= start.replace(tzinfo=None) <= _LATEST_START:
        years = f"{_EARLIEST_START.year} and {_LATEST_START.year}"
        _fail(path, f"the start {start_text!r} must be between the years {years}.")
    local = start.astimezone(zone)
    return RepeatingInterval(
        text=text.strip(),
        start=start.astimezone(UTC),
        weekday=Weekday.of(local.date()),
        local_time=local.time().replace(tzinfo=None, fold=0),
    )


def _parse_schedule(raw: object, path: str) -> Schedule:
    obj = _object(raw, path)
    zone_value = obj.get("timeZone")
    zone_name = DEFAULT_TIME_ZONE if zone_value is None else _string(zone_value, _key(path, "timeZone"))
    zone = resolve_time_zone(zone_name)
    if zone is None:
        _fail(
            _key(path, "timeZone"),
            f"{zone_name!r} is not a known time zone; use a Windows name as Azure writes it "
            "(e.g. 'W. Europe Standard Time', 'Pacific Standard Time', 'UTC') or an IANA name "
            "(e.g. 'Europe/Berlin').",
        )
    intervals_path = _key(path, "repeatingTimeIntervals")
    raw_intervals = _array(_required(obj, "repeatingTimeIntervals", path), intervals_path)
    intervals: list[RepeatingInterval] = []
    for i, text in enumerate(raw_intervals):
        interval = _parse_interval(text, f"{intervals_path}[{i}]", zone)
        for earlier in intervals:
            if earlier.weekday is interval.weekday:
                _fail(
                    f"{intervals_path}[{i}]",
                    f"{interval.text!r} is a second backup on {interval.weekday.value} (already "
                    f"{earlier.text!r}); give at most one start time per weekday.",
                )
        intervals.append(interval)
    return Schedule(time_zone=zone_name, zone=zone, intervals=tuple(intervals))


# ---------------------------------------------------------------------------------------------
# Tagging criteria


def _parse_days_of_month(obj: dict[str, object], path: str) -> tuple[DayOfMonth, ...]:
    raw = obj.get("daysOfMonth")
    if raw is None:
        return ()
    days: list[DayOfMonth] = []
    for i, item in enumerate(_array(raw, _key(path, "daysOfMonth"), allow_empty=True)):
        item_path = f"{_key(path, 'daysOfMonth')}[{i}]"
        day = _object(item, item_path)
        is_last = _boolean(day, "isLast", item_path, False)
        date = day.get("date")
        if is_last:
            days.append(DayOfMonth(date=0, is_last=True))
            continue
        if isinstance(date, bool) or not isinstance(date, int) or not 1 <= date <= 28:
            _fail(_key(item_path, "date"), f"must be a day number from 1 to 28 (or set isLast: true), got {date!r}.")
        days.append(DayOfMonth(date=date))
    return tuple(dict.fromkeys(days))


def _parse_backup_criterion(raw: object, path: str, scheduled: set[Weekday]) -> BackupCriterion:
    obj = _object(raw, path)
    _expect_object_type(obj, path, "ScheduleBasedBackupCriteria")
    if obj.get("scheduleTimes") not in (None, []):
        _fail(_key(path, "scheduleTimes"), "is not supported; use absoluteCriteria or daysOfTheWeek/daysOfMonth.")
    criterion = BackupCriterion(
        absolute=_enum_list(AbsoluteMarker, obj, "absoluteCriteria", path),
        days_of_week=_enum_list(Weekday, obj, "daysOfTheWeek", path),
        weeks_of_month=_enum_list(WeekOfMonth, obj, "weeksOfTheMonth", path),
        months_of_year=_enum_list(Month, obj, "monthsOfYear", path),
        days_of_month=_parse_days_of_month(obj, path),
    )
    generic = criterion.days_of_week or criterion.weeks_of_month or criterion.months_of_year or criterion.days_of_month
    if criterion.absolute and generic:
        _fail(
            path,
            "gives both absoluteCriteria and daysOfTheWeek/weeksOfTheMonth/monthsOfYear/daysOfMonth; "
            "a criterion uses one or the other (add a second criterion for the other).",
        )
    if not criterion.absolute and not generic:
        _fail(
            path,
            "must give absoluteCriteria (AllBackup, FirstOfDay, FirstOfWeek, FirstOfMonth, FirstOfYear) "
            "or daysOfTheWeek/daysOfMonth.",
        )
    if criterion.weeks_of_month and not criterion.days_of_week:
        _fail(_key(path, "weeksOfTheMonth"), "needs daysOfTheWeek to say which day of those weeks.")
    if criterion.days_of_month and (criterion.days_of_week or criterion.weeks_of_month):
        _fail(_key(path, "daysOfMonth"), "cannot be combined with daysOfTheWeek or weeksOfTheMonth.")
    if criterion.months_of_year and not (criterion.days_of_week or criterion.days_of_month):
        _fail(_key(path, "monthsOfYear"), "needs daysOfMonth or daysOfTheWeek to say which day of those months.")
    if criterion.days_of_week and not scheduled.intersection(criterion.days_of_week):
        days = ", ".join(d.value for d in criterion.days_of_week)
        planned = ", ".join(d.value for d in Weekday if d in scheduled)
        _fail(
            _key(path, "daysOfTheWeek"),
            f"no backup is scheduled on {days}, so this tag would never apply; the schedule runs on {planned}.",
        )
    return criterion


def _parse_tagging_criterion(raw: object, path: str, scheduled: set[Weekday]) -> TaggingCriterion:
    obj = _object(raw, path)
    is_default = _boolean(obj, "isDefault", path, False)
    priority = _required(obj, "taggingPriority", path)
    if isinstance(priority, bool) or not isinstance(priority, int) or priority < 0:
        _fail(_key(path, "taggingPriority"), f"must be a whole number, 0 or more (lower wins), got {priority!r}.")
    tag_info = _object(_required(obj, "tagInfo", path), _key(path, "tagInfo"))
    tag_name = _string(_required(tag_info, "tagName", _key(path, "tagInfo")), _key(path, "tagInfo.tagName"))
    raw_criteria = obj.get("criteria")
    criteria_path = _key(path, "criteria")
    if is_default:
        if raw_criteria not in (None, []):
            _fail(
                criteria_path, "must be empty for the default criterion (isDefault: true): it tags every other backup."
            )
        return TaggingCriterion(tag_name=tag_name, priority=priority, is_default=True)
    if raw_criteria is None:
        _fail(criteria_path, "is required for a criterion that is not the default (isDefault: false).")
    items = _array(raw_criteria, criteria_path)
    criteria = tuple(_parse_backup_criterion(c, f"{criteria_path}[{i}]", scheduled) for i, c in enumerate(items))
    return TaggingCriterion(tag_name=tag_name, priority=priority, is_default=False, criteria=criteria)


def _parse_tagging_criteria(raw: object, path: str, scheduled: set[Weekday]) -> list[tuple[str, TaggingCriterion]]:
    """The criteria with their paths, in the user's order; an implicit Default when none are given."""
    if raw is None or raw == []:
        implicit = TaggingCriterion(tag_name=DEFAULT_RULE_NAME, priority=DEFAULT_TAGGING_PRIORITY, is_default=True)
        return [(path, implicit)]
    items = _array(raw, path)
    parsed: list[tuple[str, TaggingCriterion]] = []
    for i, item in enumerate(items):
        item_path = f"{path}[{i}]"
        criterion = _parse_tagging_criterion(item, item_path, scheduled)
        for earlier_path, earlier in parsed:
            if earlier.tag_name == criterion.tag_name:
                _fail(
                    _key(item_path, "tagInfo.tagName"), f"tag {criterion.tag_name!r} is already used by {earlier_path}."
                )
            if earlier.priority == criterion.priority:
                _fail(
                    _key(item_path, "taggingPriority"),
                    f"{criterion.priority} is already the priority of {earlier_path}; each criterion needs its own.",
                )
        parsed.append((item_path, criterion))
    defaults = [p for p, c in parsed if c.is_default]
    if len(defaults) != 1:
        _fail(
            path,
            "must have exactly one criterion with isDefault: true (the tag of every other backup), "
            f"found {len(defaults)}.",
        )
    return parsed


# ---------------------------------------------------------------------------------------------
# Rules


def _parse_backup_rule(
    obj: dict[str, object], path: str, name: str
) -> tuple[BackupRule, list[tuple[str, TaggingCriterion]]]:
    params = obj.get("backupParameters")
    if params is not None:
        params_obj = _object(params, _key(path, "backupParameters"))
        _expect_object_type(params_obj, _key(path, "backupParameters"), "AzureBackupParams")
        backup_type = params_obj.get("backupType")
        if backup_type is not None and backup_type != "Full":
            _fail(
                _key(path, "backupParameters.backupType"),
                f"{backup_type!r} is not supported; PostgreSQL backups are 'Full'.",
            )
    store = obj.get("dataStore")
    if store is not None:
        store_obj = _object(store, _key(path, "dataStore"))
        _expect_object_type(store_obj, _key(path, "dataStore"), "DataStoreInfoBase")
        store_type = _enum(
            DataStore,
            _required(store_obj, "dataStoreType", _key(path, "dataStore")),
            _key(path, "dataStore.dataStoreType"),
        )
        if store_type is not DataStore.VAULT_STORE:
            _fail(_key(path, "dataStore.dataStoreType"), "backups land in VaultStore; use 'VaultStore'.")
    trigger_path = _key(path, "trigger")
    trigger = _object(_required(obj, "trigger", path), trigger_path)
    if trigger.get("objectType") not in (None, "ScheduleBasedTriggerContext"):
        _fail(
            _key(trigger_path, "objectType"),
            f"{trigger.get('objectType')!r} is not supported; use 'ScheduleBasedTriggerContext' (a weekly schedule).",
        )
    schedule = _parse_schedule(_required(trigger, "schedule", trigger_path), _key(trigger_path, "schedule"))
    scheduled = {i.weekday for i in schedule.intervals}
    criteria = _parse_tagging_criteria(trigger.get("taggingCriteria"), _key(trigger_path, "taggingCriteria"), scheduled)
    ordered = tuple(sorted((c for _, c in criteria), key=lambda c: c.priority))
    return BackupRule(name=name, schedule=schedule, tagging_criteria=ordered), criteria


def _copy_settings(raw: object, path: str) -> list[tuple[str, object]]:
    # Azure serialises this field as a list, a single object or null; all mean the same. An
    # empty object is how some serialisers write "no setting".
    if raw is None or raw == {}:
        return []
    if isinstance(raw, dict):
        return [(path, raw)]
    items = _array(raw, path, allow_empty=True)
    return [(f"{path}[{i}]", item) for i, item in enumerate(items)]


def _parse_copy_setting(raw: object, path: str, source: DataStore) -> CopySetting:
    obj = _object(raw, path)
    copy_after = _object(_required(obj, "copyAfter", path), _key(path, "copyAfter"))
    option_path = _key(path, "copyAfter.objectType")
    option_name = _required(copy_after, "objectType", _key(path, "copyAfter"))
    option = _enum(CopyOption, option_name, option_path)
    store_path = _key(path, "dataStore")
    store_obj = _object(_required(obj, "dataStore", path), store_path)
    _expect_object_type(store_obj, store_path, "DataStoreInfoBase")
    target = _enum(DataStore, _required(store_obj, "dataStoreType", store_path), _key(store_path, "dataStoreType"))
    if source is not DataStore.VAULT_STORE:
        _fail(
            path,
            f"points in {source.value} are not copied anywhere; "
            "only the VaultStore lifecycle may copy to ArchiveStore.",
        )
    if target is not DataStore.ARCHIVE_STORE:
        _fail(_key(store_path, "dataStoreType"), "points are copied from VaultStore to 'ArchiveStore' only.")
    return CopySetting(option=option, target=target)


def _parse_retention_rule(obj: dict[str, object], path: str, name: str) -> RetentionRule:
    is_default = _boolean(obj, "isDefault", path, False)
    lifecycles_path = _key(path, "lifecycles")
    items = _array(_required(obj, "lifecycles", path), lifecycles_path)
    found: dict[DataStore, tuple[str, SourceLifecycle, list[str]]] = {}
    for i, item in enumerate(items):
        item_path = f"{lifecycles_path}[{i}]"
        lc = _object(item, item_path)
        source_path = _key(item_path, "sourceDataStore")
        source_obj = _object(_required(lc, "sourceDataStore", item_path), source_path)
        _expect_object_type(source_obj, source_path, "DataStoreInfoBase")
        source = _enum(
            DataStore, _required(source_obj, "dataStoreType", source_path), _key(source_path, "dataStoreType")
        )
        if source in found:
            _fail(
                _key(source_path, "dataStoreType"),
                f"{found[source][0]} already is the {source.value} lifecycle; a rule has one lifecycle per datastore.",
            )
        delete_path = _key(item_path, "deleteAfter")
        delete_after = _object(_required(lc, "deleteAfter", item_path), delete_path)
        _expect_object_type(delete_after, delete_path, "AbsoluteDeleteOption")
        duration = parse_retention_duration(
            _required(delete_after, "duration", delete_path), _key(delete_path, "duration"), source
        )
        settings = _copy_settings(lc.get("targetDataStoreCopySettings"), _key(item_path, "targetDataStoreCopySettings"))
        copies = [_parse_copy_setting(raw, p, source) for p, raw in settings]
        if len(copies) > 1:
            _fail(settings[1][0], "a lifecycle copies to ArchiveStore at most once; give one copy setting.")
        found[source] = (
            item_path,
            SourceLifecycle(source=source, delete_after=duration, copies=tuple(copies)),
            [p for p, _ in settings],
        )
    if DataStore.VAULT_STORE not in found:
        _fail(lifecycles_path, "needs a lifecycle whose sourceDataStore is VaultStore (where backups land).")
    vault_path, vault, copy_paths = found[DataStore.VAULT_STORE]
    archive_entry = found.get(DataStore.ARCHIVE_STORE)
    if vault.copies and archive_entry is None:
        _fail(
            copy_paths[0],
            "copies points to ArchiveStore, but no lifecycle with sourceDataStore ArchiveStore says how long "
            f"to keep them there ({RETENTION_RANGES[DataStore.ARCHIVE_STORE][0]} to "
            f"{RETENTION_RANGES[DataStore.ARCHIVE_STORE][1]}).",
        )
    if archive_entry is not None and not vault.copies:
        _fail(
            archive_entry[0],
            "is an ArchiveStore lifecycle, but nothing reaches ArchiveStore: add to the VaultStore lifecycle "
            f"({vault_path}) a targetDataStoreCopySettings entry with copyAfter CopyOnExpiryOption "
            "(or ImmediateCopyOption) and dataStore ArchiveStore.",
        )
    archive = archive_entry[1] if archive_entry is not None else None
    return RetentionRule(name=name, is_default=is_default, vault=vault, archive=archive)


def _implicit_default_rule(name: str) -> RetentionRule:
    duration = _duration_value(IMPLICIT_DEFAULT_DURATION)
    assert duration is not None
    return RetentionRule(
        name=name, is_default=True, vault=SourceLifecycle(source=DataStore.VAULT_STORE, delete_after=duration)
    )


# ---------------------------------------------------------------------------------------------
# The policy


def _parse_datasource_types(props: dict[str, object], root: str) -> tuple[str, ...]:
    path = _key(root, "datasourceTypes")
    types: list[str] = []
    for i, item in enumerate(_array(_required(props, "datasourceTypes", root), path)):
        if not isinstance(item, str) or item not in SUPPORTED_DATASOURCE_TYPES:
            allowed = " or ".join(repr(t) for t in SUPPORTED_DATASOURCE_TYPES)
            _fail(f"{path}[{i}]", f"{item!r} is not supported; use {allowed}.")
        if item in types:
            _fail(f"{path}[{i}]", f"{item!r} is listed twice.")
        types.append(item)
    return tuple(types)


def _split_rules(
    props: dict[str, object], root: str
) -> tuple[tuple[str, dict[str, object], str], list[tuple[str, RetentionRule]]]:
    """The backup rule (path, JSON, name) and the parsed retention rules with their paths."""
    rules_path = _key(root, "policyRules")
    names: dict[str, str] = {}
    backup: tuple[str, dict[str, object], str] | None = None
    retention: list[tuple[str, RetentionRule]] = []
    for i, item in enumerate(_array(_required(props, "policyRules", root), rules_path)):
        path = f"{rules_path}[{i}]"
        rule = _object(item, path)
        name = _string(_required(rule, "name", path), _key(path, "name"))
        kind = _required(rule, "objectType", path)
        if kind not in ("AzureBackupRule", "AzureRetentionRule"):
            _fail(
                _key(path, "objectType"),
                f"{kind!r} is not a policy rule type; use 'AzureBackupRule' or 'AzureRetentionRule'.",
            )
        if name in names:
            _fail(_key(path, "name"), f"{name!r} is already the name of {names[name]}; rule names must be unique.")
        names[name] = path
        if kind == "AzureBackupRule":
            if backup is not None:
                _fail(path, f"is a second AzureBackupRule ({backup[0]} is the first); a policy has exactly one.")
            backup = (path, rule, name)
        else:
            retention.append((path, _parse_retention_rule(rule, path, name)))
    if backup is None:
        _fail(rules_path, "must contain exactly one AzureBackupRule (the schedule); found none.")
    return backup, retention


def _check_tags(
    criteria: list[tuple[str, TaggingCriterion]], retention: list[tuple[str, RetentionRule]], rules_path: str
) -> None:
    """Every tag names a retention rule, and the default tag names the one default rule."""
    default_path, default_criterion = next((p, c) for p, c in criteria if c.is_default)
    defaults = [(p, r) for p, r in retention if r.is_default]
    if not defaults:
        _fail(
            rules_path,
            "one AzureRetentionRule must have isDefault: true: it keeps the backups tagged "
            f"{default_criterion.tag_name!r} (or give no retention rule for the implicit Default: P3M in VaultStore).",
        )
    if len(defaults) > 1:
        _fail(
            _key(defaults[1][0], "isDefault"),
            f"{defaults[0][0]} already is the default retention rule; only one may be.",
        )
    names = [r.name for _, r in retention]
    for path, criterion in criteria:
        if criterion.tag_name not in names:
            _fail(
                _key(path, "tagInfo.tagName"),
                f"tag {criterion.tag_name!r} has no retention rule of that name; add an AzureRetentionRule "
                f"named {criterion.tag_name!r} or use one of: {', '.join(names)}.",
            )
    default_rule_path, default_rule = defaults[0]
    if default_rule.name != default_criterion.tag_name:
        _fail(
            _key(default_path, "tagInfo.tagName"),
            f"the default criterion's tag {default_criterion.tag_name!r} must name the default retention rule "
            f"({default_rule_path}, {default_rule.name!r}).",
        )


def parse_policy(doc: object) -> Policy:
    """A validated :class:`Policy` from Azure BackupPolicy JSON (``{"properties": {...}}`` or bare).

    Accepts what Azure accepts for PostgreSQL: a weekly schedule (``R/<start>/P1W``, one per
    weekday) in a Windows or IANA time zone, exactly one AzureBackupRule, retention rules
    whose VaultStore lifecycle is 7 days .. 10 years and ArchiveStore lifecycle 6 months .. 10
    years, copy to archive on expiry or immediately. No retention rule at all gives the
    implicit Default rule (3 months in VaultStore); no tagging criteria gives the implicit
    Default criterion (priority 99). Anything else raises ``UserError(INVALID_POLICY)`` naming
    the field (``target``) and the allowed form or range.
    """
    if not isinstance(doc, dict):
        _fail("", f"The policy must be a JSON object ({_WRAPPER_HELP}), got {_json_type(doc)}.")
    check_fields(doc, POLICY_RESOURCE if "properties" in doc else POLICY_PROPERTIES, code=ErrorCode.INVALID_POLICY)
    if "properties" in doc:
        root = "properties"
        props = _object(doc["properties"], root)
    else:
        root = ""
        props = doc
    _expect_object_type(props, root, "BackupPolicy")
    types = _parse_datasource_types(props, root)
    (backup_path, backup_obj, backup_name), retention = _split_rules(props, root)
    backup_rule, criteria = _parse_backup_rule(backup_obj, backup_path, backup_name)
    if retention:
        _check_tags(criteria, retention, _key(root, "policyRules"))
        rules = tuple(r for _, r in retention)
    else:
        rules = (_implicit_default_rule(backup_rule.default_criterion.tag_name),)
    return Policy(datasource_types=types, backup_rule=backup_rule, retention_rules=rules)
