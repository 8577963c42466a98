"""``python -m devhost``: run a FunctionApp locally as ``func start`` would.

Reads ``local.settings.json`` (its ``Values``) if present, then the environment (which wins),
checks the app's settings, and serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from devhost.host import MESSAGE_LEASE_SECONDS, DevHost
from devhost.hostconfig import HostConfig
from devhost.wiring import WiringError, read_app
from shared.errors import PgVaultError
from shared.telemetry import install_record_factory


def load_local_settings(path: Path) -> dict[str, str]:
    """The ``Values`` of a local.settings.json file; {} when there is no such file."""
    if not path.exists():
        return {}
    doc = json.loads(path.read_text())
    values = doc.get("Values", {})
    if not isinstance(values, dict):
        raise SystemExit(f"{path}: 'Values' must be an object of setting names to strings")
    return {str(k): str(v) for k, v in values.items()}


def main(argv: list[str] | None = None) -> int:
    """Run devhost until a stop signal; the exit code is 0 after a clean stop."""
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument("--port", type=int, default=7071, help="HTTP port (default 7071; 0 picks a free one)")
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    parser.add_argument("--settings", type=Path, default=Path("local.settings.json"), help="local.settings.json path")
    parser.add_argument("--host-json", type=Path, default=Path("host.json"), help="host.json path")
    parser.add_argument("--verbose", action="store_true", help="log at DEBUG")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s",
    )
    # The Azure SDKs log every request at INFO; the host does not show them either.
    logging.getLogger("azure").setLevel(logging.WARNING)
    # No record carries a function key (request lines hold ?code=), as the Functions host's logs don't.
    install_record_factory()

    # The host sets local.settings.json values as environment variables; real ones win.
    for key, value in load_local_settings(args.settings).items():
        os.environ.setdefault(key, value)
    sys.path.insert(0, os.getcwd())
    module_name, _, attr = args.app.partition(":")
    module = importlib.import_module(module_name)
    app = getattr(module, attr or "app")
    startup_check = getattr(module, "startup_check", None)
    try:
        if startup_check is not None:
            startup_check()
        wiring = read_app(app, dict(os.environ))
    except (WiringError, PgVaultError) as exc:
        print(f"devhost: cannot start: {exc}", file=sys.stderr)
        return 2

    host = DevHost(
        wiring,
        HostConfig.load(args.host_json, os.environ),
        dict(os.environ),
        port=args.port,
        key=os.environ.get("PGVAULT_DEVHOST_KEY") or None,
        # Tests that kill a devhost shorten this so the dead host's messages come back in seconds.
        message_lease=float(os.environ.get("PGVAULT_DEVHOST_MESSAGE_LEASE") or MESSAGE_LEASE_SECONDS),
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    host.start()
    print(f"devhost listening on http://127.0.0.1:{host.port}/{host.config.route_prefix}", flush=True)
    stop.wait()
    host.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
