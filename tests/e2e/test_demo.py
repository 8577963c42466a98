"""``make demo`` tells the whole story and leaves no process behind."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def _servers(marker: str) -> set[tuple[int, str]]:
    """Servers started under the demo: their environment carries its marker (children inherit it).

    Other test sessions on the same machine start servers of their own; those are not the demo's.
    """
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = f"PGVAULT_DEMO_MARKER={marker}".encode() in environ
        if ours and any(word in cmd for word in ("azurite", "postgres -D", "-m devhost")):
            found.add((int(proc.name), cmd))
    return found


def test_demo_runs_end_to_end_and_stops_everything_it_started() -> None:
    marker = uuid.uuid4().hex
    out = subprocess.run(
        [sys.executable, "-m", "devhost.demo"],
        cwd=REPO,
        env={**os.environ, "PGVAULT_DEMO_MARKER": marker},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for expected in (
        "readiness: Failed UserErrorMissingDBPermissions",
        "readiness: Success",
        ": Completed,",
        '"datastore": "VaultStore"',
        "the data matches",
        "UserErrorDatabaseNameAlreadyInUse",
        "'mismatches': []",
        "shop/latest.dump",
        "devhost stopped (exit code 0)",
    ):
        assert expected in out.stdout
    assert _servers(marker) == set()
