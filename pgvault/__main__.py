"""Entry point: ``python -m pgvault <group> <command> ...`` (and the ``pgvault`` script).

Each command group registers itself on the parser in :func:`build_parser`; a command sets
``handler`` (a function taking the parsed arguments and returning the exit code) with
``set_defaults``. Exit codes: 0 ok, 1 job failed, 2 usage or bad input (a 400 included), 3 other API
error, 4 wait timed out
(see pgvault/commands.py).
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
from pgvault.simulate import add_policy_commands

EPILOG = """environment:
  PGVAULT_URL   the app, e.g. https://myvault.azurewebsites.net (default http://127.0.0.1:7071)
  PGVAULT_KEY   a function key, sent as x-functions-key

exit codes:
  0  done (with --wait: the job Completed or CompletedWithWarnings)
  1  the job Failed or was Cancelled: error code and recommended action on stderr
  2  bad usage or input, here or refused by the API as a 400: error code, field and fix on stderr
  3  the API refused otherwise (404, 409, ...) or could not answer: error code on stderr
  4  --wait timed out; the job is still running
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
    add_instance_commands(groups)
    add_backup_commands(groups)
    add_job_commands(groups)
    add_recovery_point_commands(groups)
    add_restore_commands(groups)
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
