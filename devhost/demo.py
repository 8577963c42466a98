"""``make demo``: start Azurite, PostgreSQL and devhost, show the app answering, stop everything.

Each step prints what it did. Every process started here is stopped before the demo exits,
also when a step fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from devhost.services import free_port, running_services, wait_for_port

REPO = Path(__file__).resolve().parents[1]


def _say(text: str) -> None:
    print(f"==> {text}", flush=True)


def _get(url: str) -> tuple[int, object]:
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - a local URL we built
        return r.status, json.loads(r.read())


def main() -> int:
    """Run the demo; 0 when every step worked."""
    started = time.monotonic()
    with running_services() as (azurite, postgres):
        assert azurite is not None and postgres is not None
        ports = f"{azurite.blob_port}/{azurite.queue_port}/{azurite.table_port}"
        _say(f"Azurite on ports {ports} (blob/queue/table; data in a temporary folder)")
        _say(f"PostgreSQL {postgres.bin_dir} on port {postgres.port} (throwaway cluster)")
        port = free_port()
        env = {
            **os.environ,
            "AzureWebJobsStorage": azurite.connection_string,
            "PGVAULT_VAULT_NAME": "pgvault-demo",
            "PGVAULT_REGION": "westeurope",
            "PGVAULT_ALLOW_ENV_SECRETS": "true",
            "PGVAULT_SCHEDULER_SCHEDULE": "0 */5 * * * *",
        }
        log_path = azurite.location.parent / "devhost.log"
        with log_path.open("wb") as log:
            devhost = subprocess.Popen(
                [sys.executable, "-m", "devhost", "--port", str(port), "--settings", "/nonexistent"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_for_port(port, 30, devhost)  # type: ignore[arg-type]
                _say(f"devhost serving function_app.app on http://127.0.0.1:{port}/api")
                status, body = _get(f"http://127.0.0.1:{port}/api/health")
                _say(f"GET /api/health -> {status} {json.dumps(body)}")
                if status != 200:
                    return 1
            finally:
                devhost.send_signal(signal.SIGTERM)
                code = devhost.wait(60)
                _say(f"devhost stopped (exit code {code})")
        print(log_path.read_text(errors="replace"), end="")
    _say(f"Azurite and PostgreSQL stopped; demo took {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
