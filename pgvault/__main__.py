"""Entry point: ``python -m pgvault <group> <command> ...`` (and the ``pgvault`` script).

Each command group registers itself on the parser in :func:`build_parser`; a command sets
``handler`` (a function taking the parsed arguments and returning the exit code) with
``set_defaults``. Add a group by writing ``add_<group>_commands(subparsers)`` in its own module
and calling it here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pgvault.simulate import add_policy_commands

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    parser = argparse.ArgumentParser(
        prog="pgvault",
        description="pgvault: backup vault for PostgreSQL. Client of the pgvault HTTP API "
        "(PGVAULT_URL, PGVAULT_KEY); commands marked offline need no server.",
    )
    groups = parser.add_subparsers(dest="group", metavar="<group>", required=True)
    add_policy_commands(groups)
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
