"""``server list-databases|protect|list|show|discover|unprotect``.

``list-databases`` is ``POST /api/servers:listDatabases`` (what a secret's user can see on its
server); the others drive ``/api/protectedServers``: protecting every database of a server, each an
instance of its own, found again by every discovery.
"""

from __future__ import annotations

import argparse
from typing import Any

from pgvault.client import Client, seg
from pgvault.commands import EXIT_OK, api_command, common_options
from pgvault.output import Column, emit, emit_list

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
    _add_protected_server_commands(commands)
    return commands


SERVER_ROW: list[Column] = [
    ("NAME", lambda s: s.get("name")),
    ("SERVER", lambda s: f"{s.get('server')}:{s.get('port')}"),
    ("POLICY", lambda s: s.get("policyName")),
    ("INCLUDE", lambda s: ",".join(s.get("includePatterns") or [])),
    ("EXCLUDE", lambda s: ",".join(s.get("excludePatterns") or []) or None),
    ("LAST DISCOVERY", lambda s: (s.get("lastDiscovery") or {}).get("time")),
    ("STATUS", lambda s: (s.get("lastDiscovery") or {}).get("status")),
]
MEMBER_ROW: list[Column] = [
    ("DATABASE", lambda d: d.get("database")),
    ("STATUS", lambda d: d.get("status")),
    ("INSTANCE", lambda d: d.get("instance")),
    ("REASON", lambda d: d.get("reason") or (d.get("error") or {}).get("code")),
]
DISCOVERY_KEYS = ("added", "reprotected", "updated", "dropped", "skipped", "failed")


def _add_protected_server_commands(commands: Any) -> None:
    opts = common_options()
    protect = commands.add_parser(
        "protect",
        parents=[opts],
        help="protect every database of a server (each an instance of its own), now and as they are created",
        description="PUT /api/protectedServers/{name}: list the server's databases with the secret's user and "
        "protect each one the patterns cover (shell globs, matched case-sensitively with Python's fnmatch) with "
        "the policy; azure_maintenance, azure_sys and the templates never. Each database becomes the instance "
        "<name>-<database>, validated as usual. A database protected by an instance of its own is skipped and "
        "reported. Sending it again changes the policy, secret or patterns. Every discovery (hourly by default, "
        "PGVAULT_DISCOVERY_SCHEDULE) protects new databases and stops dropped ones, keeping their data.",
    )
    protect.add_argument("--name", "-n", required=True, help="the protected server's name")
    protect.add_argument("--server", required=True, help="host name or IP address")
    protect.add_argument("--port", type=int, default=5432)
    protect.add_argument("--secret-uri", required=True, help="Key Vault secret URI, or env:PGVAULT_SECRET_<NAME>")
    protect.add_argument("--policy", required=True, help="the backup policy of every database")
    protect.add_argument(
        "--include", action="append", metavar="GLOB", help="databases to protect (repeatable; default: all)"
    )
    protect.add_argument("--exclude", action="append", metavar="GLOB", help="databases never to protect (repeatable)")
    protect.set_defaults(handler=api_command(protect_server))
    listing = commands.add_parser("list", parents=[opts], help="every protected server and its last discovery")
    listing.set_defaults(handler=api_command(list_servers))
    show = commands.add_parser(
        "show", parents=[opts], help="one protected server and each of its databases with what protects it"
    )
    show.add_argument("--name", "-n", required=True)
    show.set_defaults(handler=api_command(show_server))
    discover = commands.add_parser(
        "discover",
        parents=[opts],
        help="discover a protected server now: new databases protected, dropped ones stopped",
        description="POST /api/protectedServers/{name}:discover: what the timer does on its schedule.",
    )
    discover.add_argument("--name", "-n", required=True)
    discover.set_defaults(handler=api_command(discover_server))
    unprotect = commands.add_parser(
        "unprotect",
        parents=[opts],
        help="stop protecting a server: its instances stop and stay, with their data",
        description="DELETE /api/protectedServers/{name}: every instance of the server stops (--retain-data "
        "asPerPolicy by default: retention goes on, the latest point kept; or forever) and stays, restorable. "
        "Nothing is deleted; to delete an instance's data use 'instance delete'.",
    )
    unprotect.add_argument("--name", "-n", required=True)
    unprotect.add_argument("--retain-data", choices=("asPerPolicy", "forever"), default="asPerPolicy")
    unprotect.set_defaults(handler=api_command(unprotect_server))


def _print_server(server: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        emit(server, "json")
        return
    emit(server, "table", SERVER_ROW)
    if server.get("databases") is not None:
        print()
        emit(server["databases"], "table", MEMBER_ROW)


def protect_server(args: argparse.Namespace, client: Client) -> int:
    """PUT the protected server; prints it with its databases."""
    body: dict[str, Any] = {
        "server": args.server,
        "port": args.port,
        "secretUri": args.secret_uri,
        "policyName": args.policy,
    }
    if args.include:
        body["includePatterns"] = args.include
    if args.exclude:
        body["excludePatterns"] = args.exclude
    _print_server(client.request("PUT", f"/protectedServers/{seg(args.name)}", body=body).body, args.output)
    return EXIT_OK


def list_servers(args: argparse.Namespace, client: Client) -> int:
    """Every protected server."""
    emit_list(client.get("/protectedServers").get("value", []), args.output, SERVER_ROW)
    return EXIT_OK


def show_server(args: argparse.Namespace, client: Client) -> int:
    """One protected server and its databases."""
    _print_server(client.get(f"/protectedServers/{seg(args.name)}"), args.output)
    return EXIT_OK


def discover_server(args: argparse.Namespace, client: Client) -> int:
    """Discover now; prints what changed (a line per kind of change in a table)."""
    found = client.request("POST", f"/protectedServers/{seg(args.name)}:discover").body
    if args.output == "json":
        emit(found, "json")
        return EXIT_OK
    print(f"discovery {found.get('status')} at {found.get('time')}")
    for key in DISCOVERY_KEYS:
        if found.get(key):
            print(f"  {key}: {', '.join(found[key])}")
    if found.get("remaining"):
        print(f"  remaining for the next discovery: {found['remaining']}")
    return EXIT_OK


def unprotect_server(args: argparse.Namespace, client: Client) -> int:
    """DELETE the protected server; prints the instances stopped."""
    answer = client.request(
        "DELETE", f"/protectedServers/{seg(args.name)}", params={"retainData": args.retain_data}
    ).body
    if args.output == "json":
        emit(answer, "json")
        return EXIT_OK
    stopped = answer.get("stoppedInstances") or []
    print(
        f"protected server {answer.get('name')} removed; {len(stopped)} instances stopped ({answer.get('retainData')})"
    )
    for name in stopped:
        print(f"  {name}")
    return EXIT_OK


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
