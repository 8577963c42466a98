"""``instance validate-for-backup`` and ``job grant-script``: would a database back up, before configuring it.

``POST /api/backupInstances:validateForBackup`` (Azure's ``validateForBackup``; ``az dataprotection
backup-instance validate-for-backup``) runs an instance's validation for the fields of one configure
entry as a Validate job, and stores no instance: the job says Success or Failed, with the missing
privileges; its grant script comes from the job (``GET /api/backupJobs/{jobId}/grantScript``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pgvault.client import Client, seg
from pgvault.commands import (
    EXIT_OK,
    UsageError,
    api_command,
    common_options,
    entry_flags,
    finish_job,
    request_body,
    wait_options,
)
from shared.wire import instances as wire_instances


def add_candidate_commands(instance_commands: Any, job_commands: Any | None = None) -> None:
    """Register ``instance validate-for-backup`` (and ``job grant-script`` on the job group, when given)."""
    check = instance_commands.add_parser(
        "validate-for-backup",
        parents=[common_options(), wait_options()],
        help="check that a database would back up, without configuring it",
        description="Run the checks of a validation (secret, connection, backup privileges, pg_dump) for a "
        "database that is not configured: a Validate job, and no backup instance is stored. Refused at once "
        "for what 'instance configure' would refuse (a database already protected, a missing policy).",
    )
    check.add_argument("--name", "-n", help="the name it would be configured under (default <server>-<database>)")
    check.add_argument("--server", required=True)
    check.add_argument("--port", type=int)
    check.add_argument("--database", "-d", required=True)
    check.add_argument("--secret-uri", required=True, help="Key Vault secret URI, or env:PGVAULT_SECRET_<NAME>")
    check.add_argument("--policy", required=True, help="the backup policy it would be protected by")
    check.add_argument("--server-region")
    check.set_defaults(handler=api_command(validate_for_backup))
    if job_commands is not None:
        grant = job_commands.add_parser(
            "grant-script",
            parents=[common_options()],
            help="the grant script of a validate-for-backup job",
            description="The script an administrator runs to grant what a validate-for-backup job found missing.",
        )
        grant.add_argument("job_id", metavar="JOB_ID")
        grant.add_argument("--format", choices=("sql", "sh", "ps1"), default="sql")
        grant.set_defaults(handler=api_command(job_grant_script))


def candidate_body(args: argparse.Namespace) -> dict[str, Any]:
    """The request body: the configure entry the flags describe (checked by the API's own model)."""
    body = request_body(wire_instances.InstanceSpec, entry_flags(args))
    if not body.get("server") or not body.get("database"):
        raise UsageError("validate-for-backup needs --server and --database")
    return body


def validate_for_backup(args: argparse.Namespace, client: Client) -> int:
    answer = client.request("POST", "/backupInstances:validateForBackup", body=candidate_body(args))
    return finish_job(args, client, answer.body["jobId"])


def job_grant_script(args: argparse.Namespace, client: Client) -> int:
    answer = client.request("GET", f"/backupJobs/{seg(args.job_id)}/grantScript", params={"format": args.format})
    script = answer.body if isinstance(answer.body, str) else str(answer.body)
    sys.stdout.write(script if script.endswith("\n") else script + "\n")
    return EXIT_OK
