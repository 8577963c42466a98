"""One place that finds the PostgreSQL client tools for a server's major version.

``pg_dump`` refuses a server newer than itself, and ``pg_restore`` cannot read archives from a
newer ``pg_dump`` (docs/platform-notes.md), so each job picks its tool by the server's major version:
the newest installed tool whose major version is at least the server's. Candidates come from
``PGVAULT_PG_BIN_DIR``, then ``PATH``, then Debian's versioned folders
(``/usr/lib/postgresql/<major>/bin``).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from shared.errors import ErrorCode, UserError

log = logging.getLogger(__name__)

DEBIAN_ROOT = Path("/usr/lib/postgresql")
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
# The dynamic loader's line (LD_DEBUG=libs) when it initialises the libpq a program loaded.
_LIBPQ = re.compile(r"calling init: (\S*/libpq\.so[.\d]*)")
# libpq's require_auth (PGREQUIREAUTH), with which a client refuses the cleartext password: libpq 16.
REQUIRE_AUTH_LIBPQ = 160000


@dataclass(frozen=True)
class Tool:
    """An installed client tool and its version."""

    name: str
    path: Path
    major: int
    version_text: str

    @property
    def libpq(self) -> int | None:
        """The version of the libpq this tool runs with (``PQlibVersion``), None when unknown."""
        return libpq_version(self.path)

    @property
    def refuses_cleartext(self) -> bool:
        """Whether this tool honours ``PGREQUIREAUTH`` (libpq 16+), so it can refuse a cleartext password."""
        version = self.libpq
        return version is not None and version >= REQUIRE_AUTH_LIBPQ


@functools.cache
def _version(path: Path) -> tuple[int, str] | None:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = _VERSION.search(out.stdout)
    if out.returncode != 0 or m is None:
        return None
    return int(m.group(1)), out.stdout.strip()


@functools.cache
def libpq_version(path: Path) -> int | None:
    """The version of the libpq ``path`` runs with (``PQlibVersion()``, e.g. 150018), None if unknown.

    Read from the library the dynamic loader gives the tool when it runs (``LD_DEBUG=libs``), so
    wrappers (Debian's pg_wrapper, the bundle's LD_LIBRARY_PATH script) count as they run: a
    tool's own version does not say which libpq it loads (apt.postgresql.org's pg_dump 15 runs
    with the newest libpq5).
    """
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LD_DEBUG": "libs", "LC_ALL": "C"}
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = _LIBPQ.search(out.stderr)
    if m is None:
        return None
    try:
        return int(ctypes.CDLL(m.group(1)).PQlibVersion())
    except (OSError, AttributeError, ValueError):
        return None


def _candidates(name: str, bin_dir: Path | None, search_path: str | None) -> list[Path]:
    found: list[Path] = []
    if bin_dir is not None:
        found.append(bin_dir / name)
    for folder in (search_path if search_path is not None else os.environ.get("PATH", "")).split(os.pathsep):
        if folder:
            found.append(Path(folder) / name)
    if DEBIAN_ROOT.is_dir():
        found.extend(sorted(DEBIAN_ROOT.glob(f"*/bin/{name}")))
    unique: list[Path] = []
    for path in found:
        if path.is_file() and os.access(path, os.X_OK) and path.resolve() not in {p.resolve() for p in unique}:
            unique.append(path)
    return unique


def list_tools(name: str, bin_dir: Path | None = None, *, search_path: str | None = None) -> list[Tool]:
    """Every installed ``name`` (pg_dump, pg_restore, psql) with its major version, newest first."""
    tools = []
    for path in _candidates(name, bin_dir, search_path):
        version = _version(path)
        if version is not None:
            tools.append(Tool(name, path, version[0], version[1]))
    return sorted(tools, key=lambda t: -t.major)


def pick_tool(name: str, server_major: int, bin_dir: Path | None = None, *, search_path: str | None = None) -> Tool:
    """The newest ``name`` whose major version is at least ``server_major``.

    ``UserErrorPgDumpVersionTooOld`` names the server's version and what was found.
    """
    tools = list_tools(name, bin_dir, search_path=search_path)
    for tool in tools:
        if tool.major >= server_major:
            return tool
    found = ", ".join(f"{t.major} ({t.path})" for t in tools) or "none"
    raise UserError(
        ErrorCode.PG_DUMP_VERSION_TOO_OLD,
        f"the server runs PostgreSQL {server_major}; {name} must be version {server_major} or newer, found: {found}",
        recommended_action=(
            f"Install the PostgreSQL {server_major} (or newer) client tools and set PGVAULT_PG_BIN_DIR to their "
            "bin folder."
        ),
    )
