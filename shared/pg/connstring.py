"""ADO.NET connection strings, read as Npgsql reads them, turned into libpq parameters.

Azure Backup keeps PostgreSQL credentials in Key Vault as ADO.NET connection strings
(``Server=...;Port=5432;Database=...;User Id=...;Password=...;Ssl Mode=Require;``). The syntax
is that of ``DbConnectionStringBuilder``:

- ``key=value`` pairs separated by ``;``; empty pairs (``;;``, a trailing ``;``) are ignored.
- Keys are case-insensitive, whitespace around keys and values is dropped, ``==`` inside a key
  stands for a literal ``=``. When a key appears twice the last value wins.
- A value may be quoted with ``'`` or ``"``; inside, the other quote is literal and the same
  quote doubled stands for one (``'it''s'``). Quoted values may hold ``;`` and ``=``. Nothing but
  whitespace may follow the closing quote. An unquoted value runs to the next ``;`` and cannot
  start with a quote.
- Keys have synonyms (Npgsql's): Host/Server/Data Source/Address/Addr/Network Address,
  Database/DB/Initial Catalog, Username/User Id/User ID/UserId/User Name/UID/User,
  Password/PWD/PSW, and so on. An unknown key is refused, as Npgsql refuses it.

Nothing here ever puts the password, or any part of the raw string, in a message or a repr:
errors name positions and known keys only (a key the parser does not know may be a fragment of
a value, as in ``Password=a;b=c``, so it is never shown).

A secret's password goes only to the server it was written for (docs/rules.md C3): ``check_server``
binds the parsed parameters to the host and port a job or a request asks for, and
``libpq_kwargs``/``child_env`` call it before they hand out a password.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import ErrorCode, UserError

# Canonical key -> every spelling Npgsql accepts (lowercase, spaces as written).
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "host": ("host", "server", "data source", "datasource", "address", "addr", "network address"),
    "port": ("port",),
    "database": ("database", "db", "initial catalog"),
    "username": ("username", "user id", "userid", "user name", "uid", "user"),
    "password": ("password", "pwd", "psw"),
    "sslmode": ("ssl mode", "sslmode"),
    "trustservercertificate": ("trust server certificate", "trustservercertificate"),
    "timeout": ("timeout", "connect timeout", "connection timeout"),
    "commandtimeout": ("command timeout", "commandtimeout"),
    "applicationname": ("application name", "applicationname"),
    "keepalive": ("keepalive", "keep alive"),
    "rootcertificate": ("root certificate", "rootcertificate", "ssl root certificate"),
    "searchpath": ("search path", "searchpath"),
    "pooling": ("pooling",),
    "minpoolsize": ("minimum pool size", "min pool size", "minpoolsize"),
    "maxpoolsize": ("maximum pool size", "max pool size", "maxpoolsize"),
    "encoding": ("encoding",),
    "clientencoding": ("client encoding", "clientencoding"),
    "includeerrordetail": ("include error detail", "includeerrordetail"),
}
# Pooling, Min/Max Pool Size, Encoding, Include Error Detail and Command Timeout configure .NET's
# pooling or the driver: accepted so a string written for Npgsql works, without effect here.
_CANONICAL = {alias: key for key, aliases in _SYNONYMS.items() for alias in aliases}

_SSL_MODES = {
    "disable": "disable",
    "allow": "allow",
    "prefer": "prefer",
    "require": "require",
    "verifyca": "verify-ca",
    "verify-ca": "verify-ca",
    "verifyfull": "verify-full",
    "verify-full": "verify-full",
}
_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}
_VERIFYING = ("verify-ca", "verify-full")

DEFAULT_PORT = 5432
# A DNS name (labels of letters, digits, '-' and '_'), optionally with a trailing dot.
HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")
# libpq's require_auth when the server is not verified: any method but the cleartext password
# (SCRAM and MD5 never send the password itself; "none" sends nothing). libpq 16 and newer.
REFUSE_CLEARTEXT = "!password"


def _bad(why: str) -> UserError:
    return UserError(
        ErrorCode.SECRET_VALUE_IN_UNSUPPORTED_FORMAT,
        f"the secret is not a valid ADO.NET connection string: {why}",
        target="secretUri",
    )


def _label(key: str) -> str:
    """How a message names ``key``: by its spelling when it is a key Npgsql knows, else not at all."""
    return repr(key) if key in _CANONICAL else "a key"


def _read_key(text: str, i: int) -> tuple[str, int]:
    """The key starting at ``i`` (``==`` is a literal ``=``) and the position after its ``=``."""
    start, chars = i, []
    while i < len(text):
        ch = text[i]
        if ch == "=" and text[i + 1 : i + 2] == "=":
            chars.append("=")
            i += 2
        elif ch == "=":
            key = " ".join("".join(chars).split()).lower()
            if not key:
                raise _bad(f"the pair at character {start + 1} has an empty key")
            return key, i + 1
        elif ch == ";":
            break
        else:
            chars.append(ch)
            i += 1
    raise _bad(f"the pair starting at character {start + 1} has no '='")


def _read_quoted(text: str, i: int, key: str) -> tuple[str, int]:
    """The quoted value whose opening quote is at ``i`` and the position of the ``;`` after it."""
    quote, chars, opened = text[i], [], i
    i += 1
    while True:
        if i >= len(text):
            raise _bad(f"the quoted value of {_label(key)} at character {opened + 1} has no closing quote")
        if text[i] == quote and text[i + 1 : i + 2] == quote:
            chars.append(quote)
            i += 2
        elif text[i] == quote:
            i += 1
            break
        else:
            chars.append(text[i])
            i += 1
    end = text.find(";", i)
    end = len(text) if end < 0 else end
    if text[i:end].strip():
        raise _bad(f"unexpected text after the quoted value of {_label(key)} at character {opened + 1}")
    return "".join(chars), end


def parse_pairs(text: str) -> dict[str, str]:
    """The ``key -> value`` pairs of a connection string (keys lowercased, last one wins).

    ``UserError`` (UserErrorSecretValueInUnsupportedFormat) on malformed input; the message
    names a position or a key, never a value.
    """
    return {key: value for key, (value, _) in _pairs_at(text).items()}


def _pairs_at(text: str) -> dict[str, tuple[str, int]]:
    """``key -> (value, position of the key)`` of a connection string (last one wins)."""
    pairs: dict[str, tuple[str, int]] = {}
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace() or text[i] == ";":  # whitespace and empty pairs
            i += 1
            continue
        start = i
        key, i = _read_key(text, i)
        while i < n and text[i].isspace():
            i += 1
        if i < n and text[i] in "'\"":
            value, i = _read_quoted(text, i, key)
        else:
            end = text.find(";", i)
            end = n if end < 0 else end
            value, i = text[i:end].strip(), end
        pairs[key] = (value, start)
    return pairs


def normal_host(host: str) -> str:
    """``host`` as compared: lowercase, no trailing dot, IP addresses in their canonical form."""
    value = host.strip().lower().rstrip(".")
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    try:
        return ipaddress.ip_address(value).compressed
    except ValueError:
        return value


def is_host(host: str) -> bool:
    """Whether ``host`` is one DNS name or IP address (not a list of hosts, not a socket folder)."""
    value = host.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(HOST_NAME.match(value))


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine (``localhost``, 127.0.0.0/8, ::1)."""
    name = normal_host(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def allowed_by(host: str, patterns: Sequence[str]) -> bool:
    """Whether ``host`` (normalised) matches one of ``patterns`` (``fnmatch``, ``*.example.com``)."""
    name = normal_host(host)
    return any(fnmatch.fnmatchcase(name, normal_host(p)) for p in patterns)


def check_server(
    params: ConnectionParams,
    host: str,
    port: int | None,
    *,
    allowed_servers: Sequence[str] = (),
    target: str | None = None,
) -> None:
    """Refuse (400 ``InvalidRequest``) to use ``params`` for ``host:port`` unless the secret allows it.

    A secret that names a Server may be used for that server and port only (port 5432 when it
    names none), compared after normalising; one without a Server only for hosts matching
    ``allowed_servers`` (PGVAULT_ALLOWED_SERVERS; empty: nowhere). Messages name the hosts and
    ports, never any other text of the secret.
    """
    wanted_port = port or DEFAULT_PORT
    if not is_host(host):
        raise UserError(
            ErrorCode.INVALID_REQUEST,
            "the server must be one host name or IP address (no list of hosts, no socket folder)",
            target=target,
        )
    if params.host is not None:
        if not is_host(params.host):
            raise UserError(
                ErrorCode.SECRET_VALUE_IN_UNSUPPORTED_FORMAT,
                "the secret's Server is not one host name or IP address (lists of hosts and socket folders "
                "are not supported)",
                target=target,
                recommended_action="Put one Server=<host>;Port=<port> in the secret's connection string.",
            )
        own_port = params.port or DEFAULT_PORT
        if normal_host(host) != normal_host(params.host) or wanted_port != own_port:
            raise UserError(
                ErrorCode.INVALID_REQUEST,
                f"server {host}:{wanted_port} is not the server the secret was written for "
                f"({params.host}:{own_port}): a secret's password goes only to its own server",
                target=target,
                recommended_action=f"Use server {params.host} and port {own_port}, or a secret written for "
                f"{host}:{wanted_port}.",
            )
        return
    if not allowed_by(host, allowed_servers):
        listed = ", ".join(allowed_servers) if allowed_servers else "empty"
        raise UserError(
            ErrorCode.INVALID_REQUEST,
            f"server {host}:{wanted_port} is refused: the secret names no Server, and {host} matches none of "
            f"PGVAULT_ALLOWED_SERVERS ({listed})",
            target=target,
            recommended_action="Put Server=<host>;Port=<port> in the secret's connection string, or add a "
            "pattern matching the host to PGVAULT_ALLOWED_SERVERS.",
        )


def system_root_certificates() -> str:
    """The CA bundle to verify servers with when the secret names no Root Certificate.

    This machine's OpenSSL bundle as a file, which every libpq reads (``sslrootcert=system``
    needs libpq 16 and finds the bundle of the OpenSSL libpq was built with, not always this
    machine's); ``system`` when no bundle file is found.
    """
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return candidate
    return "system"


@dataclass(frozen=True)
class ConnectionParams:
    """Login and connection options from a secret. ``repr`` never shows the password."""

    host: str | None
    port: int | None
    database: str | None
    user: str
    password: str = field(repr=False)
    sslmode: str = "prefer"
    connect_timeout: int | None = None
    application_name: str | None = None
    root_certificate: str | None = None
    keepalive: int | None = None
    search_path: str | None = None
    client_encoding: str | None = None

    @property
    def verifies_server(self) -> bool:
        """Whether the connection is TLS with the server's certificate checked (VerifyCA / VerifyFull)."""
        return self.sslmode in _VERIFYING

    def libpq_kwargs(self, *, host: str, port: int, dbname: str, allowed_servers: Sequence[str] = ()) -> dict[str, Any]:
        """psycopg/libpq parameters for ``dbname`` on ``host:port`` with this login.

        The instance says what is backed up; a Server or Database in the secret does not
        override it (docs/rules.md C3), but a secret naming a Server is never used for another one
        (``check_server``, 400 ``InvalidRequest``). Unless the server is verified by TLS, libpq
        refuses to send the cleartext password (``require_auth``); SCRAM and MD5 stay allowed.
        """
        check_server(self, host, port, allowed_servers=allowed_servers)
        kwargs: dict[str, Any] = {
            "host": host,
            "port": port,
            "dbname": dbname,
            "user": self.user,
            "password": self.password,
            "sslmode": self.sslmode,
            "application_name": self.application_name or "pgvault",
        }
        if not self.verifies_server:
            kwargs["require_auth"] = REFUSE_CLEARTEXT
        if self.connect_timeout is not None:
            kwargs["connect_timeout"] = self.connect_timeout
        if self.root_certificate:
            kwargs["sslrootcert"] = self.root_certificate
        elif self.verifies_server:
            kwargs["sslrootcert"] = system_root_certificates()
        if self.keepalive:
            kwargs["keepalives"] = 1
            kwargs["keepalives_idle"] = self.keepalive
        if self.search_path:
            kwargs["options"] = f"-c search_path={self.search_path}"
        if self.client_encoding:
            kwargs["client_encoding"] = self.client_encoding
        return kwargs

    def child_env(
        self,
        *,
        host: str,
        port: int,
        dbname: str,
        refuses_cleartext: bool,
        allowed_servers: Sequence[str] = (),
    ) -> dict[str, str]:
        """``PG*`` variables for a ``pg_dump``/``pg_restore`` child: the password goes only here.

        The same binding and ``require_auth`` as ``libpq_kwargs`` (``PGREQUIREAUTH``). A child
        whose libpq is older than 16 ignores ``PGREQUIREAUTH`` (``refuses_cleartext`` False, see
        ``shared.pg.tools.Tool``): it gets the password only when TLS verifies the server or the
        server is on this machine, else ``UserErrorPgDumpVersionTooOld`` says what to change.
        """
        if not refuses_cleartext and not self.verifies_server and not is_loopback(host):
            raise UserError(
                ErrorCode.PG_DUMP_VERSION_TOO_OLD,
                f"the client tools found run with a libpq older than 16, which cannot refuse to send the password "
                f"in cleartext; pgvault gives them the password for {host}:{port} only over TLS that verifies the "
                "server",
                recommended_action="Install PostgreSQL client tools with libpq 16 or newer (apt.postgresql.org's "
                "libpq5) and point PGVAULT_PG_BIN_DIR at them, or set Ssl Mode=VerifyFull in the secret.",
            )
        kw = self.libpq_kwargs(host=host, port=port, dbname=dbname, allowed_servers=allowed_servers)
        env = {
            "PGHOST": str(kw["host"]),
            "PGPORT": str(kw["port"]),
            "PGDATABASE": str(kw["dbname"]),
            "PGUSER": str(kw["user"]),
            "PGPASSWORD": str(kw["password"]),
            "PGSSLMODE": str(kw["sslmode"]),
            "PGAPPNAME": str(kw["application_name"]),
        }
        if "require_auth" in kw:
            env["PGREQUIREAUTH"] = str(kw["require_auth"])
        if "connect_timeout" in kw:
            env["PGCONNECT_TIMEOUT"] = str(kw["connect_timeout"])
        if "sslrootcert" in kw:
            env["PGSSLROOTCERT"] = str(kw["sslrootcert"])
        if "client_encoding" in kw:
            env["PGCLIENTENCODING"] = str(kw["client_encoding"])
        return env


def _int(pairs: dict[str, str], key: str, label: str, low: int, high: int) -> int | None:
    raw = pairs.get(key)
    if raw is None or raw == "":
        return None
    if not raw.strip().isdigit() or not low <= int(raw) <= high:
        raise _bad(f"{label} must be a whole number {low}-{high}")
    return int(raw)


def _bool(pairs: dict[str, str], key: str, label: str) -> bool | None:
    raw = pairs.get(key)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _bad(f"{label} must be true or false")


def parse_connection_string(text: str) -> ConnectionParams:
    """The connection parameters of an ADO.NET connection string (Npgsql keys).

    Requires a user and a password; refuses unknown keys, a bad port, an unknown SSL mode,
    Trust Server Certificate with a verifying SSL mode (Npgsql refuses that pair too) and
    VerifyCA without a Root Certificate (any public certificate passes a CA check against the
    system's store: only VerifyFull may use it). Messages name positions and known keys only.
    """
    if not isinstance(text, str) or not text.strip():
        raise _bad("the secret is empty")
    raw = _pairs_at(text)
    pairs: dict[str, str] = {}
    for key, (value, position) in raw.items():
        canonical = _CANONICAL.get(key)
        if canonical is None:
            known = "Host/Server, Port, Database, User Id, Password, Ssl Mode, Trust Server Certificate, Timeout, ..."
            raise _bad(f"the key of the pair at character {position + 1} is not one Npgsql knows (known keys: {known})")
        pairs[canonical] = value
    user = pairs.get("username", "")
    if not user:
        raise _bad("it has no User Id (or Username/UID)")
    if "password" not in pairs or pairs["password"] == "":
        raise _bad("it has no Password")
    port = _int(pairs, "port", "Port", 1, 65535)
    mode_raw = pairs.get("sslmode", "prefer").strip().lower().replace(" ", "")
    if mode_raw not in _SSL_MODES:
        raise _bad("Ssl Mode must be Disable, Allow, Prefer, Require, VerifyCA or VerifyFull")
    sslmode = _SSL_MODES[mode_raw]
    trust = _bool(pairs, "trustservercertificate", "Trust Server Certificate")
    if trust and sslmode in _VERIFYING:
        raise _bad("Trust Server Certificate=true cannot be combined with Ssl Mode VerifyCA or VerifyFull")
    root_certificate = pairs.get("rootcertificate") or None
    if sslmode == "verify-ca" and root_certificate is None:
        raise _bad(
            "Ssl Mode=VerifyCA needs a Root Certificate (the CA file the server's certificate must come from); "
            "to verify against the system's CA store use Ssl Mode=VerifyFull"
        )
    return ConnectionParams(
        host=pairs.get("host") or None,
        port=port,
        database=pairs.get("database") or None,
        user=user,
        password=pairs["password"],
        sslmode=sslmode,
        connect_timeout=_int(pairs, "timeout", "Timeout", 0, 1024),
        application_name=pairs.get("applicationname") or None,
        root_certificate=root_certificate,
        keepalive=_int(pairs, "keepalive", "Keepalive", 0, 86400),
        search_path=pairs.get("searchpath") or None,
        client_encoding=pairs.get("clientencoding") or None,
    )
