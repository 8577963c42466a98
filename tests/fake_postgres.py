"""A PostgreSQL impostor on 127.0.0.1 that asks every client for its password in cleartext.

It speaks just enough of protocol v3: it answers an SSLRequest with ``N`` (or, given a
certificate, with ``S`` and a TLS handshake that nobody can verify) and a GSSENCRequest with
``N``, reads the StartupMessage, replies AuthenticationCleartextPassword (``R``, code 3) and
records whatever PasswordMessage (``p``) arrives. A credential harvester, to prove pgvault hands
it nothing.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


def _read_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client closed")
        data += chunk
    return data


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 that no CA signed (made with openssl)."""
    cert, key = folder / "fake.crt", folder / "fake.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert),
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@dataclass
class FakePostgres:
    """The impostor: ``connections`` counts clients, ``passwords`` holds what they sent."""

    tls: tuple[Path, Path] | None = None
    port: int = 0
    connections: int = 0
    startups: list[dict[str, str]] = field(default_factory=list)
    passwords: list[bytes] = field(default_factory=list)

    def start(self) -> FakePostgres:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(32)
        self.port = self._sock.getsockname()[1]
        self._context: ssl.SSLContext | None = None
        if self.tls is not None:
            self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._context.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-postgres", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        # Closing a listening socket does not wake a thread blocked in accept() on Linux; shutting it down does.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(5)
        assert not self._thread.is_alive(), "the fake server's accept loop did not stop"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(20)
        try:
            while True:
                length, code = struct.unpack("!II", _read_exact(conn, 8))
                if code == SSL_REQUEST and self._context is not None:
                    conn.sendall(b"S")
                    conn = self._context.wrap_socket(conn, server_side=True)
                    continue
                if code in (SSL_REQUEST, GSSENC_REQUEST):
                    conn.sendall(b"N")
                    continue
                body = _read_exact(conn, length - 8)
                break
            words = [w.decode(errors="replace") for w in body.split(b"\x00")]
            self.startups.append({words[i]: words[i + 1] for i in range(0, len(words) - 2, 2)})
            conn.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
            kind = _read_exact(conn, 1)
            (length,) = struct.unpack("!I", _read_exact(conn, 4))
            payload = _read_exact(conn, length - 4)
            if kind == b"p":
                self.passwords.append(payload.rstrip(b"\x00"))
            error = b"SFATAL\x00C28P01\x00Mpassword authentication failed\x00\x00"
            conn.sendall(b"E" + struct.pack("!I", len(error) + 4) + error)
        except (OSError, ConnectionError, struct.error, ssl.SSLError):
            pass
        finally:
            conn.close()
