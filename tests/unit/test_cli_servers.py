"""``pgvault server protect|list|show|discover|unprotect`` against a scripted HTTP server."""

from __future__ import annotations

import json

import pytest

from pgvault.__main__ import main
from tests.unit.test_cli import Script, _ScriptedServer

SERVER = {
    "name": "db1",
    "server": "db1.example.com",
    "port": 5432,
    "secretUri": "env:PGVAULT_SECRET_A",
    "policyName": "weekly",
    "includePatterns": ["*"],
    "excludePatterns": ["scratch_*"],
    "createdTime": "2026-12-01T10:00:00Z",
    "lastDiscovery": {"time": "2026-12-01T10:00:00Z", "status": "CompletedWithWarnings"},
    "databases": [
        {"database": "orders", "status": "Protected", "instance": "db1-orders", "since": "2026-12-01T10:00:00Z"},
        {
            "database": "legacy",
            "status": "Skipped",
            "instance": "legacy",
            "reason": "protected on its own",
            "since": "2026-12-01T10:00:00Z",
        },
    ],
}
FOUND = {
    "time": "2026-12-01T11:00:00Z",
    "status": "Completed",
    "added": ["new_db"],
    "reprotected": [],
    "updated": [],
    "dropped": ["old_db"],
    "skipped": [],
    "failed": [],
    "excluded": [],
    "remaining": 0,
}


def test_server_commands_send_the_apis_requests_and_print_what_changed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    script: Script = {
        ("PUT", "/api/protectedServers/db1"): [(201, {}, SERVER)],
        ("GET", "/api/protectedServers"): [
            (200, {}, {"value": [{k: v for k, v in SERVER.items() if k != "databases"}]})
        ],
        ("GET", "/api/protectedServers/db1"): [(200, {}, SERVER)],
        ("POST", "/api/protectedServers/db1:discover"): [(200, {}, FOUND)],
        ("DELETE", "/api/protectedServers/db1"): [
            (200, {}, {"name": "db1", "deleted": True, "retainData": "forever", "stoppedInstances": ["db1-orders"]})
        ],
    }
    with _ScriptedServer(script) as server:
        monkeypatch.setenv("PGVAULT_URL", server.url)
        argv = [
            "server",
            "protect",
            "-n",
            "db1",
            "--server",
            "db1.example.com",
            "--secret-uri",
            "env:PGVAULT_SECRET_A",
            "--policy",
            "weekly",
            "--exclude",
            "scratch_*",
            "--exclude",
            "tmp",
            "-o",
            "json",
        ]
        assert main(argv) == 0
        assert json.loads(capsys.readouterr().out) == SERVER
        assert main(["server", "list", "-o", "table"]) == 0
        listed = capsys.readouterr().out.splitlines()
        assert listed[0].split()[:4] == ["NAME", "SERVER", "POLICY", "INCLUDE"] and "db1.example.com:5432" in listed[1]
        assert main(["server", "show", "-n", "db1", "-o", "table"]) == 0
        shown = capsys.readouterr().out
        assert "db1-orders" in shown and "protected on its own" in shown
        assert main(["server", "discover", "-n", "db1", "-o", "table"]) == 0
        assert capsys.readouterr().out.splitlines()[1:] == ["  added: new_db", "  dropped: old_db"]
        assert main(["server", "unprotect", "-n", "db1", "--retain-data", "forever", "-o", "table"]) == 0
        assert "1 instances stopped (forever)" in capsys.readouterr().out
        bodies = [(m, body) for m, _, body in server.requests]
    assert bodies[0] == (
        "PUT",
        {
            "server": "db1.example.com",
            "port": 5432,
            "secretUri": "env:PGVAULT_SECRET_A",
            "policyName": "weekly",
            "excludePatterns": ["scratch_*", "tmp"],
        },
    )
    assert [m for m, _ in bodies] == ["PUT", "GET", "GET", "POST", "DELETE"]
