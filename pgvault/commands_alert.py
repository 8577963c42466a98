"""``alert list``: the alerts the vault raised and whether they were delivered (``GET /api/alerts``)."""

from __future__ import annotations

import argparse
from typing import Any

from pgvault.client import Client
from pgvault.commands import EXIT_OK, api_command, common_options
from pgvault.output import Column, emit_list

ALERT_ROW: list[Column] = [
    ("TIME", lambda a: a.get("time")),
    ("KIND", lambda a: a.get("kind")),
    ("INSTANCE", lambda a: a.get("instance")),
    ("JOB", lambda a: a.get("jobId") or ""),
    ("CODE", lambda a: a.get("errorCode") or ""),
    ("DELIVERY", lambda a: (a.get("delivery") or {}).get("state")),
    ("TRIES", lambda a: (a.get("delivery") or {}).get("attempts")),
]


def add_alert_commands(groups: Any) -> Any:
    """Register the ``alert`` group; return its commands."""
    alert = groups.add_parser("alert", help="alerts: failed jobs, corrupted points, missed backups, privilege drift")
    commands = alert.add_subparsers(dest="command", metavar="<command>", required=True)
    listing = commands.add_parser(
        "list",
        parents=[common_options()],
        help="alerts of the last days, newest first, with their webhook delivery state",
        description="Every alert raised in the last --days days (a job that ended Failed or "
        "CompletedWithWarnings, a recovery point marked Corrupted, a missed scheduled backup, privilege "
        'drift), newest first. JSON: {"value": [...]} with the API\'s alert shape.',
    )
    listing.add_argument("--days", type=int, default=7, help="alerts of the last N days (1-90, default 7)")
    listing.add_argument("--max", type=int, help="stop after this many alerts")
    listing.set_defaults(handler=api_command(alert_list))
    return commands


def alert_list(args: argparse.Namespace, client: Client) -> int:
    """Print the alerts (every page, up to ``--max``)."""
    rows: list[dict[str, Any]] = []
    for alert in client.pages("/alerts", days=args.days):
        if args.max is not None and len(rows) >= args.max:
            break
        rows.append(alert)
    emit_list(rows, args.output, ALERT_ROW)
    return EXIT_OK
