"""A local webhook receiver (``http.server`` in a thread) for the alert tests: it keeps every JSON
document POSTed to it, and can start late on a port chosen before (a receiver that is down at first)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WebhookReceiver:
    """``url`` is known at once; nothing listens there until ``start``; ``documents`` are the bodies received."""

    def __init__(self, path: str = "/hooks/pgvault") -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self.documents: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.raw.append(body)
                    receiver.documents.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
