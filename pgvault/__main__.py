"""Entry point: ``python -m pgvault <group> <command> ...`` (and the ``pgvault`` script).

Each command group registers itself on the parser in :func:`build_parser`; a command sets
``handler`` (a function taking the parsed arguments and returning the exit code) with
``set_defaults``. Exit codes: 0 ok, 1 job failed, 2 usage or bad input (a 400 included), 3 other API
error, 4 wait timed out (pgvault/help.py says them under every ``--help``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pgvault.commands import (
    EXIT_USAGE,
    add_backup_commands,
    add_instance_commands,
    add_job_commands,
    add_policy_api_commands,
    add_recovery_point_commands,
    add_restore_commands,
)
from pgvault.commands_alert import add_alert_commands
from pgvault.commands_candidate import add_candidate_commands
from pgvault.commands_protection import add_protection_commands
from pgvault.commands_server import add_server_commands
from pgvault.help import EXIT_CODES, add_examples
from pgvault.simulate import add_policy_commands

EPILOG = f"""environment:
  PGVAULT_URL   the app, e.g. https://myvault.azurewebsites.net (default http://127.0.0.1:7071)
  PGVAULT_KEY   a function key, sent as x-functions-key

{EXIT_CODES}

Every command's --help shows examples.
"""


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    parser = argparse.ArgumentParser(
        prog="pgvault",
        description="pgvault: backup vault for PostgreSQL. Client of the pgvault HTTP API "
        "(PGVAULT_URL, PGVAULT_KEY); commands marked offline need no server.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups = parser.add_subparsers(dest="group", metavar="<group>", required=True)
    add_policy_api_commands(add_policy_commands(groups))
    instance_commands = add_instance_commands(groups)
    add_protection_commands(instance_commands)
    add_server_commands(groups)
    add_backup_commands(groups)
    add_candidate_commands(instance_commands, add_job_commands(groups))
    add_recovery_point_commands(groups)
    add_restore_commands(groups)
    add_alert_commands(groups)
    add_examples(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit code is 0 on success, 2 on bad usage or input, else the command's."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    code: int = handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
