"""``pgvault policy simulate``: an offline dry run of a policy file, as a table or JSON.

It runs the same engine as ``POST /api/backupPolicies/{name}:simulate`` (shared.policy) on a
local file and needs no server.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from shared.errors import UserError
from shared.policy import DataStore, Simulation, parse_policy, simulate
from shared.policy.simulation import check_range

EXIT_OK = 0
EXIT_INVALID = 2
LONG_RANGE = dt.timedelta(days=92)
"""Ranges longer than about a quarter also get the per-month table, which reads better than the list."""


def add_policy_commands(
    groups: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Register the ``policy`` group and its ``simulate`` command; return the group's commands."""
    policy = groups.add_parser("policy", help="backup policies", description="Work with backup policies.")
    commands = policy.add_subparsers(dest="command", metavar="<command>", required=True)
    sim = commands.add_parser(
        "simulate",
        help="dry-run a policy file (offline: no server needed) or a stored policy (--name)",
        description="Offline: list every scheduled backup of a policy file in [--from, --to), assuming all "
        "succeed, with its tag, vault expiry, archive move and deletion, and the points alive per datastore. "
        "Dates without a time are midnight UTC; date-times without an offset are UTC.",
    )
    source = sim.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", "-f", type=Path, help="Azure BackupPolicy JSON (wrapped or bare)")
    source.add_argument("--name", "-n", help="instead of a file: a stored policy, simulated by the API (PGVAULT_URL)")
    sim.add_argument("--from", dest="start", required=True, type=parse_instant, help="start, e.g. 2025-01-01")
    sim.add_argument("--to", dest="end", required=True, type=parse_instant, help="end (exclusive), e.g. 2026-01-01")
    sim.add_argument("--output", "-o", choices=("table", "json"), default="table", help="output format")
    sim.add_argument(
        "--monthly",
        action="store_true",
        help="also show points alive per datastore at the end of each month (always for ranges over 92 days "
        "in table output)",
    )
    sim.set_defaults(handler=run_simulate)
    return commands


def parse_instant(text: str) -> dt.datetime:
    """A date (midnight UTC) or an ISO 8601 date-time (UTC when it has no offset)."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD) or ISO 8601 date-time") from error
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def run_simulate(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Print the simulation; 2 with a message on stderr when the file or the policy is invalid."""
    out = out or sys.stdout
    err = err or sys.stderr
    if args.file is None:
        from pgvault.commands import simulate_stored

        return simulate_stored(args)
    try:
        document = json.loads(args.file.read_text(encoding="utf-8"))
    except OSError as error:
        print(f"pgvault: cannot read policy file {args.file}: {error.strerror or error}", file=err)
        return EXIT_INVALID
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        print(f"pgvault: {args.file} is not valid JSON: {error}", file=err)
        return EXIT_INVALID
    try:
        policy = parse_policy(document)
    except UserError as error:
        print(f"pgvault: {args.file}: {error.code.value}: {error.message}", file=err)
        print(f"Recommended action: {error.recommended_action}", file=err)
        return EXIT_INVALID
    try:
        check_range(args.start, args.end, start_field="--from", end_field="--to")
        result = simulate(policy, args.start, args.end)
    except UserError as error:
        print(f"pgvault: {error.code.value}: {error.message}", file=err)
        return EXIT_INVALID
    if args.output == "json":
        body: dict[str, Any] = result.to_dict()
        if args.monthly:
            body["monthly"] = [m.to_dict() for m in result.monthly_counts()]
        print(json.dumps(body, indent=2), file=out)
    else:
        monthly = args.monthly or (args.end - args.start) > LONG_RANGE
        print(render_table(result, monthly=monthly), file=out)
    return EXIT_OK


def _short(instant: dt.datetime | None) -> str:
    return "-" if instant is None else instant.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%MZ")


def _rows_to_text(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def render_table(result: Simulation, *, monthly: bool) -> str:
    """The simulation as plain-text tables: backups, summary, and optionally points per month."""
    zone = result.policy.zone
    header = ["time (UTC)", f"local ({result.policy.schedule.time_zone})", "tag", "vault expiry", "archive", "deletion"]
    rows = []
    for backup in result.backups:
        life = backup.lifecycle
        local = backup.time.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z")
        rows.append([_short(backup.time), local, backup.tag, _short(life.vault_expiry), _short(life.archive_copy),
                     _short(life.deletion)])  # fmt: skip
    summary = result.summary()
    live = summary["livePoints"]
    lines = [f"Backups from {summary['from']} to {summary['to']} (exclusive): {summary['backups']}", ""]
    lines += _rows_to_text(header, rows) if rows else ["(no scheduled backup in this range)"]
    lines += ["", "Backups per tag: " + ", ".join(f"{tag} {n}" for tag, n in summary["backupsPerTag"].items())]
    lines.append(f"Archive moves in range: {summary['archiveMoves']}; deletions in range: {summary['deletions']}")
    lines.append(
        f"Points alive at {summary['to']}: {DataStore.VAULT_STORE.value} {live[DataStore.VAULT_STORE.value]}, "
        f"{DataStore.ARCHIVE_STORE.value} {live[DataStore.ARCHIVE_STORE.value]}"
    )
    if monthly:
        month_rows = [
            [m.month, str(m.backups), str(m.vault_store), str(m.archive_store)] for m in result.monthly_counts()
        ]
        lines += ["", "Points alive at the end of each month (UTC):"]
        lines += _rows_to_text(
            ["month", "backups", DataStore.VAULT_STORE.value, DataStore.ARCHIVE_STORE.value], month_rows
        )
    return "\n".join(lines)
