"""The files `func azure functionapp publish` would upload, computed as Core Tools computes them.

Core Tools (src/Azure.Functions.Cli, ``GetLocalFiles``) walks the project folder, skips the
folders ``.git`` and ``.vscode`` and the files ``.funcignore``, ``.gitignore``,
``local.settings.json`` and ``project.lock.json`` by name, then keeps each file whose path
relative to the root (with ``/``) the gitignore-style patterns of ``.funcignore`` accept.
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pathspec
import pytest

REPO = Path(__file__).resolve().parents[2]
ALWAYS_SKIPPED_DIRS = {".git", ".vscode"}
ALWAYS_SKIPPED_FILES = {".funcignore", ".gitignore", "local.settings.json", "project.lock.json"}


def _spec(root: Path) -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines((root / ".funcignore").read_text().splitlines())


def package_files(root: Path) -> set[str]:
    """Relative paths of the files Core Tools would zip from ``root``."""
    spec = _spec(root)
    files: set[str] = set()
    for folder, dirs, names in os.walk(root):
        rel_folder = Path(folder).relative_to(root).as_posix()
        prefix = "" if rel_folder == "." else f"{rel_folder}/"
        # A folder the patterns exclude excludes all below it (gitignore cannot re-include inside it),
        # so not walking it changes nothing; it keeps .venv and node_modules out of the walk.
        dirs[:] = [d for d in dirs if d not in ALWAYS_SKIPPED_DIRS and not spec.match_file(f"{prefix}{d}/")]
        for name in names:
            rel = f"{prefix}{name}"
            if name not in ALWAYS_SKIPPED_FILES and not spec.match_file(rel):
                files.add(rel)
    return files


@pytest.fixture(scope="module")
def files() -> set[str]:
    return package_files(REPO)


def _tops(files: set[str]) -> set[str]:
    return {f.split("/", 1)[0] + ("/" if "/" in f else "") for f in files}


def test_the_package_holds_the_app_and_its_requirements(files: set[str]) -> None:
    for needed in ("function_app.py", "host.json", "requirements.txt"):
        assert needed in files
    assert {"functions/", "shared/"} <= _tops(files)
    assert "shared/settings.py" in files and "functions/workers.py" in files
    assert "shared/policy/timezones.py" in files


def test_the_package_leaves_out_tests_tools_and_local_state(files: set[str]) -> None:
    tops = _tops(files)
    for left_out in ("tests/", "devhost/", "bench/", ".venv/", "node_modules/", "pgvault/", "infra/", ".git/", ".ci/"):
        assert left_out not in tops, left_out
    for name in ("local.settings.json", "local.settings.sample.json", "requirements-dev.txt", "Makefile",
                 "Dockerfile", "pyproject.toml", "README.md", "DEPLOY.md"):
        assert name not in files, name
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]


def test_nothing_but_the_app_is_at_the_top_level(files: set[str]) -> None:
    assert _tops(files) - {"pgtools/"} == {"function_app.py", "host.json", "requirements.txt", "functions/", "shared/"}


def test_bundled_pg_tools_and_a_local_settings_file_are_handled_as_core_tools_would(tmp_path: Path) -> None:
    (tmp_path / ".funcignore").write_text((REPO / ".funcignore").read_text())
    for rel in ("function_app.py", "pgtools/bin/pg_dump", "pgtools/lib/libpq.so.5", "local.settings.json",
                "shared/__pycache__/x.cpython-311.pyc", ".venv/bin/python", ".vscode/settings.json",
                "tests/unit/test_x.py", "shared/tests/helper.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert package_files(tmp_path) == {"function_app.py", "pgtools/bin/pg_dump", "pgtools/lib/libpq.so.5"}


# ------------------------------------------------------------------ bundled pg tools (Flex Consumption)

BUNDLE = REPO / "infra" / "bundle-pg-tools.sh"
PG15 = Path("/usr/lib/postgresql/15/bin")
needs_pg15 = pytest.mark.skipif(not (PG15 / "pg_dump").exists(), reason="needs this machine's PostgreSQL 15 client")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("package") / "pgtools"
    subprocess.run(["bash", str(BUNDLE), str(PG15), str(dest)], check=True, capture_output=True, timeout=120)
    return dest


@needs_pg15
def test_bundled_pg_dump_runs_with_an_empty_environment_on_its_own_libpq(bundle: Path) -> None:
    out = subprocess.run(
        [str(bundle / "bin" / "pg_dump"), "--version"], env={"LD_DEBUG": "libs"}, capture_output=True, text=True,
        timeout=30, check=True,
    )
    assert out.stdout.startswith("pg_dump (PostgreSQL) 15.")
    assert f"calling init: {bundle}/bin/../lib/libpq.so.5" in out.stderr
    assert sorted(p.name for p in (bundle / "bin").iterdir()) == ["pg_dump", "pg_restore", "psql"]
    assert not [p.name for p in (bundle / "lib").iterdir() if p.name.startswith(("libc.so", "ld-linux"))]


@needs_pg15
def test_pgvault_finds_the_bundled_tools_through_pg_bin_dir(bundle: Path) -> None:
    from shared.pg.tools import list_tools

    tools = list_tools("pg_dump", bundle / "bin", search_path="")
    bundled = [t for t in tools if t.path == bundle / "bin" / "pg_dump"]
    assert len(bundled) == 1 and bundled[0].major == 15  # its version read through the wrapper
    assert tools.index(bundled[0]) == min(i for i, t in enumerate(tools) if t.major == 15)  # first among equals


@needs_pg15
@pytest.mark.integration
def test_the_bundled_pg_dump_dumps_a_real_server_with_only_pg_variables_set(bundle: Path, postgres: Any) -> None:
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(postgres.port), "PGUSER": "postgres", "PGDATABASE": "postgres"}
    out = subprocess.run([str(bundle / "bin" / "pg_dump"), "-Fc"], env=env, capture_output=True, timeout=60, check=True)
    assert out.stdout.startswith(b"PGDMP")


# ------------------------------------------------------------------ the container image


def _docker_context(root: Path) -> set[str]:
    """Files `docker build` sends, by .dockerignore (patterns from the context root, ``**`` any depth)."""
    patterns = [p.strip() for p in (root / ".dockerignore").read_text().splitlines() if p.strip() and p[0] != "#"]

    def ignored(rel: str) -> bool:
        parts = rel.split("/")
        for pattern in patterns:
            if pattern.startswith("**/"):
                if any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts):
                    return True
            elif any(fnmatch.fnmatchcase("/".join(parts[: i + 1]), pattern) for i in range(len(parts))):
                return True
        return False

    files = set()
    for folder, dirs, names in os.walk(root):
        rel_folder = Path(folder).relative_to(root).as_posix()
        prefix = "" if rel_folder == "." else f"{rel_folder}/"
        dirs[:] = [d for d in dirs if not ignored(f"{prefix}{d}")]
        files |= {f"{prefix}{n}" for n in names if not ignored(f"{prefix}{n}")}
    return files


def test_the_image_holds_the_same_files_as_the_zip_package(files: set[str]) -> None:
    assert _docker_context(REPO) == {f for f in files if not f.startswith("pgtools/")}


def test_dockerfile_builds_on_the_functions_python_image_with_postgresql_17_client() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM mcr\.microsoft\.com/azure-functions/python:4-python3\.11$", text, re.M)
    assert re.search(r"^ARG PG_MAJOR=17$", text, re.M)
    assert "https://apt.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg main" in text
    assert "https://www.postgresql.org/media/keys/ACCC4CF8.asc" in text
    assert '"postgresql-client-${PG_MAJOR}"' in text
    # The build stops unless pg_dump of that major runs, and libpq speaks TLS.
    assert '"$PGVAULT_PG_BIN_DIR/pg_dump" --version | grep -E "^pg_dump \\(PostgreSQL\\) ${PG_MAJOR}\\."' in text
    assert 'grep -E "libssl\\.so"' in text


def test_the_images_tool_folder_is_the_one_the_template_gives_premium_apps() -> None:
    from tests.arm_template import arm_app_settings, load_arm

    text = (REPO / "Dockerfile").read_text()
    bin_dir = re.search(r"PGVAULT_PG_BIN_DIR=(\S+)", text)
    assert bin_dir is not None
    image_dir = bin_dir.group(1).replace("${PG_MAJOR}", "17")
    assert arm_app_settings(load_arm(), planKind="ElasticPremium")["PGVAULT_PG_BIN_DIR"] == image_dir


# ------------------------------------------------------------------ host.json is explained


def _leaf_keys(node: Any) -> set[str]:
    keys: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            keys.add(key)
            keys |= _leaf_keys(value)
    return keys


def test_every_host_json_setting_is_explained_in_deploy_md() -> None:
    import json

    host = json.loads((REPO / "host.json").read_text())
    section = (REPO / "DEPLOY.md").read_text().split("## 6. host.json", 1)[1].split("\n## ", 1)[0]
    # Containers of settings need no paragraph of their own; every setting in them does.
    containers = {"version", "logging", "logLevel", "extensions", "http", "queues", "applicationInsights",
                  "samplingSettings", "isEnabled", "excludedTypes", "default", "Host.Results", "Function", "id"}
    unexplained = {k for k in _leaf_keys(host) - containers if f"`{k}" not in section and f"{k}:" not in section}
    assert not unexplained, f"host.json settings without a word in DEPLOY.md §6: {sorted(unexplained)}"
