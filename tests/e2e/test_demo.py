"""``make demo`` tells the whole story and leaves no process behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def _servers() -> set[tuple[int, str]]:
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(word in cmd for word in ("azurite", "postgres -D", "-m devhost")):
            found.add((int(proc.name), cmd))
    return found


def test_demo_runs_end_to_end_and_stops_everything_it_started() -> None:
    before = _servers()
    out = subprocess.run(
        [sys.executable, "-m", "devhost.demo"], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
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
    assert _servers() - before == set()
