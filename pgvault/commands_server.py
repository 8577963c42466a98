"""``server list-databases``: what a secret's user can see on its server (``POST /api/servers:listDatabases``)."""

from __future__ import annotations

import argparse
from typing import Any

from pgvault.client import Client
from pgvault.commands import EXIT_OK, api_command, common_options
from pgvault.output import Column, emit

DATABASE_ROW: list[Column] = [
    ("DATABASE", lambda d: d.get("database")),
    ("PROTECTED", lambda d: d.get("protected")),
    ("INSTANCE", lambda d: d.get("instance")),
]


def add_server_commands(groups: Any) -> Any:
    """Register the ``server`` group; return its commands."""
    server = groups.add_parser("server", help="database servers: what can be protected there")
    commands = server.add_subparsers(dest="command", metavar="<command>", required=True)
    listing = commands.add_parser(
        "list-databases",
        parents=[common_options()],
        help="the databases a secret's user can see on its server, those already protected marked",
        description="Connect with the secret's credentials to the server its connection string names (or "
        "--server, which may not differ from it) and list the databases that user may connect to; "
        "azure_maintenance, azure_sys and the templates are left out. JSON: the API's answer "
        '({"server", "port", "value": [{"database", "protected", "instance"}]}).',
    )
    listing.add_argument("--secret-uri", required=True, help="Key Vault secret URI, or env:PGVAULT_SECRET_<NAME>")
    listing.add_argument("--server", help="the server (default: the secret's Server)")
    listing.add_argument("--port", type=int, help="the port (default: the secret's, else 5432)")
    listing.set_defaults(handler=api_command(list_databases))
    return commands


def list_databases(args: argparse.Namespace, client: Client) -> int:
    """Print the server's databases: the API's answer as JSON, or a table under the server's name."""
    body: dict[str, Any] = {"secretUri": args.secret_uri}
    if args.server:
        body["server"] = args.server
    if args.port is not None:
        body["port"] = args.port
    answer = client.request("POST", "/servers:listDatabases", body=body).body
    if args.output == "json":
        emit(answer, "json")
        return EXIT_OK
    print(f"server {answer.get('server')}:{answer.get('port')}")
    emit(answer.get("value", []), "table", DATABASE_ROW)
    return EXIT_OK
