"""Picking pg_dump by the server's major version, with small real executables standing in for versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import UserError
from shared.pg.tools import list_tools, pick_tool


def _fake(folder: Path, major: int) -> Path:
    folder.mkdir(parents=True)
    exe = folder / "pg_dump"
    exe.write_text(f"#!/bin/sh\necho 'pg_dump (PostgreSQL) {major}.3'\n")
    exe.chmod(0o755)
    return folder


def test_the_newest_tool_at_least_the_servers_version_is_chosen(tmp_path: Path) -> None:
    a, b = _fake(tmp_path / "13", 13), _fake(tmp_path / "17", 17)
    path = f"{a}:{b}"
    assert pick_tool("pg_dump", 13, search_path=path).major >= 15  # Debian's 15 or the fake 17
    assert pick_tool("pg_dump", 16, search_path=path).path == b / "pg_dump"
    majors = [t.major for t in list_tools("pg_dump", search_path=path)]
    assert majors == sorted(majors, reverse=True) and 13 in majors and 17 in majors


def test_bin_dir_is_searched_first(tmp_path: Path) -> None:
    b = _fake(tmp_path / "18", 18)
    assert pick_tool("pg_dump", 18, b, search_path="").path == b / "pg_dump"


def test_no_tool_new_enough_is_pg_dump_version_too_old(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        pick_tool("pg_dump", 99, search_path=str(_fake(tmp_path / "12", 12)))
    assert err.value.code.value == "UserErrorPgDumpVersionTooOld"
    assert "99" in err.value.message and "12" in err.value.message
    assert "PGVAULT_PG_BIN_DIR" in err.value.recommended_action
