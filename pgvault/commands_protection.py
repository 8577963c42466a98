"""``instance stop-protection|resume-protection|delete|undelete`` and ``instance role-assignment-template``.

Stopping and deleting are ``POST /api/backupInstances/{name}:stopProtection`` with
``retainData`` ``forever``/``asPerPolicy`` (200 with the instance) or ``delete`` (202 with the
Delete job that soft-deleted it); resuming is ``:resumeProtection``, undeleting ``:undelete``.
``delete`` soft-deletes every recovery point (purged after the vault's soft-delete days), so it
asks first: ``--yes``, or an answer on a terminal.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from pgvault.client import Client, seg
from pgvault.commands import (
    EXIT_OK,
    INSTANCE_ROW,
    UsageError,
    api_command,
    common_options,
    finish_job,
    wait_options,
)
from pgvault.output import emit

RETAIN_CHOICES = ("forever", "asPerPolicy")


def add_protection_commands(commands: Any) -> None:
    """Register the protection commands on the ``instance`` group's commands."""
    opts = common_options()
    stop = commands.add_parser(
        "stop-protection",
        parents=[opts],
        help="stop backups of an instance, keeping its recovery points",
        description="Stop scheduled and on-demand backups. --retain-data forever keeps every recovery point "
        "as it is; asPerPolicy lets retention go on but keeps the latest point forever. To stop and delete "
        "every point, use 'instance delete'.",
    )
    stop.add_argument("--name", "-n", required=True)
    stop.add_argument("--retain-data", required=True, choices=RETAIN_CHOICES, help="what happens to the points")
    stop.set_defaults(handler=api_command(stop_protection))
    resume = commands.add_parser(
        "resume-protection",
        parents=[opts],
        help="resume backups of a stopped instance",
        description="Backups are scheduled again from now on; the retained points go back to the policy's "
        "retention (those whose date passed while stopped go at the next sweep).",
    )
    resume.add_argument("--name", "-n", required=True)
    resume.set_defaults(handler=api_command(resume_protection))
    delete = commands.add_parser(
        "delete",
        parents=[opts, wait_options()],
        help="stop protection and soft-delete every recovery point (purged after the soft-delete days)",
        description="Stop protection with retainData delete: the instance is SoftDeleted at once (a completed "
        "Delete job); its recovery points are kept, listed as SoftDeleted with their purge time, for the vault's "
        "PGVAULT_SOFT_DELETE_DAYS (14 by default). Until then 'instance undelete' brings it back; after it the "
        "retention sweep deletes every point (a Delete job each), then the instance and its claim on the "
        "database, which can then be protected again. Refused while the vault is immutable. Asks for "
        "confirmation on a terminal; --yes in scripts.",
    )
    delete.add_argument("--name", "-n", required=True)
    delete.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(handler=api_command(delete_instance))
    undelete = commands.add_parser(
        "undelete",
        parents=[opts],
        help="bring a soft-deleted instance back with every recovery point (as ProtectionStopped)",
        description="POST :undelete: a soft-deleted instance whose purge has not begun comes back as "
        "ProtectionStopped, retaining data forever, with every recovery point; 'instance resume-protection' "
        "then schedules backups again.",
    )
    undelete.add_argument("--name", "-n", required=True)
    undelete.set_defaults(handler=api_command(undelete_instance))
    template = commands.add_parser(
        "role-assignment-template",
        parents=[opts],
        help="the ARM template granting the app's identity the Azure roles an instance needs",
        description="Print the ARM template (Key Vault Secrets User on the key vault, Reader on the server) "
        "to deploy with 'az deployment group create --template-file'.",
    )
    template.add_argument("--name", "-n", required=True)
    template.set_defaults(handler=api_command(role_assignment_template))


def stop_protection(args: argparse.Namespace, client: Client) -> int:
    """``:stopProtection`` keeping the data; prints the instance."""
    answer = client.request(
        "POST", f"/backupInstances/{seg(args.name)}:stopProtection", body={"retainData": args.retain_data}
    )
    emit(answer.body, args.output, INSTANCE_ROW)
    return EXIT_OK


def resume_protection(args: argparse.Namespace, client: Client) -> int:
    """``:resumeProtection``; prints the instance."""
    answer = client.request("POST", f"/backupInstances/{seg(args.name)}:resumeProtection")
    emit(answer.body, args.output, INSTANCE_ROW)
    return EXIT_OK


def confirmed(name: str, *, given: bool, stdin: TextIO | None = None, err: TextIO | None = None) -> bool:
    """Whether deleting ``name`` may go ahead: ``--yes``, or "yes"/"y" typed on a terminal."""
    if given:
        return True
    stdin = stdin or sys.stdin
    err = err or sys.stderr
    if not stdin.isatty():
        raise UsageError(f"instance delete deletes every recovery point of {name!r}: add --yes to confirm")
    err.write(f"Delete backup instance {name!r} and every one of its recovery points? [y/N] ")
    err.flush()
    return stdin.readline().strip().lower() in ("y", "yes")


def delete_instance(args: argparse.Namespace, client: Client) -> int:
    """``:stopProtection`` with ``retainData: delete``: the Delete job (waited for with ``--wait``)."""
    if not confirmed(args.name, given=args.yes):
        print("pgvault: nothing deleted", file=sys.stderr)
        return EXIT_OK
    answer = client.request("POST", f"/backupInstances/{seg(args.name)}:stopProtection", body={"retainData": "delete"})
    return finish_job(args, client, answer.body["jobId"])


def undelete_instance(args: argparse.Namespace, client: Client) -> int:
    """``:undelete``; prints the instance (ProtectionStopped)."""
    answer = client.request("POST", f"/backupInstances/{seg(args.name)}:undelete")
    emit(answer.body, args.output, INSTANCE_ROW)
    return EXIT_OK


def role_assignment_template(args: argparse.Namespace, client: Client) -> int:
    """The instance's ARM role assignment template, always as JSON (it is a file to deploy)."""
    emit(client.get(f"/backupInstances/{seg(args.name)}/roleAssignmentTemplate"), "json")
    return EXIT_OK
