"""Start ``python -m devhost`` as a child process for e2e tests, and stop it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests

from devhost.services import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]


class DevhostProcess:
    """One devhost child with its log captured in a file."""

    def __init__(
        self, env: Mapping[str, str], log_path: Path, *, app: str = "function_app:app", args: Sequence[str] = ()
    ) -> None:
        self.port = free_port()
        self.headers: dict[str, str] = {}
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devhost",
                "--port",
                str(self.port),
                "--app",
                app,
                "--settings",
                str(log_path.with_suffix(".nosettings.json")),
                *args,
            ],
            cwd=REPO,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, 30, self.proc)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def get(self, path: str, **kw: object) -> requests.Response:
        return self.request("GET", path, **kw)

    def request(self, method: str, path: str, **kw: object) -> requests.Response:
        """A request to ``/api`` + ``path``, with this host's default headers (the function key)."""
        headers = {**self.headers, **kw.pop("headers", {})}  # type: ignore[dict-item]
        return requests.request(method, self.url + path, timeout=30, headers=headers, **kw)  # type: ignore[arg-type]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Send ``sig`` and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return int(self.proc.returncode)


def wait_until(predicate: object, timeout: float, interval: float = 0.2) -> object:
    """Poll ``predicate()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = predicate()  # type: ignore[operator]
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met in {timeout} s (last value {last!r})")


__all__ = ["DevhostProcess", "signal", "wait_until"]
