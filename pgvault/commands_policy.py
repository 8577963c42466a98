"""``pgvault policy show``: a stored policy's schedule and retention in full.

JSON output is the API's policy as it is. The table output reads the policy with the same
engine the app uses (shared.policy) and writes it out in words: the weekly schedule in the
policy's time zone, the next backups in that zone, in the viewer's zone and in UTC, the tagging
criteria by priority, and every retention rule with its datastore, duration, criteria and move
to the archive.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from pgvault.client import Client, seg
from pgvault.output import emit, table
from shared.errors import UserError
from shared.policy import (
    AbsoluteMarker,
    BackupCriterion,
    CopyOption,
    Policy,
    RetentionDuration,
    RetentionRule,
    TaggingCriterion,
    occurrences,
    parse_policy,
    resolve_time_zone,
)

NEXT_BACKUPS = 6
"""How many coming backups ``policy show`` lists."""
_MARKERS = {
    AbsoluteMarker.ALL_BACKUP: "every backup",
    AbsoluteMarker.FIRST_OF_DAY: "the first backup of the day",
    AbsoluteMarker.FIRST_OF_WEEK: "the first backup of the week",
    AbsoluteMarker.FIRST_OF_MONTH: "the first backup of the month",
    AbsoluteMarker.FIRST_OF_YEAR: "the first backup of the year",
}


def add_policy_show_command(commands: Any, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register ``policy show`` on the ``policy`` group's commands."""
    from pgvault.commands import api_command

    show = commands.add_parser(
        "show",
        parents=parents,
        help="one policy: schedule (policy's zone and local) and every retention rule",
        description="Show a stored policy. Table output: the schedule in the policy's time zone, the next "
        "backups in that zone, in your local zone and in UTC, the tagging criteria by priority and every "
        "retention rule (datastore, duration, criteria, move to the archive). JSON: the API's policy.",
    )
    show.add_argument("--name", "-n", required=True)
    show.add_argument(
        "--time-zone",
        help="the zone local times are shown in (IANA or Windows name; default: this machine's)",
    )
    show.set_defaults(handler=api_command(policy_show))
    parser: argparse.ArgumentParser = show
    return parser


def policy_show(args: argparse.Namespace, client: Client) -> int:
    """Print the stored policy: the API's JSON, or in words (see the module)."""
    from pgvault.commands import EXIT_OK, UsageError

    local: dt.tzinfo | None = None
    if args.time_zone:
        local = resolve_time_zone(args.time_zone)
        if local is None:
            raise UsageError(f"--time-zone {args.time_zone!r} is not an IANA or Windows time zone name")
    stored = client.get(f"/backupPolicies/{seg(args.name)}")
    if args.output == "json":
        emit(stored, "json")
        return EXIT_OK
    print(describe_policy(stored, dt.datetime.now(dt.UTC), local))
    return EXIT_OK


def describe_policy(stored: dict[str, Any], now: dt.datetime, local: dt.tzinfo | None = None) -> str:
    """A stored policy (``{"name", "properties"}``) in words, its next backups counted from ``now``.

    ``local`` is the viewer's zone (None: this machine's). A policy the engine cannot read (a
    newer app's) is shown by its rule names only, with the reason.
    """
    name = stored.get("name", "?")
    try:
        policy = parse_policy(stored.get("properties") or stored)
    except UserError as error:
        rules = [r.get("name", "?") for r in (stored.get("properties") or {}).get("policyRules", [])]
        return f"Policy {name}: rules {', '.join(rules)} (cannot be read here: {error.message})"
    lines = [f"Policy {name} ({', '.join(policy.datasource_types)})", ""]
    lines += _schedule_lines(policy, now, local)
    lines += ["", "Tagging (highest priority first):"]
    lines += ["  " + line for line in _tagging_lines(policy.tagging_criteria)]
    lines += ["", "Retention rules:"]
    rows = [_retention_row(rule, policy) for rule in policy.retention_rules]
    lines += ["  " + line for line in table(["RULE", "DATASTORE", "KEEP FOR", "CRITERIA", "THEN"], rows).splitlines()]
    return "\n".join(lines)


def _schedule_lines(policy: Policy, now: dt.datetime, local: dt.tzinfo | None) -> list[str]:
    schedule = policy.schedule
    zone_name = (
        schedule.time_zone if schedule.time_zone == schedule.zone.key else f"{schedule.time_zone}, {schedule.zone.key}"
    )
    slots = ", ".join(f"{i.weekday.value} {i.local_time.strftime('%H:%M')}" for i in schedule.intervals)
    lines = [
        f"Backup rule {policy.backup_rule.name}: {policy.backup_rule.backup_type} backup to "
        f"{policy.backup_rule.data_store.value}",
        f"Schedule: weekly, {slots} ({zone_name})",
    ]
    coming = occurrences(schedule, now, now + dt.timedelta(days=7 * NEXT_BACKUPS))[:NEXT_BACKUPS]
    if not coming:
        return [*lines, "Next backups: none scheduled"]
    viewer = local or now.astimezone().tzinfo
    rows = [
        [
            t.astimezone(schedule.zone).strftime("%a %Y-%m-%d %H:%M %Z"),
            t.astimezone(viewer).strftime("%a %Y-%m-%d %H:%M %Z"),
            t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%MZ"),
        ]
        for t in coming
    ]
    header = ["POLICY ZONE", "LOCAL", "UTC"]
    return [*lines, "Next backups:", *("  " + line for line in table(header, rows).splitlines())]


def _tagging_lines(criteria: tuple[TaggingCriterion, ...]) -> list[str]:
    lines = []
    for c in criteria:
        when = "every backup no other criterion tags" if c.is_default else _criteria_text(c.criteria)
        priority = "default" if c.is_default else f"priority {c.priority}"
        lines.append(f"{c.tag_name}: {when} ({priority})")
    return lines


def _criteria_text(criteria: tuple[BackupCriterion, ...]) -> str:
    parts = []
    for c in criteria:
        words = [_MARKERS[m] for m in c.absolute]
        if c.days_of_week:
            words.append("on " + ", ".join(d.value for d in c.days_of_week))
        if c.weeks_of_month:
            words.append("in the " + ", ".join(w.value for w in c.weeks_of_month) + " week of the month")
        if c.days_of_month:
            words.append("on day " + ", ".join("last" if d.is_last else str(d.date) for d in c.days_of_month))
        if c.months_of_year:
            words.append("in " + ", ".join(m.value for m in c.months_of_year))
        parts.append(" ".join(words) or "every backup")
    return " or ".join(parts) or "every backup"


def duration_text(duration: RetentionDuration) -> str:
    """``P1Y6M`` -> ``P1Y6M (1 year 6 months)``: the ISO text as written and in words."""
    words = [
        f"{n} {unit}{'' if n == 1 else 's'}"
        for n, unit in ((duration.years, "year"), (duration.months, "month"), (duration.days, "day"))
        if n
    ]
    return f"{duration.text} ({' '.join(words) or '0 days'})"


def _retention_row(rule: RetentionRule, policy: Policy) -> list[str]:
    tagged = [c for c in policy.tagging_criteria if c.tag_name == rule.name]
    if rule.is_default or any(c.is_default for c in tagged):
        criteria = "untagged backups (Default)"
    elif tagged:
        criteria = _criteria_text(tagged[0].criteria)
    else:
        criteria = "on-demand backups with this tag"
    then = "deleted"
    if rule.archive is not None:
        kept = duration_text(rule.archive.delete_after)
        if rule.copy_option is CopyOption.IMMEDIATE:
            then = f"deleted (copied to {rule.archive.source.value} at backup time, kept there {kept})"
        else:
            then = f"moved to {rule.archive.source.value} on expiry, kept there {kept}, then deleted"
    return [rule.name, rule.vault.source.value, duration_text(rule.vault.delete_after), criteria, then]
