"""Throwaway Azurite and PostgreSQL servers for tests, the demo and benchmarks.

Each server runs as a direct child of the process that started it, with a parent-death signal,
so it goes away even when that process is killed. Its files live in a run folder named after
the owning process; ``reap_stale`` removes the folders (and stops the servers) of owners that
are gone, so a second run right after an interrupted one finds nothing in its way.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN_PREFIX = "pgvault-run-"
_PR_SET_PDEATHSIG = 1
# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something accepts connections on ``port``; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def _die_with_parent(sig: int) -> Callable[[], None]:
    def hook() -> None:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)

    return hook


def _as_user(user: str | None, sig: int) -> Callable[[], None]:
    """A preexec hook: drop to ``user`` (when running as root), then ask for ``sig`` on parent death.

    The death signal is set after the user change because changing credentials clears it.
    """

    def hook() -> None:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.setgroups([])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
        _die_with_parent(sig)()

    return hook


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_run_dir() -> Path:
    """A fresh folder for this process's servers, readable by the postgres user."""
    path = Path(tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{os.getpid()}-"))
    path.chmod(0o755)
    return path


def reap_stale(tmp: Path | None = None) -> list[Path]:
    """Stop the servers and remove the run folders of owner processes that no longer exist."""
    base = tmp or Path(tempfile.gettempdir())
    reaped: list[Path] = []
    for folder in base.glob(f"{RUN_PREFIX}*"):
        try:
            owner = int(folder.name[len(RUN_PREFIX) :].split("-", 1)[0])
        except ValueError:
            continue
        if _alive(owner):
            continue
        for pidfile in folder.rglob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                pid = int(pidfile.read_text().split()[0])
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)
        reaped.append(folder)
    return reaped


def _stop(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Azurite:
    """An Azurite process (blobs, queues, tables) on free ports with its own data folder."""

    location: Path
    blob_port: int = 0
    queue_port: int = 0
    table_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        """The full connection string for this Azurite (the SDKs need explicit endpoints for free ports)."""
        host = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={host}:{self.blob_port}/{AZURITE_ACCOUNT};"
            f"QueueEndpoint={host}:{self.queue_port}/{AZURITE_ACCOUNT};"
            f"TableEndpoint={host}:{self.table_port}/{AZURITE_ACCOUNT};"
        )

    def start(self, *, keep_ports: bool = False) -> Azurite:
        """Start Azurite (from ``node_modules`` in the repo) and wait until all three services listen.

        ``keep_ports`` restarts on the same ports, for tests that stop and start it again.
        """
        exe = REPO / "node_modules" / ".bin" / "azurite"
        if not exe.exists():
            raise FileNotFoundError(f"{exe} is missing: run `make deps` (npm install) first")
        if not keep_ports or not self.blob_port:
            self.blob_port, self.queue_port, self.table_port = free_port(), free_port(), free_port()
        self.location.mkdir(parents=True, exist_ok=True)
        log = (self.location / "azurite.log").open("ab")
        self.proc = subprocess.Popen(
            [
                str(exe),
                "--silent",
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
                "--location",
                str(self.location),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.blob_port),
                "--queueHost",
                "127.0.0.1",
                "--queuePort",
                str(self.queue_port),
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
                str(self.table_port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent(signal.SIGKILL),  # noqa: PLW1509 - no threads run it
        )
        log.close()
        (self.location / "azurite.pid").write_text(str(self.proc.pid))
        for port in (self.blob_port, self.queue_port, self.table_port):
            wait_for_port(port, 30, self.proc)
        return self

    def stop(self) -> None:
        """Stop Azurite; its data stays in ``location`` until the run folder is removed."""
        if self.proc is not None:
            _stop(self.proc, signal.SIGTERM, 10)
            self.proc = None


def _runs_as(user: str, program: Path) -> bool:
    """Whether ``user`` may run ``program`` (a server installed under /root is not for postgres)."""
    return subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(program)], check=False).returncode == 0


def _copy_installation(bin_dir: Path, into: Path) -> Path:
    """A copy of the installation ``bin_dir`` belongs to (bin, lib, share) under ``into``; its bin."""
    if not (into / "bin").is_dir():
        shutil.copytree(bin_dir.parent, into, symlinks=True)
    return into / "bin"


def find_pg_bin(program: str = "initdb") -> Path:
    """The folder of the newest PostgreSQL server binaries on this machine."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{program}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which(program)
    if found:
        return Path(found).resolve().parent
    raise FileNotFoundError(f"{program} not found: install postgresql-15 (make deps does it)")


PASSWORD_ROLE = "password_required"  # noqa: S105 - a role name, not a password
_PG_HBA = f"""# pgvault test cluster
local all all trust
host all +{PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
host all all ::1/128 trust
"""
CLEARTEXT_ROLE = "password_cleartext"
_TLS_OPTIONS = ("-c", "ssl=on", "-c", "ssl_cert_file=server.crt", "-c", "ssl_key_file=server.key")
# A TLS-only cluster: no connection without TLS, and members of password_cleartext are asked for
# their password in cleartext (the "password" method), which is safe only to a verified server.
_PG_HBA_TLS = f"""# pgvault test cluster, TLS only
local all all trust
hostssl all +{CLEARTEXT_ROLE} 127.0.0.1/32 password
hostssl all +{PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256
hostssl all all 127.0.0.1/32 trust
hostnossl all all 127.0.0.1/32 reject
"""


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster on a free port, trust auth for the ``postgres`` superuser.

    With ``tls``, the cluster accepts TLS connections only, with a self-signed certificate for
    127.0.0.1 made at its first start (``cert_file``, to give as a Root Certificate). The certificate
    names 127.0.0.1 only, so ``localhost`` is a name it does not hold (VerifyFull refuses it).
    """

    root: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    bin_dir: Path | None = None
    tls: bool = False

    def client(self, program: str) -> Path:
        """A client program (psql, pg_isready) for this cluster: beside the server binaries, or the
        machine's own when the server comes without them (the npm builds of other majors carry only
        initdb, pg_ctl and postgres)."""
        assert self.bin_dir is not None
        own = self.bin_dir / program
        return own if own.exists() else find_pg_bin(program) / program

    @property
    def cert_file(self) -> Path:
        """The server's self-signed certificate (TLS clusters): its own CA."""
        return self.data_dir / "server.crt"

    def _make_certificate(self) -> None:
        key = self.data_dir / "server.key"
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "7",
                "-keyout", str(key), "-out", str(self.cert_file),
                "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        key.chmod(0o600)
        if self._user:
            entry = pwd.getpwnam(self._user)
            for path in (key, self.cert_file):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def _user(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        """A libpq connection string to this cluster over TCP.

        Members of ``password_required`` must give their password; every other role is trusted.
        """
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user}"

    def start(self) -> Postgres:
        """initdb (first time only), then run the postmaster as our child and wait for it."""
        self.bin_dir = self.bin_dir or find_pg_bin()
        self.root.mkdir(parents=True, exist_ok=True)
        if self._user and not _runs_as(self._user, self.bin_dir / "postgres"):
            self.bin_dir = _copy_installation(self.bin_dir, self.root / "install")
        self.socket_dir.mkdir(exist_ok=True)
        if self._user:
            entry = pwd.getpwnam(self._user)
            for path in (self.root, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        fresh = not (self.data_dir / "PG_VERSION").exists()
        if fresh:
            subprocess.run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                preexec_fn=_as_user(self._user, signal.SIGKILL),
            )
            # Trust for everyone except members of password_required, so tests can prove wrong passwords fail.
            (self.data_dir / "pg_hba.conf").write_text(_PG_HBA_TLS if self.tls else _PG_HBA)
            if self.tls:
                self._make_certificate()
        self.port = self.port or free_port()
        log = (self.root / "postgres.log").open("ab")
        self.proc = subprocess.Popen(
            [
                str(self.bin_dir / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-k",
                str(self.socket_dir),
                "-c",
                "fsync=off",
                "-c",
                "max_connections=100",
                "-c",
                "shared_buffers=64MB",
                *(_TLS_OPTIONS if self.tls else ()),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its backends with it.
            preexec_fn=_as_user(self._user, signal.SIGQUIT),  # noqa: PLW1509
        )
        log.close()
        wait_for_port(self.port, 30, self.proc)
        self._wait_ready()
        if fresh:
            subprocess.run(
                [
                    str(self.client("psql")),
                    "-X",
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-c",
                    f"CREATE ROLE {PASSWORD_ROLE} NOLOGIN; CREATE ROLE {CLEARTEXT_ROLE} NOLOGIN",
                ],
                check=True,
                capture_output=True,
            )
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        assert self.bin_dir is not None
        while time.monotonic() < deadline:
            ok = subprocess.run(
                [str(self.client("pg_isready")), "-h", "127.0.0.1", "-p", str(self.port), "-q"], check=False
            )
            if ok.returncode == 0:
                return
            time.sleep(0.05)
        raise TimeoutError("PostgreSQL did not become ready in 30 s")

    def psql(self, sql: str, dbname: str = "postgres", *, user: str = "postgres") -> str:
        """Run the script ``sql`` with psql (stops at the first error); its unaligned output."""
        assert self.bin_dir is not None
        out = subprocess.run(
            [
                str(self.client("psql")),
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                user,
            ],
            # The database name goes in PGDATABASE: psql would read a name holding '=' as a connection string.
            env={"PGDATABASE": dbname, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            input=sql,
            text=True,
            capture_output=True,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"psql failed on {dbname}: {out.stderr.strip()}")
        return out.stdout.strip()

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the postmaster: ``fast`` (SIGINT) disconnects clients, ``immediate`` (SIGQUIT) crashes it."""
        if self.proc is not None:
            _stop(self.proc, signal.SIGINT if mode == "fast" else signal.SIGQUIT, 30)
            self.proc = None

    def restart(self) -> None:
        """Stop and start on the same port and data."""
        self.stop()
        self.start()


@contextlib.contextmanager
def running_services(
    *, azurite: bool = True, postgres: bool = True
) -> Iterator[tuple[Azurite | None, Postgres | None]]:
    """Azurite and/or PostgreSQL for the length of a ``with`` block, stopped and removed after."""
    reap_stale()
    run = new_run_dir()
    az = Azurite(run / "azurite") if azurite else None
    pg = Postgres(run / "pg") if postgres else None
    try:
        if az:
            az.start()
        if pg:
            pg.start()
        yield az, pg
    finally:
        if pg:
            pg.stop()
        if az:
            az.stop()
        shutil.rmtree(run, ignore_errors=True)
